// Package feed is the change feed: it tails this node's change log and
// pushes each change, once and in order, to the connections of its user.
package feed

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/realtime"
)

// Publisher delivers a message to every open connection of a user on this
// node. It must not block (realtime.Hub queues and returns).
type Publisher interface {
	Broadcast(userID int64, m realtime.Message) int
}

var _ Publisher = (*realtime.Hub)(nil)

// Feed tails the change log of this node's copy of the database and pushes
// each change, once and in order, to the connections of its user. It is the
// single delivery path for note changes: a write on this node, a change that
// arrived by replication, and recovery after a restart or a partition all
// come through it, so a node pushes a version only once its own database
// holds it.
//
// It learns of changes three ways:
//
//   - Committed: this node's writer hands over what it just committed, and
//     the feed pushes it at once, without reading it back (and passes it
//     to Share, for the other nodes).
//   - Wake: this node's copy of the database holds changes it did not
//     commit (a replica's LiteFS applied a transaction). When the news
//     comes with the changes, as the committing node shared them, and they
//     follow what the feed pushed last, it pushes them without a read;
//     otherwise it reads them from the change log. Poke asks for a read.
//   - Every PollInterval it reads anyway: the safety net under a wake-up
//     that was lost.
type Feed struct {
	Store        *sqlite.Store
	Publisher    Publisher
	Logger       *slog.Logger
	PollInterval time.Duration
	// Wake, if set, brings news of changes this node did not commit: nil
	// means "read"; anything else is what another node's feed shared
	// (Share) of changes this node's database now holds. Set it before Run.
	Wake <-chan []byte
	// Share, if set, is called after each hand-over (Committed) with the
	// position of the transaction (0: unknown) and its changes encoded
	// for the other nodes' Wake, or nil when the transaction carried more
	// than maxShared changes. It must not block.
	Share func(txid uint64, data []byte)
	// ObservePushed, if set, is called with how many changes were pushed
	// and how the feed had them: "commit" (handed over), "shared" (from
	// another node) or "read". It must not block.
	ObservePushed func(source string, n int)
	// Batch is how many changes one read takes.
	Batch int
	// ObserveDelay, if set, is called for each change pushed with the time
	// since it was committed (on the primary's clock): about zero on the
	// primary, the replication delay on a replica. It must not block.
	ObserveDelay func(time.Duration)
	// ObserveRead, if set, is called after each read of the change log with
	// what started it ("wake": Poke or Wake; "poll"), how many changes it
	// found and how long it took. It must not block.
	ObserveRead func(reason string, found int, took time.Duration)

	poke chan struct{}
	// pushing serialises pushes (reads and hand-overs), so that each
	// change goes out once and in order.
	pushing sync.Mutex

	mu      sync.Mutex
	last    int64              // seq of the last change pushed
	waiting map[int64]*waiters // user → reads waiting for that user's next change
	// versions: user → newest version this node has seen (Version).
	versions map[int64]int64
}

// waiters share one channel, closed at their user's next change.
type waiters struct {
	changed chan struct{}
	n       int // reads holding it
}

// maxVersions bounds the versions remembered; past it they are forgotten
// and read again.
const maxVersions = 1 << 17

// NewFeed returns a feed that starts after the newest change present now.
func NewFeed(ctx context.Context, store *sqlite.Store, pub Publisher, logger *slog.Logger) (*Feed, error) {
	last, err := store.LastChangeSeq(ctx)
	if err != nil {
		return nil, err
	}
	return &Feed{
		Store:        store,
		Publisher:    pub,
		Logger:       logger,
		PollInterval: time.Second,
		Batch:        1000,
		poke:         make(chan struct{}, 1),
		last:         last,
		waiting:      map[int64]*waiters{},
		versions:     make(map[int64]int64),
	}, nil
}

// Version returns userID's current version as this node knows it: what
// the feed last pushed for the user, else the database's. A connection
// greets with it (realtime.Endpoint.Version), thousands at once when a
// node restarts, so the answer is kept. It is never ahead of this node's
// database, and a change committed after it is pushed to the connection,
// which is registered before it asks.
func (f *Feed) Version(ctx context.Context, userID int64) (int64, error) {
	f.mu.Lock()
	v, ok := f.versions[userID]
	f.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := f.Store.Version(ctx, userID)
	if err != nil {
		return 0, err
	}
	return f.seen(userID, v), nil
}

// seen records that userID reached version v and returns the newest
// version known for the user. Versions only grow, so the newest wins
// whichever order a read and a push arrive in.
func (f *Feed) seen(userID, v int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.versions[userID]; ok && cur >= v {
		return cur
	}
	if len(f.versions) >= maxVersions {
		clear(f.versions)
	}
	f.versions[userID] = v
	return v
}

// Poke asks the feed to look for new changes. It never blocks.
func (f *Feed) Poke() {
	select {
	case f.poke <- struct{}{}:
	default:
	}
}

