package journal_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/journal"
	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
)

var ctx = context.Background()

// node is a journal over a database that LiteFS can replace with another
// history (use), at a position the test sets.
type node struct {
	mu  sync.Mutex
	db  *sqlite.Store
	pos uint64
	j   *journal.Journal
}

func newNode(db *sqlite.Store) *node {
	n := &node{db: db}
	n.j = &journal.Journal{Source: n, Position: func() (uint64, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.pos, nil
	}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return n
}

func (n *node) store() *sqlite.Store {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.db
}

func (n *node) WrittenAfter(ctx context.Context, after int64, limit int) ([]app.Written, error) {
	return n.store().WrittenAfter(ctx, after, limit)
}

func (n *node) LastChangeSeq(ctx context.Context) (int64, error) {
	return n.store().LastChangeSeq(ctx)
}

func (n *node) HasChanges(ctx context.Context, cs []app.Change) (map[string]bool, error) {
	return n.store().HasChanges(ctx, cs)
}

// use makes db, at pos, the node's database.
func (n *node) use(db *sqlite.Store, pos uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.db, n.pos = db, pos
}

func (n *node) step(t *testing.T) {
	t.Helper()
	if err := n.j.Step(ctx); err != nil {
		t.Fatal(err)
	}
}

// through applies changes again on primary, as the node's own store
// would if it were the primary, and counts them.
func through(primary *sqlite.Store, count *int) func(context.Context, app.Written) (journal.Landed, error) {
	return func(ctx context.Context, w app.Written) (journal.Landed, error) {
		r, err := primary.Reapply(ctx, w)
		if err != nil {
			if c := app.ErrorCode(err); c == app.ENOTFOUND {
				return journal.Landed{}, errors.Join(journal.ErrRefused, err)
			}
			return journal.Landed{}, err
		}
		*count++
		return journal.Landed{NoteID: r.Note.ID, Replayed: r.Replayed}, nil
	}
}

func create(t *testing.T, s *sqlite.Store, userID int64, body, key string) app.Note {
	t.Helper()
	w, err := s.CreateNote(ctx, userID, body, app.Idempotency{Key: key, Fingerprint: key})
	if err != nil {
		t.Fatal(err)
	}
	return w.Note
}

func TestJournalKeepsUntilEveryCandidateHolds(t *testing.T) {
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	n := newNode(s)
	var all uint64
	n.j.HeldByAll = func() uint64 { return all }
	n.pos = 10
	create(t, s, u.ID, "one", "k1")
	create(t, s, u.ID, "two", "")
	n.step(t)
	if held, _ := n.j.Len(); held != 2 || n.j.Through() != 10 {
		t.Fatalf("held %d through %d, want 2 through 10", held, n.j.Through())
	}
	n.pos = 11
	create(t, s, u.ID, "three", "")
	all = 10
	n.step(t)
	if held, _ := n.j.Len(); held != 1 {
		t.Fatalf("held %d once every candidate holds 10, want 1 (the change at 11)", held)
	}
	all = 11
	n.step(t)
	if held, _ := n.j.Len(); held != 0 {
		t.Fatalf("held %d once every candidate holds 11, want 0", held)
	}
}

func TestJournalBounds(t *testing.T) {
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	n := newNode(s)
	n.j.Max = 3
	n.j.Keep = 200 * time.Millisecond
	for range 5 {
		create(t, s, u.ID, "note", "")
	}
	n.step(t)
	if held, _ := n.j.Len(); held != 3 {
		t.Fatalf("held %d, want Max 3", held)
	}
	for range 5 {
		create(t, s, u.ID, "note", "")
	}
	n.step(t)
	if held, _ := n.j.Len(); held != 3 {
		t.Fatalf("held %d, want Max 3", held)
	}
	time.Sleep(n.j.Keep)
	n.step(t)
	if held, _ := n.j.Len(); held != 0 {
		t.Fatalf("held %d after Keep, want 0", held)
	}

	n.j.MaxBytes = 10
	create(t, s, u.ID, "0123456789", "")
	create(t, s, u.ID, "abc", "")
	n.step(t)
	if held, _ := n.j.Len(); held != 1 {
		t.Fatalf("held %d with texts of 13 bytes, want 1 (MaxBytes 10)", held)
	}
}

func TestJournalAppliesAgainWhatTheNewPrimaryLacks(t *testing.T) {
	// old is the history the nodes held; next the new primary's, which
	// took the lease while behind: it has the first note only, and a note
	// of its own under the id that the old history gave the third.
	old, next := sqlitetest.NewStore(t), sqlitetest.NewStore(t)
	u := sqlitetest.User(t, old, "alice")
	sqlitetest.User(t, next, "alice")
	first := create(t, old, u.ID, "first", "k1")
	if _, err := next.CreateNoteWithID(ctx, u.ID, first.ID, "first", app.Idempotency{Key: "k1", Fingerprint: "k1"}); err != nil {
		t.Fatal(err)
	}
	// Two nodes held the old history.
	a, b := newNode(old), newNode(old)
	a.pos, b.pos = 1, 1
	a.step(t)
	b.step(t)

	second := create(t, old, u.ID, "second", "k2")
	third := create(t, old, u.ID, "third", "")
	if _, err := old.UpdateNote(ctx, u.ID, first.ID, "first, edited", nil, app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.UpdateNote(ctx, u.ID, third.ID, "third, edited", nil, app.Idempotency{Key: "k3", Fingerprint: "k3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.DeleteNote(ctx, u.ID, second.ID, nil, app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if _, err := next.CreateNoteWithID(ctx, u.ID, third.ID, "theirs", app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	a.pos, b.pos = 6, 6
	a.step(t)
	b.step(t)

	// LiteFS brings both in line with next; both apply again what it
	// lacks, a first, then b.
	var landedA, landedB int
	a.j.Reapply, b.j.Reapply = through(next, &landedA), through(next, &landedB)
	a.use(next, 3)
	b.use(next, 3)
	a.step(t)
	if _, pending := a.j.Len(); pending != 0 || landedA != 6 {
		t.Fatalf("a: %d pending, %d applied again; want 0 and 6", pending, landedA)
	}
	_, before, _ := next.ListNotes(ctx, u.ID)
	b.step(t)
	if landedB != 6 {
		t.Fatalf("b applied again %d, want 6 (each answered as there already)", landedB)
	}
	notes, version, err := next.ListNotes(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if version != before || version != 7 {
		t.Fatalf("version %d, %d before b; want 7: two of its own and five applied again, once", version, before)
	}
	bodies := map[int64]string{}
	var moved int64
	for _, n := range notes {
		bodies[n.ID] = n.Body
		if n.Body == "third, edited" {
			moved = n.ID
		}
	}
	if len(bodies) != 3 || bodies[first.ID] != "first, edited" || bodies[third.ID] != "theirs" || moved == 0 || moved == third.ID {
		t.Fatalf("notes %v: want the first edited, theirs kept, and the third edited under a new id", bodies)
	}
	// A client that sent the second note sends it again: answered from
	// the change applied again, not made twice.
	r, err := next.CreateNote(ctx, u.ID, "second", app.Idempotency{Key: "k2", Fingerprint: "k2"})
	if err != nil || !r.Replayed || r.Note.ID != second.ID {
		t.Fatalf("retry: %+v, %v", r, err)
	}
	// The nodes go on from the new history, and hold the changes applied
	// again.
	a.step(t)
	if held, _ := a.j.Len(); held < 5 {
		t.Fatalf("a holds %d changes of the new history", held)
	}
}

// unreadable is a database whose change log the journal cannot read, as
// under a release before migration 0005 during a rolling deploy.
type unreadable struct{ *node }

func (unreadable) WrittenAfter(context.Context, int64, int) ([]app.Written, error) {
	return nil, errors.New("no such column: idem_key")
}

func TestJournalThatCannotReadStillLetsTheNodeAcknowledge(t *testing.T) {
	n := newNode(sqlitetest.NewStore(t))
	n.pos = 7
	moved := 0
	n.j.Source, n.j.OnThrough = unreadable{n}, func() { moved++ }
	if err := n.j.Step(ctx); err == nil {
		t.Fatal("no error from a log it cannot read")
	}
	if n.j.Through() != 7 || moved != 1 {
		t.Fatalf("through %d, moved %d times; want 7, once", n.j.Through(), moved)
	}
}
