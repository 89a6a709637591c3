package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
)

func TestNoteIDsAreNeverReused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ids.db")
	open := func() *sqlite.Store {
		db, err := sqlite.OpenDB(ctx, path, true)
		if err != nil {
			t.Fatal(err)
		}
		s := sqlite.NewStore(db, "node1")
		s.BcryptCost = bcrypt.MinCost
		s.Open(nil)
		return s
	}
	s := open()
	alice, bob := sqlitetest.User(t, s, "alice"), sqlitetest.User(t, s, "bob")
	seen := map[int64]bool{}
	remember := func(w app.NoteWrite, err error) int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if seen[w.Note.ID] {
			t.Fatalf("note id %d handed out a second time", w.Note.ID)
		}
		seen[w.Note.ID] = true
		return w.Note.ID
	}
	first := remember(s.CreateNote(ctx, alice.ID, "one", app.Idempotency{}))
	last := remember(s.CreateNote(ctx, alice.ID, "two", app.Idempotency{}))
	for _, id := range []int64{last, first} {
		if _, err := s.DeleteNote(ctx, alice.ID, id, nil, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	remember(s.CreateNote(ctx, bob.ID, "bob's, after alice deleted hers", app.Idempotency{}))
	// After the undo window, the deleted notes are purged too.
	s.Now = func() time.Time { return time.Now().Add(app.UndoWindow + time.Second) }
	if n, err := s.Purge(ctx); err != nil || n != 2 {
		t.Fatalf("purge: %d %v, want 2 notes forgotten", n, err)
	}
	s.Close()
	s.DB().Close()

	s = open()
	defer s.DB().Close()
	defer s.Close()
	for i := 0; i < 3; i++ {
		remember(s.CreateNote(ctx, alice.ID, "after the restart", app.Idempotency{}))
	}
}

func TestNoteRevisions(t *testing.T) {
	ctx := context.Background()

	t.Run("a note starts at revision 1 and every update adds one", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		w, err := s.CreateNote(ctx, u.ID, "v1", app.Idempotency{})
		if err != nil || w.Note.Rev != 1 || w.Note.UpdatedAt.IsZero() {
			t.Fatalf("create: %+v %v", w, err)
		}
		for want := int64(2); want <= 4; want++ {
			w, err = s.UpdateNote(ctx, u.ID, w.Note.ID, "v", app.Revs{want - 1}, app.Idempotency{})
			if err != nil || w.Note.Rev != want {
				t.Fatalf("update to rev %d: %+v %v", want, w, err)
			}
		}
		got, _, err := s.GetNote(ctx, u.ID, w.Note.ID)
		if err != nil || got.Rev != 4 || got.Body != "v" {
			t.Fatalf("get: %+v %v", got, err)
		}
	})

	t.Run("a write against an older revision changes nothing and returns the current note", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		w, _ := s.CreateNote(ctx, u.ID, "first", app.Idempotency{})
		if _, err := s.UpdateNote(ctx, u.ID, w.Note.ID, "second", app.Revs{1}, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		for name, write := range map[string]func() error{
			"update": func() error {
				_, err := s.UpdateNote(ctx, u.ID, w.Note.ID, "stale words", app.Revs{1}, app.Idempotency{})
				return err
			},
			"delete": func() error {
				_, err := s.DeleteNote(ctx, u.ID, w.Note.ID, app.Revs{1}, app.Idempotency{})
				return err
			},
		} {
			err := write()
			e, ok := err.(*app.Error)
			if !ok || e.Code != app.ESTALE || e.Note == nil || e.Note.Rev != 2 || e.Note.Body != "second" {
				t.Fatalf("%s at rev 1: %v, want ESTALE with the note at rev 2", name, err)
			}
		}
		got, v, _ := s.GetNote(ctx, u.ID, w.Note.ID)
		if got.Body != "second" || got.Rev != 2 || v != 2 {
			t.Fatalf("note %+v at v%d, want unchanged at rev 2, v2", got, v)
		}
		if _, err := s.UpdateNote(ctx, u.ID, w.Note.ID, "any of several", app.Revs{1, 2}, app.Idempotency{}); err != nil {
			t.Fatalf("If-Match listing the current revision among others: %v", err)
		}
	})

	t.Run("a stale write inside a group commit fails alone", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		var ids []int64
		for i := 0; i < 5; i++ {
			w, _ := s.CreateNote(ctx, u.ID, "n", app.Idempotency{})
			ids = append(ids, w.Note.ID)
		}
		var mu sync.Mutex
		var batches []int
		s.ObserveBatch = func(n int, _ time.Duration) { mu.Lock(); batches = append(batches, n); mu.Unlock() }

		// Hold SQLite's write lock from another connection, so that the
		// writer blocks on its first write and the others queue behind it:
		// they then share the next transaction.
		lock, err := sql.Open("sqlite3", "file:"+s.DB().Path)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		ltx, err := lock.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ltx.Exec(`UPDATE users SET created_at = created_at WHERE id = ?`, u.ID); err != nil {
			t.Fatal(err)
		}
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				rev := app.Revs{1}
				if i == 2 {
					rev = app.Revs{7} // stale
				}
				_, errs[i] = s.UpdateNote(ctx, u.ID, id, "updated", rev, app.Idempotency{})
			})
			time.Sleep(20 * time.Millisecond) // queue them in order
		}
		time.Sleep(100 * time.Millisecond)
		if err := ltx.Rollback(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, err := range errs {
			if i == 2 && app.ErrorCode(err) != app.ESTALE {
				t.Errorf("the stale write: %v, want ESTALE", err)
			}
			if i != 2 && err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
		mu.Lock()
		shared := false
		for _, n := range batches {
			shared = shared || n >= 4
		}
		mu.Unlock()
		if !shared {
			t.Fatalf("batches %v: the writes did not share a transaction, so this proves nothing", batches)
		}
		notes, v, _ := s.ListNotes(ctx, u.ID)
		if v != 5+4 {
			t.Errorf("version %d, want %d (5 creates, 4 updates)", v, 5+4)
		}
		for _, n := range notes {
			if want := map[bool]string{true: "n", false: "updated"}[n.ID == ids[2]]; n.Body != want {
				t.Errorf("note %d: %q, want %q", n.ID, n.Body, want)
			}
		}
	})

	t.Run("the same idempotency key with another If-Match is another request", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		w, _ := s.CreateNote(ctx, u.ID, "x", app.Idempotency{})
		idem := app.Idempotency{Key: "k", Fingerprint: `PATCH /api/notes/1 abc if-match "1"`}
		if _, err := s.UpdateNote(ctx, u.ID, w.Note.ID, "y", app.Revs{1}, idem); err != nil {
			t.Fatal(err)
		}
		idem.Fingerprint = `PATCH /api/notes/1 abc if-match "2"`
		if _, err := s.UpdateNote(ctx, u.ID, w.Note.ID, "y", app.Revs{2}, idem); app.ErrorCode(err) != app.EUNPROCESSABLE {
			t.Fatalf("got %v, want unprocessable", err)
		}
	})
}

