package sqlite_test

import (
	"context"
	"strings"
	"testing"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

// TestIdempotencyRecordsKeepNoCopy: a keyed write's record keeps what a
// retry needs to answer the first outcome, not a copy of a long body.
func TestIdempotencyRecordsKeepNoCopy(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	long := strings.Repeat("漢", 10_000)
	longer := strings.Repeat("漢", 9_999) + "!" // another body as long
	key := func(k string) app.Idempotency { return app.Idempotency{Key: k, Fingerprint: "F " + k} }

	created, err := s.CreateNote(ctx, u.ID, long, key("create"))
	if err != nil {
		t.Fatal(err)
	}
	updated, err := s.UpdateNote(ctx, u.ID, created.Note.ID, longer, nil, key("update"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteNote(ctx, u.ID, created.Note.ID, nil, key("delete")); err != nil {
		t.Fatal(err)
	}
	restored, err := s.RestoreNote(ctx, u.ID, created.Note.ID, key("restore"))
	if err != nil {
		t.Fatal(err)
	}
	short, err := s.CreateNote(ctx, u.ID, "short", key("short"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the records hold no long body", func(t *testing.T) {
		var n, size int64
		if err := s.DB().ReadPool().QueryRow(`SELECT COUNT(*), SUM(length(body)) FROM idempotency`).Scan(&n, &size); err != nil {
			t.Fatal(err)
		}
		// The restore keeps its body: its request has none to give again.
		if n != 5 || size > 4*300+int64(len(restored.Note.Body))+300 {
			t.Fatalf("%d records of %d bytes in all, for writes of %d bytes: a copy of the bodies", n, size, 2*len(long))
		}
	})

	t.Run("a repeat answers with the first outcome, body and all", func(t *testing.T) {
		// Moved on since: a repeat still answers what the first write did.
		if _, err := s.UpdateNote(ctx, u.ID, created.Note.ID, "later", nil, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name  string
			write func() (app.NoteWrite, error)
			want  app.NoteWrite
		}{
			{"create", func() (app.NoteWrite, error) { return s.CreateNote(ctx, u.ID, long, key("create")) }, created},
			{"update", func() (app.NoteWrite, error) {
				return s.UpdateNote(ctx, u.ID, created.Note.ID, longer, nil, key("update"))
			}, updated},
			{"short", func() (app.NoteWrite, error) { return s.CreateNote(ctx, u.ID, "short", key("short")) }, short},
			{"restore", func() (app.NoteWrite, error) { return s.RestoreNote(ctx, u.ID, created.Note.ID, key("restore")) }, restored},
		} {
			got, err := c.write()
			if err != nil || !got.Replayed || got.Version != c.want.Version || !got.Note.UpdatedAt.Equal(c.want.Note.UpdatedAt) ||
				got.Note.ID != c.want.Note.ID || got.Note.Rev != c.want.Note.Rev || got.Note.Body != c.want.Note.Body {
				t.Fatalf("%s repeated: %v, replayed %v, note %d rev %d v%d, body of %d bytes; want note %d rev %d v%d, %d bytes",
					c.name, err, got.Replayed, got.Note.ID, got.Note.Rev, got.Version, len(got.Note.Body),
					c.want.Note.ID, c.want.Note.Rev, c.want.Version, len(c.want.Note.Body))
			}
		}
	})
}
