package realtime

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// transport is how a Conn reaches its client: a WebSocket or an SSE stream.
type transport interface {
	// write sends one message; it must give up when ctx ends.
	write(ctx context.Context, m Message) error
	// close ends the connection with code and reason, sending a close frame
	// or event when it still can. It may block for a close handshake, so it
	// is called on its own goroutine.
	close(code StatusCode, reason string)
}

// Conn is one open client connection registered in a Hub.
//
// Messages for it wait in a bounded queue. For a WebSocket a writer
// goroutine runs only while the queue is non-empty, so an idle connection
// costs no goroutine of its own beyond its reader; an SSE stream is drained by
// its HTTP handler.
type Conn struct {
	hub *Hub
	id  Identity
	cid string // this connection's id, announced in hello
	t   transport
	// notify, when set (SSE), is poked instead of starting a writer goroutine.
	notify chan struct{}

	mu       sync.Mutex
	queue    []Message
	spare    []Message // the drained batch, reused to avoid allocating per burst
	started  bool      // greeting sent; until then messages only queue up
	writing  bool
	closed   bool
	last     int64  // highest Version queued or announced
	topic    string // what the client has open, for presence
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
		go c.writeLoop()
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

// writeLoop drains the queue, then exits (WebSocket only).
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

// writeBatch writes a drained batch under one deadline of WriteTimeout (a
// client that cannot take a batch of at most QueueSize small messages in
// that time is too slow); on failure it closes the connection and reports
// false. One deadline per batch rather than per message: a context per
// message was most of the allocations of a delivery.
func (c *Conn) writeBatch(batch []Message) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.hub.WriteTimeout)
	defer cancel()
	for i, m := range batch {
		err := c.t.write(ctx, m)
		timedOut := ctx.Err() != nil
		if err != nil {
			c.hub.dropped.Add(uint64(len(batch) - i))
			if timedOut {
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
		c.hub.sent.Add(1)
		if !m.Created.IsZero() && c.hub.ObserveLatency != nil {
			c.hub.ObserveLatency(time.Since(m.Created))
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