func TestNoteRestore(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.NewStore(t)
	u, other := sqlitetest.User(t, s, "alice"), sqlitetest.User(t, s, "bob")
	now := time.Now()
	s.Now = func() time.Time { return now }
	w, _ := s.CreateNote(ctx, u.ID, "keep my words", app.Idempotency{})
	w, _ = s.UpdateNote(ctx, u.ID, w.Note.ID, "keep my words, edited", nil, app.Idempotency{})
	note := w.Note
	if _, err := s.DeleteNote(ctx, u.ID, note.ID, app.Revs{note.Rev}, app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetNote(ctx, u.ID, note.ID); app.ErrorCode(err) != app.ENOTFOUND {
		t.Fatalf("a deleted note: %v, want not found", err)
	}

	t.Run("only the note's owner can restore it", func(t *testing.T) {
		if _, err := s.RestoreNote(ctx, other.ID, note.ID, app.Idempotency{}); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("bob restoring alice's note: %v, want not found", err)
		}
	})

	t.Run("within the window it comes back with its id, body, created_at and revision", func(t *testing.T) {
		s.Now = func() time.Time { return now.Add(app.UndoWindow - time.Second) }
		r, err := s.RestoreNote(ctx, u.ID, note.ID, app.Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Note != note {
			t.Fatalf("restored %+v, want %+v", r.Note, note)
		}
		cs, _ := s.ChangesAfter(ctx, 0, 100)
		if last := cs[len(cs)-1]; last.Op != app.OpCreated || last.NoteID != note.ID || last.Version != r.Version {
			t.Fatalf("change %+v, want created %d at v%d", last, note.ID, r.Version)
		}
		if _, err := s.RestoreNote(ctx, u.ID, note.ID, app.Idempotency{}); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("restoring a note that is not deleted: %v, want not found", err)
		}
	})

	t.Run("after the window it is gone for good", func(t *testing.T) {
		s.Now = func() time.Time { return now }
		if _, err := s.DeleteNote(ctx, u.ID, note.ID, nil, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		s.Now = func() time.Time { return now.Add(app.UndoWindow + time.Second) }
		if _, err := s.RestoreNote(ctx, u.ID, note.ID, app.Idempotency{}); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("restore after %v: %v, want not found", app.UndoWindow+time.Second, err)
		}
		if n, err := s.Purge(ctx); err != nil || n != 1 {
			t.Fatalf("purge: %d %v, want 1", n, err)
		}
		if n, err := s.Purge(ctx); err != nil || n != 0 {
			t.Fatalf("second purge: %d %v, want 0", n, err)
		}
	})
}

