// Package realtime keeps a registry of open client connections (WebSocket
// and Server-Sent Events) and fans messages out to every connection of a
// user. It knows nothing about what the messages mean: callers hand it
// pre-encoded JSON with an optional stream version.
//
// Delivery is never allowed to slow down the caller. Broadcast only appends to
// a small bounded queue per connection; a writer goroutine per connection,
// started only while that queue is non-empty, does the network writes. A
// connection that falls behind (more than QueueSize messages waiting, or one
// write blocked for WriteTimeout) is disconnected and will catch up when it
// reconnects with ?since=.
//
// # A cluster, and presence
//
// In a cluster, Peers carries two kinds of ephemeral message between the
// hubs of the nodes: Publish, which delivers a message to a user's
// connections on every node, and presence, which tells every connection
// of a user how many tabs the user has open, over how many connections,
// on which nodes, and what each tab has open (an opaque topic). A
// connection is one tab, or carries the tabs of a browser that share it
// (Conn.SetTabs). Presence needs no code beyond wiring: set Node, Peers
// (and hand Receive what the peers send), and a
// PresenceMessage to have it pushed:
//
//	hub := realtime.NewHub()
//	hub.Node = "node1"
//	hub.Peers = membership // Receive, PeerJoined, PeerLeft, PresenceState wired back
//	hub.PresenceMessage = realtime.DefaultPresenceMessage
//	ep := &realtime.Endpoint{Hub: hub, /* ... */
//		OnMessage: func(c *realtime.Conn, text []byte) {
//			if string(text) == "viewing:doc-7" {
//				c.SetTopic("doc-7") // counted in every tab's presence, on every node
//			}
//		},
//	}
//	hub.Publish(userID, realtime.Message{Type: "typing", Data: data}) // every node
package realtime

