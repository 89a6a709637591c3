package sqlite_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
)

// TestEditsFromAnOlderRevisionMerge: an edit made from a revision that is
// no longer current is merged with what was saved since, when the two
// changed different lines (docs/PROTOCOL.md §12).
func TestEditsFromAnOlderRevisionMerge(t *testing.T) {
	ctx := context.Background()
	const base = "first line\nmiddle\nlast line"
	setup := func(t *testing.T) (*sqlite.Store, int64, int64) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		r, err := s.CreateNote(ctx, u.ID, base, app.Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateNote(ctx, u.ID, r.Note.ID, "FIRST LINE\nmiddle\nlast line", app.Revs{1}, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		return s, u.ID, r.Note.ID
	}

	t.Run("changes to different lines are merged and said to be", func(t *testing.T) {
		s, user, id := setup(t)
		w, err := s.UpdateNote(ctx, user, id, "first line\nmiddle\nLAST LINE", app.Revs{1}, app.Idempotency{})
		if err != nil {
			t.Fatalf("an edit of another line from revision 1: %v", err)
		}
		if got, want := w.Note.Body, "FIRST LINE\nmiddle\nLAST LINE"; got != want || !w.Merged || w.Note.Rev != 3 {
			t.Fatalf("saved %q at rev %d, merged %v; want %q at rev 3, merged", got, w.Note.Rev, w.Merged, want)
		}
		if n, _, _ := s.GetNote(ctx, user, id); n.Body != w.Note.Body {
			t.Fatalf("stored %q, answered %q", n.Body, w.Note.Body)
		}
	})

	t.Run("changes to the same line are refused with the note as it is", func(t *testing.T) {
		s, user, id := setup(t)
		_, err := s.UpdateNote(ctx, user, id, "First line!\nmiddle\nlast line", app.Revs{1}, app.Idempotency{})
		var e *app.Error
		if app.ErrorCode(err) != app.ESTALE || !errors.As(err, &e) || e.Note == nil || e.Note.Rev != 2 || !strings.HasPrefix(e.Note.Body, "FIRST LINE") {
			t.Fatalf("an edit of the same line: %v, want stale with the note at rev 2", err)
		}
	})

	t.Run("an edit from the current revision is no merge", func(t *testing.T) {
		s, user, id := setup(t)
		w, err := s.UpdateNote(ctx, user, id, "whatever", app.Revs{2}, app.Idempotency{})
		if err != nil || w.Merged || w.Note.Body != "whatever" {
			t.Fatalf("%+v, %v", w, err)
		}
	})

	t.Run("a repeat of a merged write is answered with the merge, however long", func(t *testing.T) {
		s, user, id := setup(t)
		long := "first line\nmiddle\n" + strings.Repeat("long ", 100)
		idem := app.Idempotency{Key: "k1", Fingerprint: "PATCH merge"}
		first, err := s.UpdateNote(ctx, user, id, long, app.Revs{1}, idem)
		if err != nil || !first.Merged {
			t.Fatalf("first: %+v, %v", first, err)
		}
		again, err := s.UpdateNote(ctx, user, id, long, app.Revs{1}, idem)
		if err != nil || !again.Replayed || !again.Merged || again.Note.Body != first.Note.Body {
			t.Fatalf("repeat: %+v, %v; want the merge %q replayed", again, err, first.Note.Body)
		}
	})

	t.Run("an edit from a revision no longer kept is refused", func(t *testing.T) {
		s, user, id := setup(t)
		for i := range sqlite.KeptRevisions {
			if _, err := s.UpdateNote(ctx, user, id, "FIRST LINE\nmiddle "+strings.Repeat("!", i+1)+"\nlast line", nil, app.Idempotency{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.UpdateNote(ctx, user, id, "first line\nmiddle\nLAST", app.Revs{1}, app.Idempotency{}); app.ErrorCode(err) != app.ESTALE {
			t.Fatalf("from revision 1 of %d: %v, want stale", sqlite.KeptRevisions+2, err)
		}
		if _, err := s.UpdateNote(ctx, user, id, "FIRST LINE\nmiddle !!\nLAST", app.Revs{4}, app.Idempotency{}); err != nil {
			t.Fatalf("from revision 4, still kept: %v", err)
		}
		if n := count(t, s, `SELECT COUNT(*) FROM note_revisions WHERE note_id = ?`, id); n != sqlite.KeptRevisions {
			t.Fatalf("%d earlier texts kept, want %d", n, sqlite.KeptRevisions)
		}
	})
}

func TestKeptRevisionsAreBounded(t *testing.T) {
	ctx := context.Background()

	t.Run("by the quota's bytes, oldest first, without counting against it", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		s.Quota = app.Quota{Bytes: 100}
		u := sqlitetest.User(t, s, "alice")
		r, err := s.CreateNote(ctx, u.ID, strings.Repeat("a", 40), app.Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if _, err := s.UpdateNote(ctx, u.ID, r.Note.ID, strings.Repeat(string(rune('b'+i)), 40), nil, app.Idempotency{}); err != nil {
				t.Fatalf("edit %d of a note of 40 bytes under a quota of 100: %v", i+1, err)
			}
		}
		kept := count(t, s, `SELECT revision_bytes FROM users WHERE id = ?`, u.ID)
		if sum := count(t, s, `SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM note_revisions WHERE user_id = ?`, u.ID); kept > 100 || kept != sum {
			t.Fatalf("revision_bytes %d, texts' bytes %d; want them equal, at most 100", kept, sum)
		}
		if n := count(t, s, `SELECT COUNT(*) FROM note_revisions WHERE user_id = ? AND rev = 10`, u.ID); n != 1 {
			t.Fatal("the newest earlier text was dropped")
		}
	})

	t.Run("a note forgotten for good takes its texts with it", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		r, err := s.CreateNote(ctx, u.ID, "one", app.Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateNote(ctx, u.ID, r.Note.ID, "two", nil, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteNote(ctx, u.ID, r.Note.ID, nil, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		s.Now = func() time.Time { return time.Now().Add(app.UndoWindow + time.Second) }
		if n, err := s.Purge(ctx); err != nil || n != 1 {
			t.Fatalf("purge: %d, %v", n, err)
		}
		if n := count(t, s, `SELECT COUNT(*) FROM note_revisions WHERE note_id = ?`, r.Note.ID); n != 0 {
			t.Fatalf("%d texts of a purged note kept", n)
		}
		if n := count(t, s, `SELECT revision_bytes FROM users WHERE id = ?`, u.ID); n != 0 {
			t.Fatalf("revision_bytes %d after the purge", n)
		}
	})
}

// count runs a query of one integer with one argument.
func count(t *testing.T, s *sqlite.Store, query string, arg int64) int64 {
	t.Helper()
	var n int64
	if err := s.DB().ReadPool().QueryRow(query, arg).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
