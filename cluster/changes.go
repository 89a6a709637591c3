package cluster

import (
	"context"
	"sync"
	"time"
)

// Changes is how a node learns that its copy of the database changed, and
// how it tells the other nodes what the primary committed. It is the one
// wake-up path of a change feed that reads a replicated database:
//
//   - Wake (C) fires when LiteFS's event stream says a transaction was
//     applied to this replica (Applied): the earliest moment the replica
//     can read it, and the one moment it should. A read a moment earlier
//     finds nothing and holds a read lock that LiteFS's apply then waits
//     for (it retries its write lock after 1 to 3 ms and longer).
//   - It fires too when the stream (re)starts, since transactions may have
//     arrived unannounced while it was down.
//   - The node's own commits are not announced here: the node that commits
//     hands its changes to its feed itself, without a read.
//   - The feed's own slow poll is the safety net under a lost event (LiteFS
//     drops a subscriber that falls behind).
//
// Gossip carries, for each transaction the primary commits, its TXID and
// commit time to the other nodes (Announce, at most one packet per node
// per transaction, newest first when they come faster than they go). It
// does not wake their feeds: LiteFS's own stream brings the data and the
// event. A replica uses it for the primary's position (PrimaryTXID) and to
// time its replication lag (ObserveLag).
//
// Set the fields, then call Applied and Announced from any goroutine; Run
// sends the announcements.
type Changes struct {
	// Node is this node's name, carried by its announcements.
	Node string
	// IsPrimary reports whether this node holds the lease: its transactions
	// are its own commits, to announce rather than wake on.
	IsPrimary func() bool
	// ObserveLag, if set, is called with the time from a transaction's
	// commit on the primary (its clock) to LiteFS's tx event here (this
	// node's clock): the replication lag, meaningful where the clocks agree
	// (on one machine, exactly). It must not block.
	ObserveLag func(time.Duration)

	wakeOnce sync.Once
	wake     chan struct{}
	sendOnce sync.Once
	send     chan struct{}

	mu       sync.Mutex
	pending  Changed              // the newest own transaction not yet announced
	primary  Changed              // the newest announcement heard from another node
	heard    map[uint64]int64     // TXID → commit time (unix ns), announced, not yet applied here
	applied  map[uint64]time.Time // TXID → when applied here, not yet announced
	lastSeen uint64               // the newest TXID applied here
}

// maxTimed bounds the transactions kept for timing the lag: an
// announcement or event whose twin never comes is forgotten past it.
const maxTimed = 1024

func (c *Changes) init() {
	c.wakeOnce.Do(func() { c.wake = make(chan struct{}, 1) })
	c.sendOnce.Do(func() { c.send = make(chan struct{}, 1) })
}

// C returns the channel that receives a value when this node's database
// holds transactions its feed has not been woken for. One value stands for
// any number of them.
func (c *Changes) C() <-chan struct{} {
	c.init()
	return c.wake
}

func (c *Changes) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Applied takes a transaction from LiteFS's event stream
// (LiteFS.FollowEvents). On a replica it wakes the feed and times the lag;
// on the primary the transaction is announced to the other nodes.
func (c *Changes) Applied(tx Tx) {
	c.init()
	if tx.TXID == 0 {
		c.poke(c.wake) // the stream (re)started
		return
	}
	if c.IsPrimary != nil && c.IsPrimary() {
		c.mu.Lock()
		if tx.TXID > c.pending.TXID {
			c.pending = Changed{From: c.Node, TXID: tx.TXID, At: tx.At.UnixNano()}
		}
		c.mu.Unlock()
		c.poke(c.send)
		return
	}
	c.poke(c.wake)
	c.mu.Lock()
	var lags []time.Duration
	c.lastSeen = max(c.lastSeen, tx.TXID)
	for txid, at := range c.heard {
		if txid <= tx.TXID {
			lags = append(lags, tx.At.Sub(time.Unix(0, at)))
			delete(c.heard, txid)
		}
	}
	if len(lags) == 0 && c.ObserveLag != nil {
		c.remember(tx)
	}
	c.mu.Unlock()
	c.observe(lags...)
}

// remember keeps when tx was applied, for an announcement still on its
// way. c.mu is held.
func (c *Changes) remember(tx Tx) {
	if c.applied == nil {
		c.applied = map[uint64]time.Time{}
	}
	if len(c.applied) >= maxTimed {
		clear(c.applied)
	}
	c.applied[tx.TXID] = tx.At
}

// Announced takes another node's announcement (Membership.OnChanged): the
// primary's position, and the commit time to time the lag with.
func (c *Changes) Announced(a Changed) {
	if a.TXID == 0 {
		return // from a node that does not say
	}
	c.mu.Lock()
	if a.TXID > c.primary.TXID {
		c.primary = a
	}
	var lags []time.Duration
	switch at, ok := c.applied[a.TXID]; {
	case ok:
		lags = append(lags, at.Sub(time.Unix(0, a.At)))
		delete(c.applied, a.TXID)
	case a.TXID > c.lastSeen && a.At != 0 && c.ObserveLag != nil:
		if c.heard == nil {
			c.heard = map[uint64]int64{}
		}
		if len(c.heard) >= maxTimed {
			clear(c.heard)
		}
		c.heard[a.TXID] = a.At
	}
	c.mu.Unlock()
	c.observe(lags...)
}

func (c *Changes) observe(lags ...time.Duration) {
	if c.ObserveLag == nil {
		return
	}
	for _, d := range lags {
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
// other node: Membership.PublishChanged) until ctx ends. When transactions
// commit faster than packets go, only the newest is announced: it covers
// the ones before.
func (c *Changes) Run(ctx context.Context, publish func(Changed)) {
	c.init()
	var sent uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.send:
		}
		c.mu.Lock()
		a := c.pending
		c.mu.Unlock()
		if a.TXID > sent {
			publish(a)
			sent = a.TXID
		}
	}
}
