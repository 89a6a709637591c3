package web

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

func TestParkedReads(t *testing.T) {
	t.Run("a waiting read wakes for its own user's change, not for another user's", func(t *testing.T) {
		ts := newTestServer(t)
		ctx := context.Background()
		alice, bob := sqlitetest.User(t, ts.store, "alice"), sqlitetest.User(t, ts.store, "bob")
		aliceMoved, doneA := ts.srv.Feed.Await(alice.ID)
		defer doneA()
		bobMoved, doneB := ts.srv.Feed.Await(bob.ID)
		defer doneB()

		if _, err := ts.store.CreateNote(ctx, bob.ID, "bob's", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-bobMoved:
		case <-time.After(5 * time.Second):
			t.Fatal("bob's waiter never woke")
		}
		select {
		case <-aliceMoved:
			t.Fatal("alice's waiter woke for bob's change")
		default:
		}
		if _, err := ts.store.CreateNote(ctx, alice.ID, "alice's", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-aliceMoved:
		case <-time.After(5 * time.Second):
			t.Fatal("alice's waiter never woke")
		}
	})

	t.Run("one user parks at most MaxParkedReads reads over all their sessions; the next gets 429", func(t *testing.T) {
		ts := newTestServer(t, func(c *Config) { c.MaxParkedReads = 3; c.MinVersionWait = 3 * time.Second })
		b := ts.browser(t)
		b.signup("alice")
		other := ts.browser(t)
		other.signup("bob")
		second := ts.browser(t) // alice's second session: log-ins are free
		if resp, _ := second.logIn("10.0.0.1", "alice", "password1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("second log-in: %d", resp.StatusCode)
		}
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Go(func() {
				if resp, _ := b.Do("GET", "/api/notes?min_version=99", "", ""); resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("parked read: %d, want 503 at its deadline", resp.StatusCode)
				}
			})
		}
		deadline := time.Now().Add(5 * time.Second)
		for ts.srv.parkedCount() < 3 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		for _, s := range []*browser{b, second} {
			resp, body := s.Do("GET", "/notes?min_version=99", "", "")
			jsonError(t, resp, body, http.StatusTooManyRequests)
			if resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
		// A read that need not wait is served, and so is another user's.
		if resp, _ := b.Do("GET", "/api/notes?min_version=0", "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("a read at the current version: %d", resp.StatusCode)
		}
		wg.Go(func() { other.Do("GET", "/api/notes?min_version=99", "", "") })
		for ts.srv.parkedCount() < 4 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := ts.srv.parkedCount(); n != 4 {
			t.Errorf("%d reads parked, want 4 (another user is not limited by this one)", n)
		}
		wg.Wait()
	})
}

// parkedCount is how many reads are parked now, over all users.
func (s *Server) parkedCount() int {
	s.parkedMu.Lock()
	defer s.parkedMu.Unlock()
	n := 0
	for _, v := range s.parked {
		n += v
	}
	return n
}
