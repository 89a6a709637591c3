package sqlite_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

// counter is a position that moves by one at each read past a commit: a
// stand-in for LiteFS's TXID, as the writer reads it inside its commits.
type counter struct {
	mu   sync.Mutex
	txid uint64
}

func (c *counter) TXID() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.txid++ // each read is a commit's, or a repeat's, which is fine
	return c.txid - 1, nil
}

// holder records the TXIDs waited for and answers with err.
type holder struct {
	mu     sync.Mutex
	waited []uint64
	err    error
}

func (h *holder) WaitHeld(ctx context.Context, txid uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waited = append(h.waited, txid)
	return h.err
}

func TestWritesWaitUntilHeld(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.Unopened(t)
	h := &holder{}
	s.Position, s.Held = &counter{txid: 10}, h
	s.Open(nil)
	u := sqlitetest.User(t, s, "alice")
	key := app.Idempotency{Key: "k1", Fingerprint: "F"}

	if _, err := s.CreateNote(ctx, u.ID, "one", key); err != nil {
		t.Fatal(err)
	}
	if len(h.waited) != 1 || h.waited[0] == 0 {
		t.Fatalf("waited for %v, want the write's own TXID", h.waited)
	}
	t.Run("a repeat waits too, for the database as it is now", func(t *testing.T) {
		res, err := s.CreateNote(ctx, u.ID, "one", key)
		if err != nil || !res.Replayed {
			t.Fatalf("repeat: %+v %v", res, err)
		}
		if len(h.waited) != 2 || h.waited[1] < h.waited[0] {
			t.Fatalf("waited for %v, want a second wait at or past the first", h.waited)
		}
	})
	t.Run("a write nobody holds in time is answered 504 to retry", func(t *testing.T) {
		h.err = errors.New("no other candidate holds the write yet")
		_, err := s.CreateNote(ctx, u.ID, "two", app.Idempotency{Key: "k2", Fingerprint: "F2"})
		var e *app.Error
		if !errors.As(err, &e) || e.Code != app.EUNCONFIRMED || e.RetryAfter <= 0 {
			t.Fatalf("got %v, want EUNCONFIRMED with Retry-After", err)
		}
		h.err = nil
		res, err := s.CreateNote(ctx, u.ID, "two", app.Idempotency{Key: "k2", Fingerprint: "F2"})
		if err != nil || !res.Replayed {
			t.Fatalf("the retry: %+v %v, want the first write's outcome", res, err)
		}
	})
	t.Run("a refused write waits for nothing", func(t *testing.T) {
		n := len(h.waited)
		if _, err := s.UpdateNote(ctx, u.ID, 9999, "x", nil, app.Idempotency{}); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("got %v, want not found", err)
		}
		if len(h.waited) != n {
			t.Fatalf("waited for %v after a refused write", h.waited[n:])
		}
	})
}

// unreadable is a position that cannot be read the first time, inside the
// commit, and reads at after.
type unreadable struct {
	mu    sync.Mutex
	reads int
	at    uint64
}

func (u *unreadable) TXID() (uint64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reads++
	if u.reads == 1 {
		return 0, errors.New("position unreadable")
	}
	return u.at, nil
}

func TestWriteWithoutItsPositionWaitsForTheDatabases(t *testing.T) {
	s := sqlitetest.Unopened(t)
	h := &holder{}
	s.Position, s.Held = &unreadable{at: 7}, h
	s.Open(nil)
	u := sqlitetest.User(t, s, "alice")
	if _, err := s.CreateNote(context.Background(), u.ID, "one", app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if len(h.waited) != 1 || h.waited[0] != 7 {
		t.Fatalf("waited for %v, want the database's position after the commit, 7", h.waited)
	}
}
