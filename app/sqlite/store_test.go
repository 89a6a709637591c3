package sqlite_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
)

func TestOpenDB(t *testing.T) {
	t.Run("creates the schema in WAL mode and records the migration version", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		var mode string
		if err := s.DB().ReadPool().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" {
			t.Fatalf("journal mode %q, want wal", mode)
		}
		if got, want := mustSchema(t, s.DB()), sqlite.LatestSchemaVersion(); got != want || want < 1 {
			t.Fatalf("schema version %d, want %d", got, want)
		}
	})

	t.Run("reopening applies nothing twice", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db")
		for i := 0; i < 2; i++ {
			db, err := sqlite.OpenDB(context.Background(), path, true)
			if err != nil {
				t.Fatalf("open %d: %v", i, err)
			}
			var n int
			db.ReadPool().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n)
			db.Close()
			if want := migrationFiles(t); n != want {
				t.Fatalf("open %d: %d migration rows, want %d", i, n, want)
			}
		}
	})

	t.Run("a database migrated by a newer build still opens (expand-then-contract)", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db")
		db, err := sqlite.OpenDB(context.Background(), path, true)
		if err != nil {
			t.Fatal(err)
		}
		db.WritePool().Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)")
		db.Close()
		db, err = sqlite.OpenDB(context.Background(), path, true)
		if err != nil {
			t.Fatalf("an older build refused a newer schema: %v", err)
		}
		defer db.Close()
		if v := mustSchema(t, db); v != 999 {
			t.Fatalf("schema version %d, want 999 left as it was", v)
		}
	})
}

