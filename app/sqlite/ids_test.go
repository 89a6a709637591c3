package sqlite_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
)

func TestNoteIDs(t *testing.T) {
	ctx := context.Background()

	t.Run("ids are random numbers below 2^53, not a sequence that counts everyone's notes", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		alice, bob := sqlitetest.User(t, s, "alice"), sqlitetest.User(t, s, "bob")
		var ids []int64
		for i := range 40 {
			u := alice
			if i%2 == 1 {
				u = bob
			}
			w, err := s.CreateNote(ctx, u.ID, "note", app.Idempotency{})
			if err != nil {
				t.Fatal(err)
			}
			if id := w.Note.ID; id <= 0 || id >= 1<<53 {
				t.Fatalf("id %d, want one from 1 to 2^53-1", id)
			}
			ids = append(ids, w.Note.ID)
		}
		if slices.IsSorted(ids) {
			t.Fatalf("ids %v come in order", ids)
		}
		for i := 1; i < len(ids); i++ {
			if d := ids[i] - ids[i-1]; d > -1000 && d < 1000 {
				t.Fatalf("ids %d then %d: the second tells the first", ids[i-1], ids[i])
			}
		}
	})

	t.Run("a deleted note's id is not given again, and its restore keeps its id and place", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		first, _ := s.CreateNote(ctx, u.ID, "first", app.Idempotency{})
		second, _ := s.CreateNote(ctx, u.ID, "second", app.Idempotency{})
		if _, err := s.DeleteNote(ctx, u.ID, first.Note.ID, nil, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateNoteWithID(ctx, u.ID, first.Note.ID, "again", app.Idempotency{}); app.ErrorCode(err) != app.ECONFLICT {
			t.Fatalf("create with a deleted note's id: %v, want conflict", err)
		}
		if _, err := s.CreateNoteWithID(ctx, u.ID, second.Note.ID, "again", app.Idempotency{}); app.ErrorCode(err) != app.ECONFLICT {
			t.Fatalf("create with a live note's id: %v, want conflict", err)
		}
		third, _ := s.CreateNote(ctx, u.ID, "third", app.Idempotency{})
		r, err := s.RestoreNote(ctx, u.ID, first.Note.ID, app.Idempotency{})
		if err != nil || r.Note.ID != first.Note.ID {
			t.Fatalf("restore: %+v %v", r, err)
		}
		assertBodies(t, s, u.ID, "third", "second", "first")
		_ = third
	})

	t.Run("a note can be created with the id it was first answered with", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		const id = 1<<53 - 1
		w, err := s.CreateNoteWithID(ctx, u.ID, id, "applied again", app.Idempotency{Key: "k", Fingerprint: "f"})
		if err != nil || w.Note.ID != id {
			t.Fatalf("create with id: %+v %v", w, err)
		}
		again, err := s.CreateNoteWithID(ctx, u.ID, id, "applied again", app.Idempotency{Key: "k", Fingerprint: "f"})
		if err != nil || !again.Replayed || again.Note.ID != id {
			t.Fatalf("the same keyed create again: %+v %v, want the first outcome", again, err)
		}
		if _, err := s.CreateNoteWithID(ctx, u.ID, 1<<53, "x", app.Idempotency{}); app.ErrorCode(err) != app.EINVALID {
			t.Fatalf("id 2^53: %v, want invalid", err)
		}
	})

	t.Run("a copy of the database that went back does not give the dropped ids again", func(t *testing.T) {
		dir := t.TempDir()
		s, db := openStore(t, filepath.Join(dir, "primary.db"))
		u := sqlitetest.User(t, s, "alice")
		if _, err := s.CreateNote(ctx, u.ID, "kept", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		copyFile(t, filepath.Join(dir, "primary.db"), filepath.Join(dir, "behind.db"))
		dropped := map[int64]bool{}
		for range 20 {
			w, err := s.CreateNote(ctx, u.ID, "dropped", app.Idempotency{})
			if err != nil {
				t.Fatal(err)
			}
			dropped[w.Note.ID] = true
		}
		behind, _ := openStore(t, filepath.Join(dir, "behind.db"))
		for range 20 {
			w, err := behind.CreateNote(ctx, u.ID, "new history", app.Idempotency{})
			if err != nil {
				t.Fatal(err)
			}
			if dropped[w.Note.ID] {
				t.Fatalf("id %d given in both histories", w.Note.ID)
			}
		}
	})
}

