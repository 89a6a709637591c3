// Package sqlitetest gives tests a real SQLite store in a temp dir, as the
// node runs it, with cheap password hashes.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"notesync/app"
	"notesync/app/sqlite"
)

// NewStore opens a real SQLite database in a temp dir, with its writer
// handing commits to nobody; the test's cleanup closes it.
func NewStore(t testing.TB) *sqlite.Store {
	t.Helper()
	s := Unopened(t)
	s.Open(nil)
	return s
}

// Unopened is NewStore before its Open, for a test that hands the store's
// commits to something of its own (a change feed).
func Unopened(t testing.TB) *sqlite.Store {
	t.Helper()
	db, err := sqlite.OpenDB(context.Background(), filepath.Join(t.TempDir(), "test.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := sqlite.NewStore(db, "node1")
	s.BcryptCost = bcrypt.MinCost
	t.Cleanup(s.Close)
	return s
}

// User signs up name, with the password "password1".
func User(t testing.TB, s *sqlite.Store, name string) *app.User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), name, "password1")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// RollBack makes s's database look like a copy that was behind, as a
// failover leaves it (docs/PROTOCOL.md §11): userID's changes after
// version and the notes created after it are gone, the user is back at
// version, and the change log's sequence is back at seq, where the
// history that goes on from there numbers its changes again. (Updates
// and deletes after version are not undone: the tests that use it only
// create.)
func RollBack(t testing.TB, s *sqlite.Store, userID, version, seq int64) {
	t.Helper()
	for _, q := range []string{
		`DELETE FROM notes WHERE user_id = ?1 AND created_version > ?2`,
		`DELETE FROM changes WHERE user_id = ?1 AND version > ?2`,
		`UPDATE users SET version = ?2, change_id = (SELECT change_id FROM changes WHERE user_id = ?1 AND version = ?2) WHERE id = ?1`,
	} {
		if _, err := s.DB().WritePool().Exec(q, userID, version); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := s.DB().WritePool().Exec(`UPDATE sqlite_sequence SET seq = ? WHERE name = 'changes'`, seq); err != nil {
		t.Fatal(err)
	}
}
