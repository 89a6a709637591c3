package cluster

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Acks is how a write's answer waits until the other lease candidates
// hold it, so that losing the primary loses no answered write
// (docs/PROTOCOL.md §11), as MySQL's semi-synchronous replication waits
// "after sync":
//
//   - Every node tells the others where its copy of the database is
//     (Held: its TXID and LiteFS's checksum there), after each transaction
//     LiteFS applies and every ReportEvery (Run, through Membership: one
//     UDP packet per node), so a lost packet costs at most that long.
//   - The primary keeps the checksum of each of its recent transactions
//     (from LiteFS's event stream, Applied). A candidate holds a
//     transaction when it reports a TXID at least as far with the
//     primary's checksum at that TXID: the same history, not only the
//     same number (a node that was cut off can hold another history under
//     the same TXIDs).
//   - WaitHeld, on the primary, returns once the other live candidates
//     hold a TXID: every one that is current (heldBy), at least one; at
//     once when no other candidate is alive, which it says in the log once
//     per change and in Status.
//
// Set the fields, then call the methods from any goroutine. The
// Membership that carries the reports runs Run.
type Acks struct {
	// Node is this node's name, carried by its reports.
	Node string
	// LiteFS is the mount whose position is reported, and whose lease says
	// whether this node is the primary.
	LiteFS *LiteFS
	Logger *slog.Logger
	// Candidates returns the names of the other live lease candidates
	// (nil without peers). It must be quick.
	Candidates func() []string
	// Timeout bounds WaitHeld (DefaultAckTimeout).
	Timeout time.Duration
	// Observe, if set, is called with how long each WaitHeld waited.
	Observe func(time.Duration)
	// Journaled, if set, returns the position up to which this node can
	// apply every change again (journal.Journal.Through): a replica
	// reports no further, so that a candidate that holds a write can
	// also apply it again through another primary. Poke once it moves.
	Journaled func() uint64

	candMu sync.Mutex
	cands  []string // Candidates, as it said at candAt
	candAt time.Time
	ever   map[string]bool // every node Candidates named since start

	mu       sync.Mutex
	own      map[uint64]uint64    // this node's recent TXIDs → checksum, as primary
	ownOrder []uint64             // the TXIDs of own, oldest first
	self     Held                 // this node's newest position
	held     map[string]Held      // each other node's newest report
	heardAt  map[string]time.Time // when each report came
	answered Held                 // the newest position a write was answered at (primary)
	ackedBy  string               // who held it ("" while none was asked)
	alone    bool                 // the last wait found no other candidate alive
	primary  Held                 // the primary's newest report (replica)
	changed  chan struct{}        // closed and replaced at each report
	send     chan struct{}        // to Run: this node's position moved
}

// Held is one node's report of its position: what it holds.
type Held struct {
	From     string `json:"f"`
	TXID     uint64 `json:"t"`
	Checksum uint64 `json:"c"`
	// LagMS is, from a replica, the time since its LiteFS last heard from
	// the primary's, in milliseconds (-1: not since it started).
	LagMS int64 `json:"l,omitempty"`
	// The primary's reports also carry the newest position it answered a
	// write at, who acknowledged it (names joined by ", "), and which
	// nodes hold it, for the other nodes' /api/cluster.
	Primary  bool     `json:"p,omitempty"`
	Answered uint64   `json:"a,omitempty"`
	AckedBy  string   `json:"b,omitempty"`
	Holding  []string `json:"h,omitempty"`
}

// DefaultAckTimeout bounds the wait for another candidate: within a
// forwarded write's deadline (DefaultForwardTimeout), so that the primary
// answers 504 itself, rather than the replica in its place.
const DefaultAckTimeout = 3 * time.Second

// ReportEvery is how often a node reports its position without a
// transaction to report.
const ReportEvery = 500 * time.Millisecond

// CurrentWithin is how long after its last report a candidate is waited
// for: a few ReportEvery, so that one lost packet does not stop the wait.
const CurrentWithin = 3 * ReportEvery

// LagWithin is how long a replica's LiteFS may go without a word from the
// primary's and still be waited for: more than the primary's heartbeat on
// an idle stream (1 s).
const LagWithin = 2 * time.Second

// keepOwn bounds the primary's checksums kept: a candidate further behind
// than that holds nothing recent anyway.
const keepOwn = 4096

// NoCandidate is what Status says acknowledged the writes while no other
// candidate is alive.
const NoCandidate = "none (no other candidate alive)"

// ErrNotHeld means no other live candidate held a write within the
// Timeout: it is committed here, and may be lost with this node.
var ErrNotHeld = errors.New("no other candidate holds the write yet")

func (a *Acks) init() {
	if a.changed == nil {
		a.changed = make(chan struct{})
		a.send = make(chan struct{}, 1)
		a.held = map[string]Held{}
		a.heardAt = map[string]time.Time{}
		a.own = map[uint64]uint64{}
	}
}

