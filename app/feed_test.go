package app

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"notesync/realtime"
)

// recordingPublisher keeps what the feed broadcast, and what the feed
// answered for the user's version at that moment.
type recordingPublisher struct {
	mu     sync.Mutex
	feed   *Feed
	pushed []int64
	atPush []int64
}

func (p *recordingPublisher) Broadcast(userID int64, m realtime.Message) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, _ := p.feed.Version(context.Background(), userID)
	p.pushed = append(p.pushed, m.Version)
	p.atPush = append(p.atPush, v)
	return 1
}

// TestFeedVersion checks the version a new connection is greeted with: the
// database's before the feed has pushed anything, and never behind a
// change the feed has broadcast (a connection that registered after the
// broadcast would miss that change).
func TestFeedVersion(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	u := mustUser(t, s, "alice")
	for range 3 {
		if _, err := s.CreateNote(ctx, u.ID, "n", Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &recordingPublisher{}
	f, err := NewFeed(ctx, s, pub, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	pub.feed = f
	if v, err := f.Version(ctx, u.ID); err != nil || v != 3 {
		t.Fatalf("version before any push: %d, %v; want 3 from the database", v, err)
	}
	for range 2 {
		if _, err := s.CreateNote(ctx, u.ID, "n", Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.pushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if len(pub.pushed) != 2 {
		t.Fatalf("pushed %v, want versions 4 and 5", pub.pushed)
	}
	for i, v := range pub.pushed {
		if pub.atPush[i] < v {
			t.Errorf("while v%d was broadcast, a new connection would have been greeted with v%d", v, pub.atPush[i])
		}
	}
	if v, _ := f.Version(ctx, u.ID); v != 5 {
		t.Fatalf("version after the pushes: %d, want 5", v)
	}
	// A database read that raced a push does not take the version back.
	if got := f.seen(u.ID, 4); got != 5 {
		t.Fatalf("an older read replaced the newer version: %d", got)
	}
	if _, err := f.Version(ctx, 99999); err == nil {
		t.Fatal("a user that does not exist has a version")
	}
}