import (
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Defaults for a Hub's tunables (docs/PROTOCOL.md §4).
const (
	DefaultQueueSize    = 64
	DefaultWriteTimeout = 10 * time.Second
	DefaultPingInterval = 25 * time.Second
	DefaultPingTimeout  = 15 * time.Second
	DefaultReadLimit    = 4096
)

// StatusCode is a WebSocket close code. SSE connections map it onto a final
// "close" event.
type StatusCode = websocket.StatusCode

// Close codes used by the hub.
const (
	StatusGoingAway       = websocket.StatusGoingAway               // node shutting down
	StatusPolicyViolation = websocket.StatusPolicyViolation         // auth_required
	StatusTryAgainLater   = websocket.StatusTryAgainLater           // slow consumer
	StatusUnsupportedData = websocket.StatusUnsupportedData         // binary message
	StatusMessageTooBig   = websocket.StatusMessageTooBig           // over ReadLimit
	StatusInvalidUTF8     = websocket.StatusInvalidFramePayloadData // text that is not UTF-8
	StatusServiceRestart  = websocket.StatusServiceRestart          // come back and resume
)

// Message is one server-to-client message.
//
// Data is sent as-is (a WebSocket text frame, or the data: line of an SSE
// event) and is shared by every recipient: it must not be modified after it
// is handed to the hub.
type Message struct {
	// Type names the message; SSE uses it as the event name.
	Type string
	// Version is the message's position in the user's stream, or 0 for a
	// message outside the stream. A connection never receives a versioned
	// message at or below a version it has already been sent, so a change
	// that is both announced in hello and broadcast arrives once.
	Version int64
	// Change, when set, names the change that brought the stream to
	// Version, so that a client can show which history it has seen
	// (Endpoint.History). SSE sends it in the event's id, "Version.Change",
	// so that Last-Event-ID presents both.
	Change string
	// Data is the message's JSON text.
	Data []byte
	// Created is when the event behind the message happened; when set, the
	// hub reports the delay until the message was written (ObserveLatency).
	Created time.Time

	eventID int64 // SSE id for a message outside the stream (hello)
	// frame is Data as a WebSocket frame, built once by Broadcast and sent
	// as-is to every recipient.
	frame []byte
}

// Identity is who a connection belongs to.
type Identity struct {
	UserID    int64
	SessionID string
}

// Stats are the hub's counters since it was created.
type Stats struct {
	Connections int64 // open now
	// Tabs counts the tabs those connections carry: one for a connection
	// of its own, as many as it reported for one that tabs share
	// (Conn.SetTabs).
	Tabs        int64
	Sent        uint64 // messages written to a client
	Dropped     uint64 // messages discarded because their connection was closed or overflowed
	SlowClosed  uint64 // connections closed for falling behind
	PeerPackets uint64 // messages sent to other nodes (Publish, presence)
	PeerBytes   uint64 // their bytes
	// RefusedUserFull counts connections refused because their user held
	// MaxConnsPerUser already; RefusedNodeFull, because the hub held
	// MaxConns.
	RefusedUserFull uint64
	RefusedNodeFull uint64
}

// Hub is the registry of open connections by user. Its methods are safe for
// concurrent use; Broadcast never blocks on the network.
type Hub struct {
	// QueueSize is how many messages may wait for one connection before it
	// is disconnected as too slow.
	QueueSize int
	// WriteTimeout bounds one write to a client.
	WriteTimeout time.Duration
	// PingInterval is how often WebSocket pings are sent; a peer that does
	// not answer within PingTimeout is dropped.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// ObserveLatency, if set, is called after each write of a message that
	// has Created set, with the time since Created. It must not block.
	ObserveLatency func(time.Duration)
	Logger         *slog.Logger
	// MaxConnsPerUser, when positive, is how many connections one user may
	// hold on this hub: the next one is refused (docs/PROTOCOL.md §8).
	MaxConnsPerUser int
	// MaxConns, when positive, is how many connections the hub holds at
	// most, counting those being opened: the next one is refused before its
	// upgrade, and those open keep working. Set it below the process's
	// open-file limit, so that the node never runs out of descriptors.
	MaxConns int

	// Node names this node in presence (presence.go).
	Node string
	// Peers, when set, carries Publish and presence to the other nodes of
	// a cluster (peers.go); nil for a node on its own. Set it before the
	// first connection.
	Peers Peers
	// PresenceInterval is how long presence changes gather before they go
	// out (DefaultPresenceInterval).
	PresenceInterval time.Duration
	// PresenceMessage, when set, encodes what a connection is told of its
	// user's presence (DefaultPresenceMessage will do); unset, presence is
	// counted and shared with other nodes but not pushed to connections.
	// It must not block.
	PresenceMessage func(Presence) Message

	mu       sync.RWMutex
	users    map[int64][]*Conn
	byID     map[string]*Conn
	closed   bool
	presence *presence

	conns       atomic.Int64
	tabs        atomic.Int64 // tabs the open connections carry
	slots       atomic.Int64 // connections open or being opened, against MaxConns
	sent        atomic.Uint64
	dropped     atomic.Uint64
	slowClosed  atomic.Uint64
	peerPackets atomic.Uint64
	peerBytes   atomic.Uint64
	userFull    atomic.Uint64
	nodeFull    atomic.Uint64

	// runq holds the WebSocket connections with messages to write; up to
	// maxWriters goroutines take turns at them (kick).
	runq       chan *Conn
	writers    atomic.Int32
	maxWriters int32
}

// Reasons why add refuses a connection.
var (
	errHubClosed = errors.New("hub closed")
	errUserFull  = errors.New("too_many_connections")
)

// NewHub returns a hub with the default settings.
func NewHub() *Hub {
	h := &Hub{
		QueueSize:        DefaultQueueSize,
		WriteTimeout:     DefaultWriteTimeout,
		PingInterval:     DefaultPingInterval,
		PingTimeout:      DefaultPingTimeout,
		PresenceInterval: DefaultPresenceInterval,
		Logger:           slog.Default(),
		users:            make(map[int64][]*Conn),
		byID:             make(map[string]*Conn),
		runq:             make(chan *Conn, runQueueSize),
		maxWriters:       int32(max(2, runtime.GOMAXPROCS(0))),
	}
	h.presence = newPresence(h)
	return h
}

// runQueueSize bounds the run queue; a connection is in it at most once,
// so it holds as many as are written to at once. Past it, a connection
// gets a goroutine of its own.
const runQueueSize = 1 << 15

// kick gets c's queue drained: by the hub's writers when c's transport can
// write without waiting (a WebSocket), so that a fan-out to thousands of
// connections starts no goroutine per connection; otherwise, or when the
// run queue is full, by a goroutine of c's own.
func (h *Hub) kick(c *Conn) {
	if _, ok := c.t.(tryTransport); !ok {
		go c.writeLoop()
		return
	}
	select {
	case h.runq <- c:
	default:
		go c.writeLoop()
		return
	}
	for {
		n := h.writers.Load()
		if n >= h.maxWriters {
			return
		}
		if h.writers.CompareAndSwap(n, n+1) {
			go h.writeWorker()
			return
		}
	}
}

// writeWorker takes turns at the connections in the run queue until it is
// empty.
func (h *Hub) writeWorker() {
	for {
		select {
		case c := <-h.runq:
			if c.writeSome(c.t.(tryTransport)) {
				h.requeue(c)
			}
			continue
		default:
		}
		h.writers.Add(-1)
		// A kick that found every writer busy just before this one left
		// would be stranded: look again.
		if len(h.runq) == 0 {
			return
		}
		if n := h.writers.Load(); n >= h.maxWriters || !h.writers.CompareAndSwap(n, n+1) {
			return
		}
	}
}

// requeue puts c, which has more to write, back at the end of the queue.
func (h *Hub) requeue(c *Conn) {
	select {
	case h.runq <- c:
	default:
		go c.writeLoop()
	}
}

// Broadcast queues m for every open connection of userID on this hub and
// returns how many connections took it. It may be called from any goroutine
// and never waits for a client.
func (h *Hub) Broadcast(userID int64, m Message) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	cs := h.users[userID]
	if len(cs) > 0 && m.frame == nil {
		m.frame = appendTextFrame(make([]byte, 0, len(m.Data)+10), m.Data)
	}
	n := 0
	for _, c := range cs {
		if c.enqueue(m) {
			n++
		}
	}
	return n
}

