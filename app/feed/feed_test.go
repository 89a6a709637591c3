package feed

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
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
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	for range 3 {
		if _, err := s.CreateNote(ctx, u.ID, "n", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &recordingPublisher{}
	f, err := NewFeed(ctx, s, pub, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	pub.feed = f
	if v, err := f.Version(ctx, u.ID); err != nil || v != 3 {
		t.Fatalf("version before any push: %d, %v; want 3 from the database", v, err)
	}
	for range 2 {
		if _, err := s.CreateNote(ctx, u.ID, "n", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.pushOnce(ctx, "poll"); err != nil {
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

// TestFeedCommitted checks the writer's hand-over: what this node commits
// is pushed once and in order without reading the change log, while
// changes it did not commit (replicated, or from before) are read, and the
// two paths never push a change twice.
// handOver hands a store's commits to its feed once there is one.
type handOver struct{ feed atomic.Pointer[Feed] }

func (h *handOver) Committed(cs []app.Change, txid uint64) {
	if f := h.feed.Load(); f != nil {
		f.Committed(cs, txid)
	}
}

func TestFeedCommitted(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.Unopened(t)
	to := &handOver{}
	s.Open(to)
	u := sqlitetest.User(t, s, "alice")
	pub := &recordingPublisher{}
	f, err := NewFeed(ctx, s, pub, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	pub.feed = f
	f.PollInterval = time.Hour // no safety-net read during the test
	var reads []int
	f.ObserveRead = func(_ string, found int, _ time.Duration) { reads = append(reads, found) }

	// Committed while nobody listened: the feed has not seen v1.
	if _, err := s.CreateNote(ctx, u.ID, "before", app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	to.feed.Store(f)
	ctxRun, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctxRun) }()
	defer func() { cancel(); <-done }()

	// v2 does not follow what the feed pushed last (nothing): it reads
	// v1 and v2 from the log.
	if _, err := s.CreateNote(ctx, u.ID, "two", app.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	waitPushed(t, pub, 2)
	// From now on each commit is handed over and pushed with no read.
	readsBefore := len(reads)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.CreateNote(ctx, u.ID, "n", app.Idempotency{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	pub.mu.Lock()
	got := append([]int64(nil), pub.pushed...)
	pub.mu.Unlock()
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("pushed %v, want v1..v22 once each, in order", got)
		}
	}
	if len(got) != 22 {
		t.Fatalf("pushed %v by the time every write was answered, want v1..v22", got)
	}
	f.pushing.Lock() // no read is under way
	n := len(reads)
	f.pushing.Unlock()
	if n != readsBefore {
		t.Fatalf("the feed read the change log %d times for changes handed over to it", n-readsBefore)
	}
}

func waitPushed(t *testing.T, pub *recordingPublisher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pub.mu.Lock()
		got := len(pub.pushed)
		pub.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushed %d changes, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordingReplication is a Replication that hands what is announced to
// announce, and brings the news sent on news.
type recordingReplication struct {
	announce func(txid uint64, data []byte)
	news     chan []byte
}

func (r *recordingReplication) Announce(txid uint64, data []byte) { r.announce(txid, data) }
func (r *recordingReplication) C() <-chan []byte                  { return r.news }

// positionFunc is a function as a sqlite.Positioner.
type positionFunc func() (uint64, error)

func (f positionFunc) TXID() (uint64, error) { return f() }

// TestFeedShared checks a replica's path: changes another node shared are
// pushed without a read once they follow what was pushed last; news that
// does not follow, and a plain wake-up, make the feed read the log; and
// nothing is pushed twice.
func TestFeedShared(t *testing.T) {
	ctx := context.Background()
	primary := sqlitetest.Unopened(t)
	u := sqlitetest.User(t, primary, "alice")
	// What the primary's feed shares, in commit order.
	var shared [][]byte
	var txids []uint64
	out := &recordingReplication{}
	pf, err := NewFeed(ctx, primary, &recordingPublisher{}, out, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	pf.Publisher.(*recordingPublisher).feed = pf
	out.announce = func(txid uint64, data []byte) { txids = append(txids, txid); shared = append(shared, data) }
	primary.Position = positionFunc(func() (uint64, error) { return uint64(100 + len(txids)), nil })
	primary.Open(pf)
	for range 4 {
		if _, err := primary.CreateNote(ctx, u.ID, "n", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(txids, []uint64{101, 102, 103, 104}) || len(shared) != 4 {
		t.Fatalf("shared positions %v, want 101..104: each commit's own, the one after the position read inside it", txids)
	}

	// The replica: the same database (its copy holds everything).
	pub := &recordingPublisher{}
	wake := make(chan []byte, 10)
	f, err := NewFeed(ctx, primary, pub, &recordingReplication{news: wake}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	pub.feed = f
	f.last = 0 // as if it had pushed nothing yet
	f.PollInterval = time.Hour
	var reads int
	f.ObserveRead = func(string, int, time.Duration) { reads++ }
	ctxRun, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctxRun) }()
	defer func() { cancel(); <-done }()

	wake <- shared[0] // v1 follows nothing pushed: pushed as shared
	waitPushed(t, pub, 1)
	wake <- shared[2] // v3 does not follow v1: read v2..v4
	waitPushed(t, pub, 4)
	wake <- shared[3] // pushed already
	wake <- shared[1] // pushed already
	wake <- nil       // a plain wake-up reads (finding nothing)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		f.pushing.Lock()
		n := reads
		f.pushing.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reads, want 2: one for the gap, one for the plain wake-up", n)
		}
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if !slices.Equal(pub.pushed, []int64{1, 2, 3, 4}) {
		t.Fatalf("pushed %v, want v1..v4 once each, in order", pub.pushed)
	}
}

// TestSharedChangesFit checks that the most changes a transaction shares
// fit in an announcement, with note ids as long as they get, for a
// billion changes and a million users. (Past that, cluster.Changes
// announces without them, and the other nodes read them.)
func TestSharedChangesFit(t *testing.T) {
	cs := make([]app.Change, maxShared)
	for i := range cs {
		cs[i] = app.Change{Seq: 1e9 + int64(i), ID: "0123456789abcdef", UserID: 1e6, Version: 1e6, Op: app.OpCreated,
			NoteID: 1<<53 - 1, Node: "node3", CreatedAt: time.Now()}
	}
	if n := len(encodeChanges(cs)); n > 1000 {
		t.Fatalf("%d changes take %d bytes, more than an announcement's 1,000 (cluster.MaxData)", maxShared, n)
	}
}