func TestNotes(t *testing.T) {
	ctx := context.Background()

	t.Run("every change bumps the version and appends to the change log", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		r1, err := s.CreateNote(ctx, u.ID, "one", app.Idempotency{})
		if err != nil || r1.Note.ID == 0 || r1.Note.Body != "one" || r1.Version != 1 {
			t.Fatalf("create: %+v %v", r1, err)
		}
		r2, _ := s.CreateNote(ctx, u.ID, "two", app.Idempotency{})
		r3, err := s.UpdateNote(ctx, u.ID, r1.Note.ID, "one!", nil, app.Idempotency{})
		if err != nil || r3.Version != 3 {
			t.Fatalf("update: %+v %v", r3, err)
		}
		r4, err := s.DeleteNote(ctx, u.ID, r1.Note.ID, nil, app.Idempotency{})
		if err != nil || r4.Note.ID != r1.Note.ID || r4.Version != 4 {
			t.Fatalf("delete: %+v %v", r4, err)
		}
		notes, v, err := s.ListNotes(ctx, u.ID)
		if err != nil || v != 4 || len(notes) != 1 || notes[0].Body != "two" {
			t.Fatalf("list: %+v v%d %v", notes, v, err)
		}
		_ = r2
		cs, err := s.ChangesAfter(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var ops []string
		for i, c := range cs {
			if c.Version != int64(i+1) || c.UserID != u.ID || c.Node != "node1" {
				t.Fatalf("change %d: %+v", i, c)
			}
			ops = append(ops, c.Op)
		}
		if got, want := strings.Join(ops, ","), "created,created,updated,deleted"; got != want {
			t.Fatalf("ops %s, want %s", got, want)
		}
	})

	t.Run("another user's note is not found and changes nothing", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		a, b := sqlitetest.User(t, s, "alice"), sqlitetest.User(t, s, "bob")
		r, _ := s.CreateNote(ctx, a.ID, "mine", app.Idempotency{})
		_ = r
		if _, err := s.DeleteNote(ctx, b.ID, 1, nil, app.Idempotency{}); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("delete other's note: %v, want not found", err)
		}
		if _, err := s.UpdateNote(ctx, b.ID, 1, "x", nil, app.Idempotency{}); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("update other's note: %v, want not found", err)
		}
		if v, _ := s.Version(ctx, b.ID); v != 0 {
			t.Fatalf("bob's version moved to %d", v)
		}
		notes, v, _ := s.ListNotes(ctx, a.ID)
		if len(notes) != 1 || v != 1 {
			t.Fatalf("alice has %d notes at v%d", len(notes), v)
		}
	})

	t.Run("bodies are validated", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		for _, body := range []string{"", strings.Repeat("é", app.MaxNoteChars+1), "bad \xff utf8"} {
			if _, err := s.CreateNote(ctx, u.ID, body, app.Idempotency{}); app.ErrorCode(err) != app.EINVALID {
				t.Errorf("body of %d bytes: %v, want invalid", len(body), err)
			}
		}
		if _, err := s.CreateNote(ctx, u.ID, strings.Repeat("é", app.MaxNoteChars), app.Idempotency{}); err != nil {
			t.Errorf("10,000 characters: %v", err)
		}
	})

	t.Run("a repeated idempotency key applies once and answers the first outcome", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		idem := app.Idempotency{Key: "k1", Fingerprint: "POST /api/notes x"}
		r1, err := s.CreateNote(ctx, u.ID, "x", idem)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := s.CreateNote(ctx, u.ID, "x", idem)
		if err != nil {
			t.Fatal(err)
		}
		if !r2.Replayed || r2.Note != r1.Note || r2.Version != r1.Version {
			t.Fatalf("repeat answered %+v, want replay of %+v", r2, r1)
		}
		if notes, v, _ := s.ListNotes(ctx, u.ID); len(notes) != 1 || v != 1 {
			t.Fatalf("%d notes at v%d, want 1 at v1", len(notes), v)
		}
	})

	t.Run("concurrent repeats of one key apply once", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		idem := app.Idempotency{Key: "same", Fingerprint: "POST /api/notes y"}
		var wg sync.WaitGroup
		answers := make([]app.NoteWrite, 8)
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.CreateNote(ctx, u.ID, "y", idem)
				if err != nil {
					t.Error(err)
					return
				}
				r.Replayed = false
				answers[i] = r
			}()
		}
		wg.Wait()
		for _, a := range answers {
			if a != answers[0] {
				t.Fatalf("answers differ: %+v vs %+v", a, answers[0])
			}
		}
		if notes, _, _ := s.ListNotes(ctx, u.ID); len(notes) != 1 {
			t.Fatalf("%d notes, want 1", len(notes))
		}
	})

	t.Run("a keyed delete repeated answers 204 again and deletes once", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		w, _ := s.CreateNote(ctx, u.ID, "x", app.Idempotency{})
		idem := app.Idempotency{Key: "del-1", Fingerprint: "DELETE /api/notes/x"}
		for i := 0; i < 2; i++ {
			r, err := s.DeleteNote(ctx, u.ID, w.Note.ID, nil, idem)
			if err != nil || r.Replayed != (i == 1) {
				t.Fatalf("delete %d: %+v %v", i, r, err)
			}
		}
		if v, _ := s.Version(ctx, u.ID); v != 2 {
			t.Fatalf("version %d, want 2 (one create, one delete)", v)
		}
	})

	t.Run("a key reused for a different request is refused", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		s.CreateNote(ctx, u.ID, "a", app.Idempotency{Key: "k", Fingerprint: "A"})
		if _, err := s.CreateNote(ctx, u.ID, "b", app.Idempotency{Key: "k", Fingerprint: "B"}); app.ErrorCode(err) != app.EUNPROCESSABLE {
			t.Fatalf("got %v, want unprocessable", err)
		}
	})

	t.Run("keys expire after 24 hours", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		now := time.Now()
		s.Now = func() time.Time { return now }
		idem := app.Idempotency{Key: "k", Fingerprint: "A"}
		s.CreateNote(ctx, u.ID, "a", idem)
		s.Now = func() time.Time { return now.Add(25 * time.Hour) }
		r, err := s.CreateNote(ctx, u.ID, "a", idem)
		if err != nil || r.Replayed {
			t.Fatalf("after 25 h: %+v %v, want a new write", r, err)
		}
	})

	t.Run("HTML and SQL-looking text is stored as text", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		for _, body := range []string{`<script>alert(1)</script>`, `'); DROP TABLE notes; --`} {
			if _, err := s.CreateNote(ctx, u.ID, body, app.Idempotency{}); err != nil {
				t.Fatal(err)
			}
		}
		notes, _, err := s.ListNotes(ctx, u.ID)
		if err != nil || len(notes) != 2 || notes[0].Body != `'); DROP TABLE notes; --` || notes[1].Body != `<script>alert(1)</script>` {
			t.Fatalf("%+v %v", notes, err)
		}
	})
}

