package realtime

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"
)

// transport is how a Conn reaches its client: a WebSocket or an SSE stream.
type transport interface {
	// write sends a batch of messages in order, as few system calls as it
	// can; a write still blocked at deadline must fail with an error that
	// wraps os.ErrDeadlineExceeded.
	write(batch []Message, deadline time.Time) error
	// close ends the connection with code and reason, sending a close frame
	// or event when it still can. It may block for a close handshake, so it
	// is called on its own goroutine.
	close(code StatusCode, reason string)
	// goAway is close for a node shutting down: it sends the close frame
	// or event without waiting for the client's answer, and returns.
	goAway(code StatusCode, reason string)
}

// tryTransport is a transport that can write without waiting, so that a
// hub's few writer goroutines can serve every connection that does not
// push back (see Hub.kick).
type tryTransport interface {
	transport
	// writeNow sends what the socket takes of batch at once; pending
	// reports that the rest waits for finish. A batch is either sent,
	// failed or pending.
	writeNow(batch []Message, deadline time.Time) (pending bool, err error)
	// finish sends the rest of a pending batch, waiting up to the deadline
	// given to writeNow.
	finish() error
}

// Conn is one open client connection registered in a Hub.
//
// Messages for it wait in a bounded queue. A WebSocket's queue is drained
// by one of the hub's writer goroutines, which write without waiting; a
// connection whose socket is full gets a writer goroutine of its own until
// its queue is empty. So an idle connection costs no goroutine of its own
// beyond its reader, and a fan-out starts none. An SSE stream is drained by
// its HTTP handler.
type Conn struct {
	hub *Hub
	id  Identity
	cid string // this connection's id, announced in hello
	t   transport
	// notify, when set (SSE), is poked instead of starting a writer goroutine.
	notify chan struct{}

	mu      sync.Mutex
	queue   []Message
	spare   []Message // the drained batch, reused to avoid allocating per burst
	started bool      // greeting sent; until then messages only queue up
	writing bool
	closed  bool
	last    int64  // highest Version queued or announced
	topic   string // what the client has open, for presence
	// tabs, once the client said which tabs it carries (SetTabs), holds
	// what each has open; nil while the connection is one tab of its own.
	tabs map[string]string
	// counted is how many tabs the hub's count holds for this connection:
	// set when it is registered, 0 once it is removed.
	counted  int
	tokens   float64
	refilled time.Time // client-message rate limit (allowMessage)
	closeErr closeInfo
	done     chan struct{} // closed when the connection is closed
	finished chan struct{} // closed when the transport's close has returned
}

type closeInfo struct {
	code   StatusCode
	reason string
}

func newConn(h *Hub, id Identity, t transport) *Conn {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return &Conn{hub: h, id: id, cid: base64.RawURLEncoding.EncodeToString(b[:]), t: t,
		tokens: messageBurst, done: make(chan struct{}), finished: make(chan struct{})}
}

// Identity returns who the connection belongs to.
func (c *Conn) Identity() Identity { return c.id }

// ID returns the connection's id: random, announced to the client in
// hello, and found again with Hub.Conn.
func (c *Conn) ID() string { return c.cid }

// Topic returns what the connection has open ("" for nothing).
func (c *Conn) Topic() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.topic
}

// SetTopic records what the client has open now: an opaque string ("" for
// nothing), counted in its user's presence on every node.
func (c *Conn) SetTopic(topic string) {
	c.mu.Lock()
	changed := c.topic != topic && !c.closed
	if changed {
		c.topic = topic
	}
	c.mu.Unlock()
	if changed {
		c.hub.presence.localChanged(c.id.UserID)
	}
}

// MaxTabsPerConn is how many tabs one connection may carry (SetTabs), and
// MaxTabIDLen how long a tab's id may be.
const (
	MaxTabsPerConn = 100
	MaxTabIDLen    = 32
)

// Reasons why SetTabs refuses a report.
var (
	ErrNoTabs      = errors.New("a connection carries at least one tab")
	ErrTooManyTabs = fmt.Errorf("a connection carries at most %d tabs", MaxTabsPerConn)
	ErrTabID       = fmt.Errorf("a tab id is 1 to %d bytes", MaxTabIDLen)
)

