package cluster

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Changes is how a node learns that its copy of the database changed, and
// how it tells the other nodes what it committed. It is the one wake-up
// path of a change feed that reads a replicated database (C):
//
//   - A replica hears from LiteFS's event stream, which Changes follows
//     from Open to Close, that a transaction was applied (Applied): the
//     earliest moment it can read the change, and the one moment it
//     should. A read a moment earlier finds nothing and holds a read lock
//     that LiteFS's apply then waits for (it retries its write lock after
//     1 to 3 ms and longer).
//   - The node that committed a transaction announces it to the others
//     (Announce, sent by Run through Membership: one UDP packet per node;
//     Membership hands those of other nodes to Announced): its TXID, when
//     it committed and, when it fits in the packet, what it changed
//     (opaque data). A replica keeps the announcement until LiteFS has applied that
//     TXID and then hands the data over instead of waking the feed for a
//     read: the replica holds the change, and the read is saved. Without
//     data, or without an announcement (a lost packet, another kind of
//     transaction), the feed is woken to read.
//   - When LiteFS's event stream (re)starts, the feed is woken too:
//     transactions may have come while it was down.
//   - The committing node's own feed gets its changes from its writer, and
//     the feed's slow poll is the safety net under a lost event.
//
// Announcements also give the primary's position (PrimaryTXID, for the
// replication report) and the replica's lag (ObserveLag).
//
// Set the fields, then Open; call the methods from any goroutine. The
// Membership that carries the announcements runs Run.
type Changes struct {
	// Node is this node's name, carried by its announcements.
	Node string
	// LiteFS is the mount whose event stream tells of applied
	// transactions, and whose lease says whether this node is the
	// primary: then its transactions are its own, which its writer hands
	// to its feed.
	LiteFS *LiteFS
	Logger *slog.Logger
	// ObserveLag, if set, is called with the time from a transaction's
	// commit on the primary (its clock) to LiteFS's tx event here (this
	// node's clock): the replication lag, meaningful where the clocks agree
	// (on one machine, exactly). It must not block.
	ObserveLag func(time.Duration)
	// Acks, if set, is told of every transaction of LiteFS's event stream
	// (Acks.Applied), on the stream's goroutine.
	Acks *Acks
	// Journal, if set, is woken by every transaction of the stream, to
	// read what it changed (journal.Journal.Poke). Poke must not block.
	Journal interface{ Poke() }

	initOnce  sync.Once
	news      chan []byte   // to the feed: nil (read) or a transaction's data
	send      chan struct{} // to Run: announcements are queued
	stop      context.CancelFunc
	following chan struct{} // closed when FollowEvents returns

	mu       sync.Mutex
	outbox   []Changed            // this node's commits, not yet announced
	primary  Changed              // the newest announcement heard
	heard    []Changed            // announced, not yet applied here (TXID order)
	applied  map[uint64]time.Time // TXID → applied here, not yet announced
	lastSeen uint64               // the newest TXID applied here
}

// Bounds on what is kept: past them the oldest is forgotten, and the feed
// reads instead.
const (
	maxOutbox = 256  // announcements waiting for Run
	maxHeard  = 1024 // announcements waiting for their transaction
	newsQueue = 256  // news waiting for the feed
)

func (c *Changes) init() {
	c.initOnce.Do(func() {
		c.news = make(chan []byte, newsQueue)
		c.send = make(chan struct{}, 1)
	})
}

// Open starts following LiteFS's event stream (LiteFS.FollowEvents), each
// transaction of which comes to Applied. Set LiteFS.OnPromoted before.
func (c *Changes) Open() {
	c.init()
	ctx, stop := context.WithCancel(context.Background())
	c.stop, c.following = stop, make(chan struct{})
	go func() {
		defer close(c.following)
		c.LiteFS.FollowEvents(ctx, c.Applied, c.Logger)
	}()
}

// Close stops following LiteFS's event stream. Calling it again does
// nothing.
func (c *Changes) Close() error {
	if c.stop != nil {
		c.stop()
		<-c.following
		c.stop = nil
	}
	return nil
}

// C returns the channel the feed takes this node's news from: nil means
// "the database holds changes: read them"; anything else is the data of a
// transaction this node's database now holds, as its committer announced
// it (Announce). If the feed falls behind, data is dropped for a read.
func (c *Changes) C() <-chan []byte {
	c.init()
	return c.news
}

// tell passes news to the feed without blocking; when the queue is full,
// a read will do.
func (c *Changes) tell(data []byte) {
	select {
	case c.news <- data:
	default:
		c.wakeToRead()
	}
}

// wakeToRead makes sure a read is coming: a nil is queued unless the
// queue already ends with work the feed will get to.
func (c *Changes) wakeToRead() {
	select {
	case c.news <- nil:
	default: // full: the feed has news to take, and reads when data does not fit
	}
}