// CloseSession closes every connection opened with the given session (for
// example after log-out) with code and reason, and returns how many it closed.
func (h *Hub) CloseSession(sessionID string, code StatusCode, reason string) int {
	return h.closeWhere(func(c *Conn) bool { return c.id.SessionID == sessionID }, code, reason)
}

// CloseAll closes every open connection with code and reason, and
// returns how many it closed: clients that reconnect resume with since,
// as after any drop.
func (h *Hub) CloseAll(code StatusCode, reason string) int {
	return h.closeWhere(func(*Conn) bool { return true }, code, reason)
}

// closeWhere closes the open connections that match with code and
// reason, and returns how many it closed.
func (h *Hub) closeWhere(match func(*Conn) bool, code StatusCode, reason string) int {
	var victims []*Conn
	h.mu.RLock()
	for _, cs := range h.users {
		for _, c := range cs {
			if match(c) {
				victims = append(victims, c)
			}
		}
	}
	h.mu.RUnlock()
	for _, c := range victims {
		c.Close(code, reason)
	}
	return len(victims)
}

// Sessions returns the distinct session ids of the open connections.
func (h *Hub) Sessions() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	seen := map[string]bool{}
	var ids []string
	for _, cs := range h.users {
		for _, c := range cs {
			if id := c.id.SessionID; id != "" && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Connections: h.conns.Load(),
		Tabs:        h.tabs.Load(),
		Sent:        h.sent.Load(),
		Dropped:     h.dropped.Load(),
		SlowClosed:  h.slowClosed.Load(),
		PeerPackets: h.peerPackets.Load(),
		PeerBytes:   h.peerBytes.Load(),

		RefusedUserFull: h.userFull.Load(),
		RefusedNodeFull: h.nodeFull.Load(),
	}
}