// schemaV1 is the schema of migration 1 with some rows, as a database made
// by a release before revisions holds it.
func schemaV1(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v1, err := sqlite.MigrationFS.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"PRAGMA journal_mode=WAL",
		string(v1),
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
		`INSERT INTO schema_migrations VALUES (1, '0001_init.sql', 0)`,
		`INSERT INTO users (id, username, password_hash, version, created_at) VALUES (1, 'alice', x'00', 5, 0)`,
		`INSERT INTO notes (id, user_id, body, created_at, updated_at) VALUES (3, 1, 'three', 1000, 2000), (7, 1, 'seven', 3000, 3000)`,
		// Note 9 was created and deleted: only the change log remembers it.
		`INSERT INTO changes (user_id, version, op, note_id, node, created_at) VALUES (1, 4, 'created', 9, 'node1', 0), (1, 5, 'deleted', 9, 'node1', 0)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestMigrationToRevisions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	schemaV1(t, path)
	db, err := sqlite.OpenDB(ctx, path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := sqlite.NewStore(db, "node1")
	s.Open(nil)
	defer s.Close()

	t.Run("existing notes keep their ids and start at revision 1", func(t *testing.T) {
		notes, v, err := s.ListNotes(ctx, 1)
		if err != nil || v != 5 || len(notes) != 2 {
			t.Fatalf("%+v v%d %v", notes, v, err)
		}
		for i, want := range []struct {
			id   int64
			body string
		}{{7, "seven"}, {3, "three"}} {
			if n := notes[i]; n.ID != want.id || n.Body != want.body || n.Rev != 1 {
				t.Errorf("note %d: %+v, want id %d %q at rev 1", i, n, want.id, want.body)
			}
		}
	})

	t.Run("an id the change log remembers is not handed out again", func(t *testing.T) {
		w, err := s.CreateNote(ctx, 1, "new", app.Idempotency{})
		if err != nil || w.Note.ID <= 9 {
			t.Fatalf("new note %+v %v, want an id above 9", w.Note, err)
		}
	})

	t.Run("an older release's statements still work and keep revisions honest", func(t *testing.T) {
		// What a release before revisions runs, on the rebuilt table.
		res, err := db.WritePool().Exec(`INSERT INTO notes (user_id, body, created_at, updated_at) VALUES (1, 'old release', 0, 0)`)
		if err != nil {
			t.Fatal(err)
		}
		oldID, _ := res.LastInsertId()
		if _, err := db.WritePool().Exec(`UPDATE notes SET body = ?, updated_at = ? WHERE id = ? AND user_id = ?`, "changed by the old release", 1, 3, 1); err != nil {
			t.Fatal(err)
		}
		n, _, err := s.GetNote(ctx, 1, 3)
		if err != nil || n.Rev != 2 {
			t.Fatalf("note 3 after an old release's update: %+v %v, want rev 2", n, err)
		}
		if _, err := s.UpdateNote(ctx, 1, 3, "mine", app.Revs{1}, app.Idempotency{}); app.ErrorCode(err) != app.ESTALE {
			t.Fatalf("If-Match of the revision before the old release's update: %v, want stale", err)
		}
		if _, err := db.WritePool().Exec(`DELETE FROM notes WHERE id = ? AND user_id = ?`, oldID, 1); err != nil {
			t.Fatal(err)
		}
		w, _ := s.CreateNote(ctx, 1, "after", app.Idempotency{})
		if w.Note.ID == oldID {
			t.Fatalf("id %d handed out again after the old release deleted it", w.Note.ID)
		}
		var rows int
		db.ReadPool().QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'notes_v%'`).Scan(&rows)
		if rows != 0 {
			t.Errorf("the rebuild left %d objects named notes_v*", rows)
		}
		if !strings.Contains(mustSQL(t, db, "notes"), "AUTOINCREMENT") {
			t.Errorf("notes is not AUTOINCREMENT: %s", mustSQL(t, db, "notes"))
		}
	})
}

func mustSQL(t *testing.T, db *sqlite.DB, table string) string {
	t.Helper()
	var q string
	if err := db.ReadPool().QueryRow(`SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&q); err != nil {
		t.Fatal(err)
	}
	return q
}