// MaxData bounds the data of an announcement, so that it travels in one
// packet with its framing.
const MaxData = 1000

// Announce tells the other nodes of a transaction this node committed,
// with txid its position and data what it changed: JSON of at most
// MaxData bytes, or nil (then the others read). It queues the
// announcement, which Run sends, and never blocks.
func (c *Changes) Announce(txid uint64, data []byte) {
	if len(data) > MaxData {
		data = nil
	}
	if txid == 0 {
		return
	}
	c.init()
	a := Changed{From: c.Node, TXID: txid, At: time.Now().UnixNano(), Data: data}
	c.mu.Lock()
	if len(c.outbox) >= maxOutbox {
		c.outbox = c.outbox[1:]
	}
	c.outbox = append(c.outbox, a)
	c.mu.Unlock()
	select {
	case c.send <- struct{}{}:
	default:
	}
}

// Applied takes a transaction from LiteFS's event stream
// (LiteFS.FollowEvents). On a replica, what was announced up to its TXID
// is handed to the feed, or the feed is woken to read. On the primary the
// transaction is its own, which its writer has handed to its feed.
func (c *Changes) Applied(tx Tx) {
	c.init()
	if c.Acks != nil {
		c.Acks.Applied(tx)
	}
	if c.Journal != nil {
		c.Journal.Poke()
	}
	if tx.TXID == 0 {
		c.wakeToRead() // the stream (re)started
		return
	}
	if c.LiteFS.IsPrimary() {
		return
	}
	c.mu.Lock()
	c.lastSeen = max(c.lastSeen, tx.TXID)
	var ready []Changed
	n := 0
	for n < len(c.heard) && c.heard[n].TXID <= tx.TXID {
		n++
	}
	ready, c.heard = slices.Clone(c.heard[:n]), c.heard[n:]
	if len(ready) == 0 && c.ObserveLag != nil {
		c.remember(tx) // its announcement may still be on its way
	}
	c.mu.Unlock()
	c.deliver(ready, tx.At)
}

// deliver hands the data of transactions this node now holds to the feed,
// in TXID order, or wakes it to read when one came without data (or none
// was announced), and times their lag.
func (c *Changes) deliver(ready []Changed, applied time.Time) {
	read := len(ready) == 0
	for _, a := range ready {
		if a.At != 0 {
			c.observe(applied.Sub(time.Unix(0, a.At)))
		}
		if len(a.Data) == 0 {
			read = true
			continue
		}
		c.tell(a.Data)
	}
	if read {
		c.wakeToRead()
	}
}

// remember keeps when tx was applied, for an announcement still on its
// way. c.mu is held.
func (c *Changes) remember(tx Tx) {
	if c.applied == nil {
		c.applied = map[uint64]time.Time{}
	}
	if len(c.applied) >= maxHeard {
		clear(c.applied)
	}
	c.applied[tx.TXID] = tx.At
}

// Announced takes another node's announcement, as Membership receives it.
// Its data goes to the feed once LiteFS has applied its TXID here: at once
// if it has already.
func (c *Changes) Announced(a Changed) {
	if a.TXID == 0 {
		return // from a node that does not say
	}
	c.init()
	c.mu.Lock()
	if a.TXID > c.primary.TXID {
		c.primary = Changed{From: a.From, TXID: a.TXID, At: a.At}
	}
	if a.TXID > c.lastSeen {
		if len(c.heard) >= maxHeard {
			c.heard = c.heard[1:]
		}
		i, _ := slices.BinarySearchFunc(c.heard, a.TXID, func(h Changed, t uint64) int { return cmp.Compare(h.TXID, t) })
		c.heard = slices.Insert(c.heard, i, a)
		c.mu.Unlock()
		return
	}
	// Applied here before its announcement came.
	at, timed := c.applied[a.TXID]
	delete(c.applied, a.TXID)
	c.mu.Unlock()
	if timed && a.At != 0 {
		c.observe(at.Sub(time.Unix(0, a.At)))
	}
	if len(a.Data) > 0 {
		c.tell(a.Data) // the feed drops what it has pushed already
	}
}

func (c *Changes) observe(d time.Duration) {
	if c.ObserveLag != nil {
		c.ObserveLag(max(d, 0))
	}
}

// PrimaryTXID returns the newest position another node announced, and the
// name of that node ("" before any announcement).
func (c *Changes) PrimaryTXID() (txid uint64, from string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.primary.TXID, c.primary.From
}

// Run sends this node's announcements with publish (one packet to each
// other node: Membership.PublishChanged), in the order they were
// committed, until ctx ends.
func (c *Changes) Run(ctx context.Context, publish func(Changed)) {
	c.init()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.send:
		}
		c.mu.Lock()
		out := c.outbox
		c.outbox = nil
		c.mu.Unlock()
		for _, a := range out {
			publish(a)
		}
	}
}
