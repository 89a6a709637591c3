package sqlite_test

import (
	"context"
	"testing"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

func TestReapply(t *testing.T) {
	ctx := context.Background()
	// old is the primary that answered the writes; next the one that
	// took its place without them.
	old, next := sqlitetest.NewStore(t), sqlitetest.NewStore(t)
	alice := sqlitetest.User(t, old, "alice")
	if u := sqlitetest.User(t, next, "alice"); u.ID != alice.ID {
		t.Fatalf("alice is %d and %d", alice.ID, u.ID)
	}
	kept, err := old.CreateNote(ctx, alice.ID, "kept", app.Idempotency{Key: "k1", Fingerprint: "f1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.UpdateNote(ctx, alice.ID, kept.Note.ID, "kept, edited", nil, app.Idempotency{Key: "k2", Fingerprint: "f2"}); err != nil {
		t.Fatal(err)
	}
	gone, _ := old.CreateNote(ctx, alice.ID, "gone", app.Idempotency{})
	if _, err := old.DeleteNote(ctx, alice.ID, gone.Note.ID, nil, app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	taken, _ := old.CreateNote(ctx, alice.ID, "its id is taken there", app.Idempotency{Key: "k3", Fingerprint: "f3"})
	// The other history gave that id to a note of its own.
	if _, err := next.CreateNoteWithID(ctx, alice.ID, taken.Note.ID, "theirs", app.Idempotency{}); err != nil {
		t.Fatal(err)
	}

	ws, err := old.WrittenAfter(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 5 {
		t.Fatalf("%d changes read, want 5: %+v", len(ws), ws)
	}
	if w := ws[1]; w.Op != app.OpUpdated || w.Body != "kept, edited" || w.Rev != 2 || w.Key != "k2" || w.Fingerprint != "f2" || w.ID == "" {
		t.Fatalf("the update reads %+v", w)
	}
	if w := ws[0]; w.Body != "kept" || w.Rev != 1 {
		t.Fatalf("the create, since updated, reads %+v: want the text it gave", w)
	}
	if has, err := old.HasChanges(ctx, []app.Change{ws[0].Change, ws[4].Change}); err != nil || !has[ws[0].ID] || !has[ws[4].ID] || len(has) != 2 {
		t.Fatalf("its own history holds %v (%v)", has, err)
	}
	// next holds a change of its own at ws[0]'s version, and nothing at
	// ws[4]'s.
	has, err := next.HasChanges(ctx, []app.Change{ws[0].Change, ws[4].Change})
	if err != nil || len(has) != 0 {
		t.Fatalf("the other history holds %v (%v)", has, err)
	}

	// Two nodes that held the changes apply them again, one after the
	// other: each lands once.
	for round := range 2 {
		for _, w := range ws {
			r, err := next.Reapply(ctx, w)
			if err != nil {
				t.Fatalf("round %d: %s of note %d: %v", round, w.Op, w.NoteID, err)
			}
			if r.Replayed != (round == 1) {
				t.Fatalf("round %d: %s of note %d: replayed %v", round, w.Op, w.NoteID, r.Replayed)
			}
			if w.Op == app.OpCreated && w.NoteID != taken.Note.ID && r.Note.ID != w.NoteID {
				t.Fatalf("create of note %d landed as note %d", w.NoteID, r.Note.ID)
			}
		}
	}
	notes, version, err := next.ListNotes(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if version != 6 {
		t.Fatalf("version %d, want 6: one change of its own and five applied again, once", version)
	}
	bodies := map[int64]string{}
	for _, n := range notes {
		bodies[n.ID] = n.Body
	}
	if len(bodies) != 3 || bodies[kept.Note.ID] != "kept, edited" || bodies[taken.Note.ID] != "theirs" {
		t.Fatalf("notes %v", bodies)
	}
	// The client that sent the create sends it again: it is answered
	// from the change applied again.
	r, err := next.CreateNote(ctx, alice.ID, "kept", app.Idempotency{Key: "k1", Fingerprint: "f1"})
	if err != nil || !r.Replayed || r.Note.ID != kept.Note.ID {
		t.Fatalf("retry: %+v, %v", r, err)
	}
	has, err = next.HasChanges(ctx, []app.Change{ws[0].Change})
	if err != nil || len(has) != 0 {
		t.Fatalf("a change applied again is a change of its own: %v (%v)", has, err)
	}
}
