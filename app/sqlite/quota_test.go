package sqlite_test

import (
	"context"
	"strings"
	"testing"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

func TestQuota(t *testing.T) {
	ctx := context.Background()

	t.Run("a note past the count is refused, in words; a delete makes room", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		s.Quota = app.Quota{Notes: 3}
		u := sqlitetest.User(t, s, "alice")
		var ids []int64
		for i := range 3 {
			r, err := s.CreateNote(ctx, u.ID, "note", app.Idempotency{})
			if err != nil {
				t.Fatalf("note %d: %v", i+1, err)
			}
			ids = append(ids, r.Note.ID)
		}
		_, err := s.CreateNote(ctx, u.ID, "one too many", app.Idempotency{})
		if app.ErrorCode(err) != app.ETOOLARGE || !strings.Contains(app.ErrorMessage(err), "the most one account may keep") {
			t.Fatalf("fourth note: %v, want too_large in words", err)
		}
		if _, v, _ := s.ListNotes(ctx, u.ID); v != 3 {
			t.Fatalf("the refused note moved the version to %d", v)
		}
		if _, err := s.DeleteNote(ctx, u.ID, ids[0], nil, app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateNote(ctx, u.ID, "room again", app.Idempotency{}); err != nil {
			t.Fatalf("after a delete: %v", err)
		}
		if _, err := s.RestoreNote(ctx, u.ID, ids[0], app.Idempotency{}); app.ErrorCode(err) != app.ETOOLARGE {
			t.Fatalf("a restore past the count: %v, want too_large", err)
		}
		other := sqlitetest.User(t, s, "bob")
		if _, err := s.CreateNote(ctx, other.ID, "bob's own", app.Idempotency{}); err != nil {
			t.Fatalf("another user: %v", err)
		}
	})

	t.Run("bytes: a write that grows past them is refused, one that shrinks passes", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		s.Quota = app.Quota{Bytes: 10}
		u := sqlitetest.User(t, s, "alice")
		r, err := s.CreateNote(ctx, u.ID, "ééé", app.Idempotency{}) // 6 bytes
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateNote(ctx, u.ID, "abcde", app.Idempotency{}); app.ErrorCode(err) != app.ETOOLARGE {
			t.Fatalf("11 bytes: %v, want too_large", err)
		}
		if _, err := s.UpdateNote(ctx, u.ID, r.Note.ID, "éééééé", nil, app.Idempotency{}); app.ErrorCode(err) != app.ETOOLARGE {
			t.Fatalf("an update to 12 bytes: %v, want too_large", err)
		}
		if _, err := s.UpdateNote(ctx, u.ID, r.Note.ID, "abcdefghij", nil, app.Idempotency{}); err != nil {
			t.Fatalf("an update to 10 bytes: %v", err)
		}
		s.Quota = app.Quota{Bytes: 4} // lowered below what the user holds
		if _, err := s.UpdateNote(ctx, u.ID, r.Note.ID, "abcdef", nil, app.Idempotency{}); err != nil {
			t.Fatalf("a shorter body over a lowered quota: %v", err)
		}
	})

	t.Run("usage is kept by the database, whoever writes the notes", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		u := sqlitetest.User(t, s, "alice")
		s.CreateNote(ctx, u.ID, "ab", app.Idempotency{})
		// A release that knows nothing of the quota writes as it always did.
		w := s.DB().WritePool()
		if _, err := w.Exec(`INSERT INTO notes (user_id, body, created_at, updated_at) VALUES (?, 'éé', 0, 0)`, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Exec(`UPDATE notes SET body = 'abcd' WHERE body = 'ab'`); err != nil {
			t.Fatal(err)
		}
		var n, b int64
		if err := w.QueryRow(`SELECT note_count, note_bytes FROM users WHERE id = ?`, u.ID).Scan(&n, &b); err != nil {
			t.Fatal(err)
		}
		if n != 2 || b != 8 {
			t.Fatalf("usage %d notes, %d bytes; want 2, 8", n, b)
		}
		if _, err := w.Exec(`DELETE FROM notes WHERE user_id = ?`, u.ID); err != nil {
			t.Fatal(err)
		}
		w.QueryRow(`SELECT note_count, note_bytes FROM users WHERE id = ?`, u.ID).Scan(&n, &b)
		if n != 0 || b != 0 {
			t.Fatalf("after deleting every note: %d notes, %d bytes", n, b)
		}
	})
}