// Run pushes changes until ctx ends.
func (f *Feed) Run(ctx context.Context) {
	t := time.NewTicker(f.PollInterval)
	defer t.Stop()
	for {
		reason := "wake"
		select {
		case <-ctx.Done():
			return
		case <-f.poke:
		case data := <-f.Wake:
			if data != nil && f.shared(data) {
				continue
			}
		case <-t.C:
			reason = "poll"
		}
		for {
			n, err := f.pushOnce(ctx, reason)
			if err != nil {
				if ctx.Err() == nil {
					f.Logger.Error("change feed", "err", err)
				}
				break
			}
			if n < f.Batch {
				break
			}
		}
	}
}

// maxShared bounds the changes of one transaction that are shared with
// the other nodes: more would not fit in a packet.
const maxShared = 12

// Committed pushes changes this node has just committed in the
// transaction at position txid (0: unknown), in seq order. It is the
// writer's hand-over (Store.OnCommit): nothing is read back. When they do
// not follow the last change pushed (changes this node did not commit came
// between, as when it was promoted), the feed reads instead.
func (f *Feed) Committed(cs []app.Change, txid uint64) {
	if len(cs) == 0 {
		return
	}
	if !f.pushFollowing(cs, "commit") {
		f.Poke()
	}
	if f.Share != nil {
		var data []byte
		if len(cs) <= maxShared {
			data = encodeChanges(cs)
		}
		f.Share(txid, data)
	}
}

// shared pushes changes another node shared (Share) once this node's
// database holds them, and reports whether that did: false means they do
// not follow what was pushed last, or could not be decoded, and a read is
// needed.
func (f *Feed) shared(data []byte) bool {
	cs, err := decodeChanges(data)
	if err != nil {
		f.Logger.Warn("change feed: unreadable changes from another node; reading them", "err", err)
		return false
	}
	return f.pushFollowing(cs, "shared")
}

// pushFollowing pushes those of cs (consecutive, in seq order) that
// follow the last change pushed, and reports whether they did (or were
// all pushed already).
func (f *Feed) pushFollowing(cs []app.Change, source string) bool {
	f.pushing.Lock()
	defer f.pushing.Unlock()
	f.mu.Lock()
	last := f.last
	f.mu.Unlock()
	for len(cs) > 0 && cs[0].Seq <= last {
		cs = cs[1:]
	}
	if len(cs) == 0 {
		return true
	}
	if cs[0].Seq != last+1 {
		return false
	}
	f.push(cs, source)
	return true
}

// noteChanged is the note_changed message of docs/PROTOCOL.md §4.
type noteChanged struct {
	Type    string `json:"type"`
	Op      string `json:"op"`
	NoteID  int64  `json:"note_id,omitempty"`
	Version int64  `json:"version"`
	Node    string `json:"node"`
}

// NoteChangedMessage encodes a change as the message pushed to clients.
func NoteChangedMessage(c app.Change) realtime.Message {
	data, _ := json.Marshal(noteChanged{Type: "note_changed", Op: c.Op, NoteID: c.NoteID, Version: c.Version, Node: c.Node})
	return realtime.Message{Type: "note_changed", Version: c.Version, Data: data, Created: c.CreatedAt}
}

// pushOnce reads the next batch of changes and broadcasts them.
func (f *Feed) pushOnce(ctx context.Context, reason string) (int, error) {
	f.pushing.Lock()
	defer f.pushing.Unlock()
	f.mu.Lock()
	after := f.last
	f.mu.Unlock()
	began := time.Now()
	cs, err := f.Store.ChangesAfter(ctx, after, f.Batch)
	if f.ObserveRead != nil && err == nil {
		f.ObserveRead(reason, len(cs), time.Since(began))
	}
	if err != nil || len(cs) == 0 {
		return 0, err
	}
	f.push(cs, "read")
	return len(cs), nil
}

// push broadcasts cs, the changes after the last one pushed, and wakes
// the reads waiting for their users. f.pushing is held.
func (f *Feed) push(cs []app.Change, source string) {
	if f.ObservePushed != nil {
		f.ObservePushed(source, len(cs))
	}
	for _, c := range cs {
		// Known before it is broadcast: a connection greeted with an older
		// version is already registered and gets the broadcast.
		f.seen(c.UserID, c.Version)
		f.Publisher.Broadcast(c.UserID, NoteChangedMessage(c))
		if f.ObserveDelay != nil {
			f.ObserveDelay(time.Since(c.CreatedAt))
		}
	}
	f.mu.Lock()
	f.last = cs[len(cs)-1].Seq
	for _, c := range cs {
		if w := f.waiting[c.UserID]; w != nil {
			close(w.changed)
			delete(f.waiting, c.UserID)
		}
	}
	f.mu.Unlock()
}

// Await returns a channel that is closed the next time the feed reads a
// change of userID's: a cheap way to wait for this node's copy of that
// user's notes to move. Changes of other users do not close it. Call done
// once no longer waiting.
func (f *Feed) Await(userID int64) (changed <-chan struct{}, done func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.waiting[userID]
	if w == nil {
		w = &waiters{changed: make(chan struct{})}
		f.waiting[userID] = w
	}
	w.n++
	return w.changed, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		w.n--
		if w.n == 0 && f.waiting[userID] == w {
			delete(f.waiting, userID)
		}
	}
}