func TestListOrder(t *testing.T) {
	ctx := context.Background()

	t.Run("pages follow the user's own order, and the cursor moves only with the user's changes", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		alice, bob := sqlitetest.User(t, s, "alice"), sqlitetest.User(t, s, "bob")
		for _, b := range []string{"a1", "a2", "a3", "a4", "a5"} {
			if _, err := s.CreateNote(ctx, alice.ID, b, app.Idempotency{}); err != nil {
				t.Fatal(err)
			}
		}
		page, _, next, err := s.ListNotesPage(ctx, alice.ID, 0, 2)
		if err != nil || bodies(page) != "a5,a4" || next == 0 {
			t.Fatalf("first page %s next %d %v", bodies(page), next, err)
		}
		for range 3 {
			s.CreateNote(ctx, bob.ID, "bob's", app.Idempotency{})
		}
		if _, _, again, _ := s.ListNotesPage(ctx, alice.ID, 0, 2); again != next {
			t.Fatalf("cursor %d became %d when another user wrote", next, again)
		}
		page, _, next, _ = s.ListNotesPage(ctx, alice.ID, next, 2)
		if bodies(page) != "a3,a2" {
			t.Fatalf("second page %s", bodies(page))
		}
		page, _, next, _ = s.ListNotesPage(ctx, alice.ID, next, 2)
		if bodies(page) != "a1" || next != 0 {
			t.Fatalf("last page %s next %d", bodies(page), next)
		}
	})
}

func TestChangeAt(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	var ids []string
	for range 3 {
		if _, err := s.CreateNote(ctx, u.ID, "x", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	cs, _ := s.ChangesAfter(ctx, 0, 10)
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	if len(ids) != 3 || ids[0] == ids[1] || ids[1] == ids[2] || len(ids[0]) != 16 {
		t.Fatalf("change ids %q, want 3 different random ones", ids)
	}
	for v := int64(1); v <= 3; v++ {
		if got, err := s.ChangeAt(ctx, u.ID, v); err != nil || got != ids[v-1] {
			t.Fatalf("ChangeAt(%d) = %q %v, want %q", v, got, err, ids[v-1])
		}
	}
	if _, err := s.ChangeAt(ctx, u.ID, 4); app.ErrorCode(err) != app.ENOTFOUND {
		t.Fatalf("ChangeAt above the version: %v, want not found", err)
	}
	s.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if err := s.Prune(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ChangeAt(ctx, u.ID, 1); err != nil || got != "" {
		t.Fatalf("ChangeAt a pruned version = %q %v, want unknown", got, err)
	}
	if got, _ := s.ChangeAt(ctx, u.ID, 3); got != ids[2] {
		t.Fatalf("ChangeAt the user's version after a prune = %q, want %q", got, ids[2])
	}
}

func openStore(t *testing.T, path string) (*sqlite.Store, *sqlite.DB) {
	t.Helper()
	db, err := sqlite.OpenDB(context.Background(), path, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := sqlite.NewStore(db, "node1")
	s.BcryptCost = 4
	s.Open(nil)
	t.Cleanup(s.Close)
	return s, db
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func bodies(notes []app.Note) string {
	var bs []string
	for _, n := range notes {
		bs = append(bs, n.Body)
	}
	return strings.Join(bs, ",")
}

func assertBodies(t *testing.T, s *sqlite.Store, userID int64, want ...string) {
	t.Helper()
	notes, _, err := s.ListNotes(context.Background(), userID)
	if got := bodies(notes); err != nil || got != strings.Join(want, ",") {
		t.Fatalf("notes %s %v, want %s", got, err, strings.Join(want, ","))
	}
}

func TestMigrationToRandomIDs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	schemaV1(t, path)
	s, db := openStore(t, path)

	assertBodies(t, s, 1, "seven", "three")
	if _, err := s.DeleteNote(ctx, 1, 7, nil, app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateNote(ctx, 1, "new", app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	// What a release before random ids runs: its note takes its place by
	// the user's version all the same.
	if _, err := db.WritePool().Exec(`UPDATE users SET version = version + 1 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WritePool().Exec(`INSERT INTO notes (user_id, body, created_at, updated_at) VALUES (1, 'old release', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RestoreNote(ctx, 1, 7, app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	assertBodies(t, s, 1, "old release", "new", "seven", "three")
}