// notify wakes the waiters. a.mu is held.
func (a *Acks) notify() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// Applied takes a transaction from LiteFS's event stream: on the primary,
// one it committed, whose checksum it keeps; on any node, its new position,
// which Run reports.
func (a *Acks) Applied(tx Tx) {
	if tx.TXID == 0 {
		return
	}
	primary := a.LiteFS.IsPrimary()
	a.mu.Lock()
	a.init()
	a.self = Held{From: a.Node, TXID: tx.TXID, Checksum: tx.Checksum}
	if primary {
		a.keep(tx.TXID, tx.Checksum)
		a.notify()
	}
	a.mu.Unlock()
	select {
	case a.send <- struct{}{}:
	default:
	}
}

// keep remembers this node's checksum at txid. a.mu is held.
func (a *Acks) keep(txid, checksum uint64) {
	if _, ok := a.own[txid]; !ok {
		a.ownOrder = append(a.ownOrder, txid)
	}
	a.own[txid] = checksum
	if len(a.ownOrder) > keepOwn {
		delete(a.own, a.ownOrder[0])
		a.ownOrder = a.ownOrder[1:]
	}
}

// Heard takes another node's report, as Membership receives it.
func (a *Acks) Heard(h Held) {
	if h.From == "" || h.From == a.Node {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	a.held[h.From] = h
	a.heardAt[h.From] = time.Now()
	if h.Primary {
		a.primary = h
	}
	a.notify()
}

// holds reports whether h holds this node's history up to txid. a.mu is
// held.
func (a *Acks) holds(h Held, txid uint64) bool {
	c, ok := a.own[h.TXID]
	return h.TXID >= txid && ok && c == h.Checksum
}

// heldBy returns the live candidates that hold txid, once every current
// one does (at least one), or alone when no other candidate is alive.
// a.mu is held.
//
// Waiting for every current candidate, not only the first, means that
// whichever of them takes the lease holds every answered write. A
// candidate that has not reported for CurrentWithin, or whose LiteFS has
// not heard from the primary's for LagWithin (it is cut off, stopped, or
// its replication stream hangs), is not waited for, so that it delays
// writes by that much at most; writes answered meanwhile are held by the
// others only.
func (a *Acks) heldBy(cands []string, txid uint64) (by []string, alone bool) {
	if len(cands) == 0 {
		return nil, true
	}
	for _, c := range cands {
		h, ok := a.held[c]
		switch {
		case ok && a.holds(h, txid):
			by = append(by, c)
		case ok && time.Since(a.heardAt[c]) < CurrentWithin && h.LagMS >= 0 && h.LagMS < LagWithin.Milliseconds():
			return nil, false // current, and behind: wait for it
		}
	}
	return by, false
}

// WaitHeld returns once the other live candidates hold txid, a
// transaction this node committed as the primary (heldBy): nil at once
// when no other candidate is alive; ErrNotHeld after Timeout; ctx's error
// if it ends first.
func (a *Acks) WaitHeld(ctx context.Context, txid uint64) error {
	if a == nil || txid == 0 {
		return nil
	}
	start := time.Now()
	timeout := a.Timeout
	if timeout == 0 {
		timeout = DefaultAckTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	// Membership does not say when a candidate comes or goes: look again
	// every so often.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		cands := a.candidates()
		a.mu.Lock()
		a.init()
		by, alone := a.heldBy(cands, txid)
		if len(by) > 0 || alone {
			a.answer(txid, by, alone)
		}
		changed := a.changed
		a.mu.Unlock()
		if len(by) > 0 || alone {
			if a.Observe != nil {
				a.Observe(time.Since(start))
			}
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-timer.C:
			return ErrNotHeld
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// candidatesFor is how long the list of live candidates is kept: every
// waiting write looks at it after each report.
const candidatesFor = 50 * time.Millisecond

// candidates returns the other live candidates, as Candidates said at most
// candidatesFor ago.
func (a *Acks) candidates() []string {
	if a.Candidates == nil {
		return nil
	}
	a.candMu.Lock()
	defer a.candMu.Unlock()
	if time.Since(a.candAt) >= candidatesFor {
		a.cands, a.candAt = a.Candidates(), time.Now()
		if a.ever == nil {
			a.ever = map[string]bool{}
		}
		for _, c := range a.cands {
			a.ever[c] = true
		}
	}
	return a.cands
}

// Poke makes Run report this node's position now.
func (a *Acks) Poke() {
	a.mu.Lock()
	a.init()
	send := a.send
	a.mu.Unlock()
	select {
	case send <- struct{}{}:
	default:
	}
}

// HeldByAll returns a position that this node and every lease candidate
// seen since it started, alive or not, has reported (0: one has not): a
// node keeps what it takes to apply its changes again until then
// (journal.Journal). Only the TXIDs are compared: a report carries no
// checksum of the others' history.
func (a *Acks) HeldByAll() uint64 {
	a.candidates()
	a.candMu.Lock()
	ever := make([]string, 0, len(a.ever))
	for c := range a.ever {
		ever = append(ever, c)
	}
	a.candMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	low := a.self.TXID
	for _, c := range ever {
		low = min(low, a.held[c].TXID)
	}
	return low
}

// answer notes that a write at txid is answered, acknowledged by by, or
// alone. a.mu is held.
func (a *Acks) answer(txid uint64, by []string, alone bool) {
	if a.Logger == nil {
		a.Logger = slog.Default()
	}
	if alone != a.alone || a.ackedBy == "" {
		if alone {
			a.Logger.Warn("no other candidate is alive: writes are answered once committed here, and would be lost with this node")
		} else if a.alone {
			a.Logger.Info("a candidate is alive again: writes are answered once it holds them", "candidates", by)
		}
	}
	a.alone = alone
	by = slices.Clone(by)
	slices.Sort(by) // the same words whichever report came first
	a.ackedBy = strings.Join(by, ", ")
	if alone {
		a.ackedBy = NoCandidate
	}
	if txid > a.answered.TXID {
		a.answered = Held{From: a.Node, TXID: txid, Checksum: a.own[txid]}
	}
}

// report is this node's report of its position. a.mu is held.
func (a *Acks) report(primary bool) Held {
	h := a.self
	h.From = a.Node
	if !primary {
		return h
	}
	h.Primary = true
	h.Answered, h.AckedBy = a.answered.TXID, a.ackedBy
	for name, o := range a.held {
		if a.answered.TXID > 0 && a.holds(o, a.answered.TXID) {
			h.Holding = append(h.Holding, name)
		}
	}
	slices.Sort(h.Holding)
	return h
}

// Run reports this node's position with publish (one packet to each
// other node: Membership.PublishHeld) after each transaction, and every
// ReportEvery, until ctx ends.
func (a *Acks) Run(ctx context.Context, publish func(Held)) {
	a.mu.Lock()
	a.init()
	send := a.send
	a.mu.Unlock()
	tick := time.NewTicker(ReportEvery)
	defer tick.Stop()
	var lag lagReading
	for {
		select {
		case <-ctx.Done():
			return
		case <-send:
		case <-tick.C:
			a.readPos()
		}
		primary := a.LiteFS.IsPrimary()
		a.mu.Lock()
		h := a.report(primary)
		a.mu.Unlock()
		if !primary && a.Journaled != nil && h.TXID > a.Journaled() {
			continue // reported once the journal holds it (Poke)
		}
		if !primary {
			h.LagMS = lag.ms(a.LiteFS, time.Now())
		}
		if h.TXID != 0 {
			publish(h)
		}
	}
}

// lagFresh is how long a replica's reading of its LiteFS's lag serves
// its reports: a report after each transaction would read the .lag file
// each time, five FUSE requests to LiteFS, at every write.
const lagFresh = 100 * time.Millisecond

// lagReading is a replica's last reading of its LiteFS's lag.
type lagReading struct {
	lag time.Duration // negative: not known
	at  time.Time
}

// ms returns the lag in milliseconds as reported (-1: not known),
// reading it again once the last reading is lagFresh old. Until then it
// is the reading plus the time since: at least the lag now, so that a
// candidate is never taken for more current than it is.
func (r *lagReading) ms(l *LiteFS, now time.Time) int64 {
	if r.at.IsZero() || now.Sub(r.at) >= lagFresh {
		r.lag, r.at = -1, now
		if lag, err := l.Lag(); err == nil && lag >= 0 {
			r.lag = lag
		}
	}
	if r.lag < 0 {
		return -1
	}
	return (r.lag + now.Sub(r.at)).Milliseconds()
}

// readPos reads this node's position from the position file, which also
// tells of a copy LiteFS replaced whole (a snapshot), and, on the
// primary, of a transaction whose event the stream lost (it restarted):
// a write at that TXID would otherwise wait for its checksum in vain.
func (a *Acks) readPos() {
	txid, checksum, err := a.LiteFS.Pos()
	if err != nil || txid == 0 {
		return
	}
	primary := a.LiteFS.IsPrimary()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	a.self = Held{From: a.Node, TXID: txid, Checksum: checksum}
	if primary {
		a.keep(txid, checksum)
		a.notify()
	}
}

// AckStatus is what Acks knows, for /api/cluster.
type AckStatus struct {
	// Answered is the newest position a write was answered at, and
	// AckedBy the candidate that held it then (NoCandidate while no other
	// candidate was alive), as the primary says.
	Answered uint64
	AckedBy  string
	// Positions are the other nodes' newest reports, by name; Holding
	// says which of them hold every answered write.
	Positions map[string]Held
	Holding   map[string]bool
}

// Status returns what Acks knows, as the primary (from its own
// knowledge) or as a replica (from the primary's reports).
func (a *Acks) Status() AckStatus {
	primary := a.LiteFS.IsPrimary()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	st := AckStatus{Positions: map[string]Held{}, Holding: map[string]bool{}}
	for name, h := range a.held {
		st.Positions[name] = h
	}
	src := a.primary
	if primary {
		src = a.report(true)
	}
	st.Answered, st.AckedBy = src.Answered, src.AckedBy
	for _, name := range src.Holding {
		st.Holding[name] = true
	}
	return st
}