// countPeerSend counts one message of n bytes sent to other nodes.
func (h *Hub) countPeerSend(n int) {
	h.peerPackets.Add(1)
	h.peerBytes.Add(uint64(n))
}

// Conn returns the open connection with that id (Conn.ID), if any.
func (h *Hub) Conn(id string) (*Conn, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	c, ok := h.byID[id]
	return c, ok
}

// Close closes every connection with 1001 (going away) and refuses new
// ones. A WebSocket gets its close frame and is dropped at once, without
// waiting for the client's answer: a node shutting down with
// thousands of sockets is not held up by them, and every tab learns of it
// in one pass. Close returns once every SSE stream's handler has seen its
// connection closed, or after timeout.
func (h *Hub) Close(timeout time.Duration) {
	h.mu.Lock()
	h.closed = true
	var all []*Conn
	for _, cs := range h.users {
		all = append(all, cs...)
	}
	clear(h.users)
	clear(h.byID)
	h.mu.Unlock()
	// A socket's close costs the kernel a few microseconds: with thousands,
	// spread them over the cores.
	var wg sync.WaitGroup
	parts := int(h.maxWriters)
	for i := range parts {
		wg.Go(func() {
			for _, c := range all[i*len(all)/parts : (i+1)*len(all)/parts] {
				if c.shut(StatusGoingAway, "server shutting down") {
					h.conns.Add(-1)
					h.slots.Add(-1)
					c.setCounted(false)
					c.t.goAway(StatusGoingAway, "server shutting down")
					close(c.finished)
				}
			}
		})
	}
	wg.Wait()
	seen := make(map[int64]bool)
	for _, c := range all {
		if !seen[c.id.UserID] {
			seen[c.id.UserID] = true
			h.presence.localChanged(c.id.UserID)
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, c := range all {
		select {
		case <-c.finished:
		case <-deadline.C:
			return
		}
	}
}

// reserve takes one of the MaxConns places for a connection about to be
// opened; it reports false when the hub is full. A reserved place is given
// back by release, or, once the connection is registered, by remove.
func (h *Hub) reserve() bool {
	n := h.slots.Add(1)
	if h.MaxConns > 0 && n > int64(h.MaxConns) {
		h.slots.Add(-1)
		h.nodeFull.Add(1)
		return false
	}
	return true
}

// release gives back a place taken by reserve for a connection that was
// never registered.
func (h *Hub) release() { h.slots.Add(-1) }

// add registers c, which holds a reserved place; it fails once the hub is
// closed (errHubClosed) and when c's user holds MaxConnsPerUser connections
// already (errUserFull). On failure the place is still the caller's.
func (h *Hub) add(c *Conn) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errHubClosed
	}
	cs := h.users[c.id.UserID]
	if h.MaxConnsPerUser > 0 && len(cs) >= h.MaxConnsPerUser {
		h.mu.Unlock()
		h.userFull.Add(1)
		return errUserFull
	}
	h.users[c.id.UserID] = append(cs, c)
	h.byID[c.cid] = c
	h.conns.Add(1)
	c.setCounted(true)
	h.mu.Unlock()
	h.presence.localChanged(c.id.UserID)
	return nil
}

// remove unregisters c and gives back its place; it is a no-op for a
// connection already removed.
func (h *Hub) remove(c *Conn) {
	h.mu.Lock()
	cs := h.users[c.id.UserID]
	i := slices.Index(cs, c)
	if i < 0 {
		h.mu.Unlock()
		return
	}
	last := len(cs) - 1
	cs[i] = cs[last]
	cs[last] = nil
	cs = cs[:last]
	if len(cs) == 0 {
		delete(h.users, c.id.UserID)
	} else {
		h.users[c.id.UserID] = cs
	}
	delete(h.byID, c.cid)
	h.conns.Add(-1)
	h.slots.Add(-1)
	c.setCounted(false)
	h.mu.Unlock()
	h.presence.localChanged(c.id.UserID)
}