// committerFunc is a function as a sqlite.Committer.
type committerFunc func(cs []app.Change, txid uint64)

func (f committerFunc) Committed(cs []app.Change, txid uint64) { f(cs, txid) }

func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.Unopened(t)
	var mu sync.Mutex
	var handed []app.Change
	s.Open(committerFunc(func(cs []app.Change, _ uint64) { mu.Lock(); handed = append(handed, cs...); mu.Unlock() }))
	users := []*app.User{sqlitetest.User(t, s, "alice"), sqlitetest.User(t, s, "bob")}

	const perUser = 100
	var wg sync.WaitGroup
	errs := make(chan error, 4*perUser)
	for _, u := range users {
		for i := 0; i < perUser; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := s.CreateNote(ctx, u.ID, "n", app.Idempotency{}); err != nil {
					errs <- err
				}
			}()
			go func() {
				// Interleaved failures roll back alone.
				defer wg.Done()
				if _, err := s.DeleteNote(ctx, u.ID, 1_000_000, nil, app.Idempotency{}); app.ErrorCode(err) != app.ENOTFOUND {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, u := range users {
		notes, v, err := s.ListNotes(ctx, u.ID)
		if err != nil || v != perUser || len(notes) != perUser {
			t.Fatalf("%s: %d notes at v%d (%v), want %d", u.Username, len(notes), v, err, perUser)
		}
	}
	cs, _ := s.ChangesAfter(ctx, 0, 10*perUser)
	if len(cs) != 2*perUser {
		t.Fatalf("%d changes logged, want %d", len(cs), 2*perUser)
	}
	// What the writer handed over after its commits is the change log,
	// in its order: the feed can push it without reading it back.
	mu.Lock()
	defer mu.Unlock()
	if !slices.EqualFunc(handed, cs, func(a, b app.Change) bool { return a == b && a.CreatedAt.Equal(b.CreatedAt) }) {
		t.Fatalf("handed over %d changes that differ from the %d logged; first handed %+v, first logged %+v", len(handed), len(cs), handed[0], cs[0])
	}
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.NewStore(t)
	sqlitetest.User(t, s, "alice")

	t.Run("a taken name is a conflict", func(t *testing.T) {
		if _, err := s.CreateUser(ctx, "alice", "password2"); app.ErrorCode(err) != app.ECONFLICT {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad names and passwords are invalid", func(t *testing.T) {
		for _, c := range [][2]string{{"al", "password1"}, {"Alice!", "password1"}, {strings.Repeat("a", 33), "password1"}, {"bob", "short"}, {"bob", strings.Repeat("p", 257)}} {
			if _, err := s.CreateUser(ctx, c[0], c[1]); app.ErrorCode(err) != app.EINVALID {
				t.Errorf("%q/%d-byte password: %v, want invalid", c[0], len(c[1]), err)
			}
		}
	})
	t.Run("authenticate checks the password", func(t *testing.T) {
		if _, err := s.Authenticate(ctx, "alice", "password1"); err != nil {
			t.Fatal(err)
		}
		for _, c := range [][2]string{{"alice", "wrong-password"}, {"nobody", "password1"}} {
			if _, err := s.Authenticate(ctx, c[0], c[1]); app.ErrorCode(err) != app.EUNAUTHORIZED {
				t.Errorf("%v: %v", c, err)
			}
		}
	})
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	now := time.Now()
	at := func(ago time.Duration) { s.Now = func() time.Time { return now.Add(-ago) } }
	keys := func() (n int) {
		s.DB().ReadPool().QueryRow("SELECT COUNT(*) FROM idempotency").Scan(&n)
		return n
	}
	at(25 * time.Hour)
	s.CreateNote(ctx, u.ID, "older than a day", app.Idempotency{Key: "k0", Fingerprint: "f"})
	at(2 * time.Hour)
	s.CreateNote(ctx, u.ID, "old", app.Idempotency{Key: "k", Fingerprint: "f"})
	s.CreateNote(ctx, u.ID, "old2", app.Idempotency{})
	at(0)
	s.CreateNote(ctx, u.ID, "new", app.Idempotency{Key: "k2", Fingerprint: "f"})
	if err := s.Prune(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	cs, _ := s.ChangesAfter(ctx, 0, 10)
	if len(cs) != 1 || cs[0].Version != 4 {
		t.Fatalf("changes after prune: %+v", cs)
	}
	if n := keys(); n != 2 {
		t.Fatalf("%d idempotency keys, want 2 (younger than 24 h)", n)
	}

	// A row added after one that is kept stays, even if the clock that
	// stamped it said older.
	at(3 * time.Hour)
	s.CreateNote(ctx, u.ID, "stamped by a clock behind", app.Idempotency{})
	if err := s.Prune(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if cs, _ := s.ChangesAfter(ctx, 0, 10); len(cs) != 2 {
		t.Fatalf("changes after prune: %+v", cs)
	}

	// Once every change is old, the newest stays: the next change's seq
	// follows it.
	at(-2 * time.Hour)
	if err := s.Prune(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if cs, _ := s.ChangesAfter(ctx, 0, 10); len(cs) != 1 || cs[0].Version != 5 {
		t.Fatalf("changes after prune: %+v", cs)
	}
	at(-25 * time.Hour)
	if err := s.Prune(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := keys(); n != 0 {
		t.Fatalf("%d idempotency keys a day later, want 0", n)
	}
	_ = sql.ErrNoRows
}

// migrationFiles counts the migrations the store embeds.
func migrationFiles(t *testing.T) int {
	t.Helper()
	entries, err := fs.ReadDir(sqlite.MigrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func mustSchema(t *testing.T, db *sqlite.DB) int {
	t.Helper()
	v, err := db.SchemaVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCommitsLeaveCheckpointsToCheckpoint: a write's commit does not copy
// the WAL into the database (SQLite would at 1,000 pages, inside the
// commit of whichever write crossed it); Checkpoint does, in the
// background.
func TestCommitsLeaveCheckpointsToCheckpoint(t *testing.T) {
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	ctx := context.Background()
	body := strings.Repeat("x", 9000) // three pages or so per note
	for i := 0; i < 400; i++ {
		if _, err := s.CreateNote(ctx, u.ID, body, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	pages, copied, err := s.DB().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pages <= 1000 {
		t.Fatalf("the WAL held %d pages: the commits checkpointed it themselves", pages)
	}
	if copied != pages {
		t.Fatalf("checkpoint copied %d of %d pages", copied, pages)
	}
	// The next write starts the WAL over, so it stays short.
	if _, err := s.CreateNote(ctx, u.ID, "after", app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if pages, _, err := s.DB().Checkpoint(ctx); err != nil || pages > 50 {
		t.Fatalf("after a checkpoint and one write the WAL holds %d pages (%v)", pages, err)
	}
	notes, _, err := s.ListNotes(ctx, u.ID)
	if err != nil || len(notes) != 401 {
		t.Fatalf("%d notes (%v), want 401", len(notes), err)
	}
}