// SetTabs records the tabs the client carries on this connection, each
// with what it has open (its topic, "" for nothing): the tabs of one
// browser that share one connection. From then on the connection counts
// as that many tabs in its user's presence, with their topics, and not as
// one tab with SetTopic's; each report replaces the one before. It
// changes nothing and returns an error for no tabs, more than
// MaxTabsPerConn, or an id that is empty or longer than MaxTabIDLen.
func (c *Conn) SetTabs(tabs map[string]string) error {
	switch {
	case len(tabs) == 0:
		return ErrNoTabs
	case len(tabs) > MaxTabsPerConn:
		return ErrTooManyTabs
	}
	for id := range tabs {
		if id == "" || len(id) > MaxTabIDLen {
			return ErrTabID
		}
	}
	c.mu.Lock()
	changed := !c.closed && (c.tabs == nil || !maps.Equal(c.tabs, tabs))
	if changed {
		c.tabs = maps.Clone(tabs)
		if c.counted > 0 {
			c.hub.tabs.Add(int64(len(tabs) - c.counted))
			c.counted = len(tabs)
		}
	}
	c.mu.Unlock()
	if changed {
		c.hub.presence.localChanged(c.id.UserID)
	}
	return nil
}

// tabCountLocked is how many tabs the connection carries. c.mu must be
// held.
func (c *Conn) tabCountLocked() int {
	if c.tabs == nil {
		return 1
	}
	return len(c.tabs)
}

// countTabs adds what the connection's tabs have open to topics (made
// when nil) and returns how many tabs it carries.
func (c *Conn) countTabs(topics *map[string]int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	add := func(t string) {
		if t == "" {
			return
		}
		if *topics == nil {
			*topics = map[string]int{}
		}
		(*topics)[t]++
	}
	if c.tabs == nil {
		add(c.topic)
		return 1
	}
	for _, t := range c.tabs {
		add(t)
	}
	return len(c.tabs)
}

// ownTabs returns what each tab the connection carries has open, for the
// tabs that have something open; nil for a connection that is one tab.
func (c *Conn) ownTabs() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tabs == nil {
		return nil
	}
	own := map[string]string{}
	for id, t := range c.tabs {
		if t != "" {
			own[id] = t
		}
	}
	return own
}

// setCounted moves the connection's tabs into the hub's count (in true)
// or out of it. It is called with the hub's lock held, or for a
// connection that the hub has already let go of (Hub.Close), so that
// registering and removing take turns.
func (c *Conn) setCounted(in bool) {
	c.mu.Lock()
	n := 0
	if in {
		n = c.tabCountLocked()
	}
	c.hub.tabs.Add(int64(n - c.counted))
	c.counted = n
	c.mu.Unlock()
}

// Client messages a connection may send: messageRate a second, in bursts
// of up to messageBurst.
const (
	messageRate  = 10
	messageBurst = 30
)

// AllowMessage takes one client message from the connection's allowance,
// and reports false when it has none left: the client sends too fast.
func (c *Conn) AllowMessage() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if !c.refilled.IsZero() {
		c.tokens = min(messageBurst, c.tokens+now.Sub(c.refilled).Seconds()*messageRate)
	}
	c.refilled = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// Send queues m for this connection alone, with the same ordering and
// backpressure rules as Hub.Broadcast. It reports whether m was queued.
func (c *Conn) Send(m Message) bool { return c.enqueue(m) }

// Done is closed when the connection has been closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// enqueue appends m to the queue, dropping a versioned message the
// connection has already been sent, and disconnects the client when the
// queue overflows.
func (c *Conn) enqueue(m Message) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.hub.dropped.Add(1)
		return false
	}
	if m.Version != 0 {
		if m.Version <= c.last {
			c.mu.Unlock()
			return false
		}
		c.last = m.Version
	}
	if len(c.queue) >= c.hub.QueueSize {
		c.mu.Unlock()
		c.hub.slowClosed.Add(1)
		c.hub.dropped.Add(1)
		c.closeAsync(StatusTryAgainLater, "too slow")
		return false
	}
	c.queue = append(c.queue, m)
	c.kickLocked()
	c.mu.Unlock()
	return true
}

// start sends greeting ahead of everything queued so far, drops queued
// versioned messages at or below version (the greeting covers them), and
// lets the writer run.
func (c *Conn) start(version int64, greeting ...Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	q := make([]Message, 0, len(greeting)+len(c.queue))
	q = append(q, greeting...)
	for _, m := range c.queue {
		if m.Version == 0 || m.Version > version {
			q = append(q, m)
		}
	}
	c.queue = q
	if version > c.last {
		c.last = version
	}
	c.started = true
	c.kickLocked()
}

