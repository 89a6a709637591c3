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

// NewStore opens a real SQLite database in a temp dir; the test's cleanup
// closes it.
func NewStore(t testing.TB) *sqlite.Store {
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
