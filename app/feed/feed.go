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
	"notesync/realtime"
)

// Source is the change log the feed reads: this node's copy of the
// database (sqlite.Store).
type Source interface {
	// LastChangeSeq returns the seq of the newest change in the log.
	LastChangeSeq(ctx context.Context) (int64, error)
	// ChangesAfter returns up to limit changes after seq after, in order.
	ChangesAfter(ctx context.Context, after int64, limit int) ([]app.Change, error)
	// Version returns a user's version as the database holds it.
	Version(ctx context.Context, userID int64) (int64, error)
}

// Replication is how the feed shares what this node commits with the
// other nodes' feeds, and hears of what this node's copy of the database
// holds that it did not commit (cluster.Changes). Its methods never block.
type Replication interface {
	// Announce shares a transaction this node committed: its position
	// (0: unknown) and its changes encoded for the other nodes' feeds, or
	// nil when it carried more than maxShared changes.
	Announce(txid uint64, data []byte)
	// C brings news of changes this node did not commit: nil means
	// "read"; anything else is what another node's feed announced of
	// changes this node's database now holds.
	C() <-chan []byte
}

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
//     the feed pushes it at once, without reading it back (and announces
//     it to the other nodes through its Replication).
//   - Replication.C: this node's copy of the database holds changes it did not
//     commit (a replica's LiteFS applied a transaction). When the news
//     comes with the changes, as the committing node shared them, and they
//     follow what the feed pushed last, it pushes them without a read;
//     otherwise it reads them from the change log. Poke asks for a read.
//   - Every PollInterval it reads anyway: the safety net under a wake-up
//     that was lost.
type Feed struct {
	Source    Source    // where changes are read
	Publisher Publisher // where they are pushed: this node's connections
	// Replication, if set, is where this node's commits are announced to
	// the other nodes, and news of theirs comes from.
	Replication  Replication
	Logger       *slog.Logger
	PollInterval time.Duration
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
	// what started it ("wake": Poke or Replication.C; "poll"), how many changes it
	// found and how long it took. It must not block.
	ObserveRead func(reason string, found int, took time.Duration)
	// Diverged, if set, is called when this node's change log went back
	// under the feed: a change it pushed is no longer there, and another
	// history goes on from an earlier point (a failover that dropped
	// changes, docs/PROTOCOL.md §11). The feed goes on from the log as it
	// is, and the connections it pushed to must learn that what they show
	// may be gone: the node closes them, and they come back naming what
	// they have seen. It must not block.
	Diverged func()

	poke chan struct{}
	// pushing serialises pushes (reads and hand-overs), so that each
	// change goes out once and in order.
	pushing sync.Mutex

	mu      sync.Mutex
	last    int64              // seq of the last change pushed
	lastID  string             // its change id, "" when not known
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

// NewFeed returns a feed that reads src and pushes to pub, starting after
// the newest change present now. repl, if not nil, carries changes to
// and from the other nodes.
func NewFeed(ctx context.Context, src Source, pub Publisher, repl Replication, logger *slog.Logger) (*Feed, error) {
	last, err := src.LastChangeSeq(ctx)
	if err != nil {
		return nil, err
	}
	return &Feed{
		Source:       src,
		Publisher:    pub,
		Replication:  repl,
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
	v, err := f.Source.Version(ctx, userID)
	if err != nil {
		return 0, err
	}
	return f.seen(userID, v), nil
}

// Forget drops what the feed knows of userID's version, so that the next
// Version reads the database: after a client was found to have seen a
// history this node's database no longer holds, before the feed itself
// notices that the log went back.
func (f *Feed) Forget(userID int64) {
	f.mu.Lock()
	delete(f.versions, userID)
	f.mu.Unlock()
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
	var news <-chan []byte // nil, never ready, without replication
	if f.Replication != nil {
		news = f.Replication.C()
	}
	for {
		reason := "wake"
		select {
		case <-ctx.Done():
			return
		case <-f.poke:
		case data := <-news:
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
// the other nodes: more would not fit in an announcement
// (cluster.MaxData, 1,000 bytes). A change takes about 110 bytes with its
// random note id and change id (feed_share.go).
const maxShared = 8

// Committed pushes changes this node has just committed in the
// transaction at position txid (0: unknown), in seq order. It is the
// writer's hand-over (sqlite.Store.Open): nothing is read back. When they do
// not follow the last change pushed (changes this node did not commit came
// between, as when it was promoted), the feed reads instead.
func (f *Feed) Committed(cs []app.Change, txid uint64) {
	if len(cs) == 0 {
		return
	}
	if !f.pushFollowing(cs, "commit") {
		f.Poke()
	}
	if f.Replication != nil {
		var data []byte
		if len(cs) <= maxShared {
			data = encodeChanges(cs)
		}
		f.Replication.Announce(txid, data)
	}
}

// shared pushes changes another node announced (Replication) once this node's
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

// noteChanged is the note_changed message of docs/PROTOCOL.md §4: change
// names the change that reached version, and diverged marks the sync that
// tells a tab its stream went another way (§11).
type noteChanged struct {
	Type     string `json:"type"`
	Op       string `json:"op"`
	NoteID   int64  `json:"note_id,omitempty"`
	Version  int64  `json:"version"`
	Change   string `json:"change,omitempty"`
	Node     string `json:"node"`
	Diverged bool   `json:"diverged,omitempty"`
}

// NoteChangedMessage encodes a change as the message pushed to clients.
func NoteChangedMessage(c app.Change) realtime.Message {
	data, _ := json.Marshal(noteChanged{Type: "note_changed", Op: c.Op, NoteID: c.NoteID, Version: c.Version, Change: c.ID, Node: c.Node})
	return realtime.Message{Type: "note_changed", Version: c.Version, Change: c.ID, Data: data, Created: c.CreatedAt}
}

// RestartMessage is the sync that tells a tab whose stream went another
// way to drop what it shows and fetch it all again: the user's notes are
// at version, reached by change, on node (docs/PROTOCOL.md §11).
func RestartMessage(version int64, change, node string) realtime.Message {
	data, _ := json.Marshal(noteChanged{Type: "note_changed", Op: app.OpSync, Version: version, Change: change, Node: node, Diverged: true})
	return realtime.Message{Type: "note_changed", Version: version, Change: change, Data: data}
}

// pushOnce reads the next batch of changes and broadcasts them. It reads
// the change pushed last as well, to check that it is still there: when
// it is not, the change log went back (restart).
func (f *Feed) pushOnce(ctx context.Context, reason string) (int, error) {
	f.pushing.Lock()
	defer f.pushing.Unlock()
	f.mu.Lock()
	after, lastID := f.last, f.lastID
	f.mu.Unlock()
	began := time.Now()
	cs, err := f.Source.ChangesAfter(ctx, max(after-1, 0), f.Batch+1)
	if err != nil {
		return 0, err
	}
	if after > 0 {
		if len(cs) == 0 || cs[0].Seq != after || (lastID != "" && cs[0].ID != "" && cs[0].ID != lastID) {
			return 0, f.restart(ctx)
		}
		f.mu.Lock()
		f.lastID = cs[0].ID
		f.mu.Unlock()
		cs = cs[1:]
	}
	if f.ObserveRead != nil {
		f.ObserveRead(reason, len(cs), time.Since(began))
	}
	if len(cs) == 0 {
		return 0, nil
	}
	f.push(cs, "read")
	return len(cs), nil
}

// restart goes on from the change log as it is now, after it went back
// under the feed: the versions it knew are forgotten, the reads waiting
// for a user's next change read again, and Diverged is called. f.pushing
// is held.
func (f *Feed) restart(ctx context.Context) error {
	last, err := f.Source.LastChangeSeq(ctx)
	if err != nil {
		return err
	}
	var lastID string
	if cs, err := f.Source.ChangesAfter(ctx, max(last-1, 0), 1); err != nil {
		return err
	} else if len(cs) == 1 {
		lastID = cs[0].ID
	}
	f.Logger.Warn("change feed: the change log went back; another history goes on from here, and every connection starts again",
		"pushed_up_to_seq", f.last, "log_ends_at_seq", last)
	f.mu.Lock()
	f.last, f.lastID = last, lastID
	clear(f.versions)
	for user, w := range f.waiting {
		close(w.changed)
		delete(f.waiting, user)
	}
	f.mu.Unlock()
	if f.Diverged != nil {
		f.Diverged()
	}
	return nil
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
	f.last, f.lastID = cs[len(cs)-1].Seq, cs[len(cs)-1].ID
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