// kickLocked gets the queue drained. c.mu must be held.
func (c *Conn) kickLocked() {
	if !c.started || len(c.queue) == 0 {
		return
	}
	if c.notify != nil {
		select {
		case c.notify <- struct{}{}:
		default:
		}
		return
	}
	if !c.writing {
		c.writing = true
		c.hub.kick(c)
	}
}

// take swaps out the queued batch. The previous batch's array is reused.
func (c *Conn) take() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.queue) == 0 {
		c.writing = false
		return nil
	}
	batch := c.queue
	clear(c.spare)
	c.queue, c.spare = c.spare[:0], batch
	return batch
}

// writeLoop drains the queue, waiting on the socket as needed, then exits
// (WebSocket only).
func (c *Conn) writeLoop() {
	for {
		batch := c.take()
		if batch == nil {
			return
		}
		if !c.writeBatch(batch) {
			return
		}
	}
}

// writeSome is a hub writer's turn at c: it writes up to a few batches
// without waiting. It returns true when c has more queued (the writer puts
// it back at the end of the run queue, so that one busy connection does not
// hold a writer). A batch the socket cannot take at once is finished, and
// the queue drained, on a goroutine of c's own.
func (c *Conn) writeSome(t tryTransport) (more bool) {
	for range 4 {
		batch := c.take()
		if batch == nil {
			return false
		}
		pending, err := t.writeNow(batch, time.Now().Add(c.hub.WriteTimeout))
		if pending {
			go func() {
				if c.batchDone(batch, t.finish()) {
					c.writeLoop()
				}
			}()
			return false
		}
		if !c.batchDone(batch, err) {
			return false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 || c.closed {
		c.writing = false
		return false
	}
	return true
}

// writeBatch writes a drained batch under one deadline of WriteTimeout (a
// client that cannot take a batch of at most QueueSize small messages in
// that time is too slow); on failure it closes the connection and reports
// false.
func (c *Conn) writeBatch(batch []Message) bool {
	return c.batchDone(batch, c.t.write(batch, time.Now().Add(c.hub.WriteTimeout)))
}

// batchDone accounts for a batch written with result err and reports
// whether the connection goes on; on failure it closes the connection.
func (c *Conn) batchDone(batch []Message, err error) bool {
	if err != nil {
		c.hub.dropped.Add(uint64(len(batch)))
		if timedOut(err) {
			c.hub.slowClosed.Add(1)
			c.Close(StatusTryAgainLater, "too slow")
		} else {
			c.Close(StatusGoingAway, "write failed")
		}
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
		return false
	}
	c.hub.sent.Add(uint64(len(batch)))
	if c.hub.ObserveLatency != nil {
		now := time.Now()
		for _, m := range batch {
			if !m.Created.IsZero() {
				c.hub.ObserveLatency(now.Sub(m.Created))
			}
		}
	}
	return true
}

// Close closes the connection with code and reason and unregisters it. It
// returns at once; the close handshake runs in the background. Closing an
// already closed connection does nothing. It must not be called with the
// hub's lock held (see closeAsync).
func (c *Conn) Close(code StatusCode, reason string) {
	if c.shut(code, reason) {
		c.hub.remove(c)
		c.finish(code, reason)
	}
}

// closeAsync is Close for callers that may hold the hub's lock (Broadcast
// finding a full queue): the state changes at once, so nothing more is
// queued, and unregistering happens on another goroutine.
func (c *Conn) closeAsync(code StatusCode, reason string) {
	if c.shut(code, reason) {
		go func() {
			c.hub.remove(c)
			c.finish(code, reason)
		}()
	}
}

// shut marks the connection closed and drops its queue; it reports whether
// this call closed it.
func (c *Conn) shut(code StatusCode, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	c.closeErr = closeInfo{code, reason}
	if n := len(c.queue); n > 0 {
		c.hub.dropped.Add(uint64(n))
	}
	c.queue, c.spare = nil, nil
	close(c.done)
	return true
}

// finish runs the transport's close (a handshake that may take a while) in
// the background.
func (c *Conn) finish(code StatusCode, reason string) {
	go func() {
		defer close(c.finished)
		c.t.close(code, reason)
	}()
}
