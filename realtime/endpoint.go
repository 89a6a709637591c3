package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
)

// ErrUnauthenticated is what an Authenticate func returns for a request
// without a valid session.
var ErrUnauthenticated = errors.New("realtime: unauthenticated")

// Endpoint serves the real-time protocol of docs/PROTOCOL.md §4 over WebSocket (ServeWS)
// and Server-Sent Events (ServeSSE) for one Hub. Its fields are set before
// the first request and not changed afterwards.
type Endpoint struct {
	Hub *Hub

	// Authenticate returns who the request is from, or ErrUnauthenticated.
	// It must only read.
	Authenticate func(r *http.Request) (Identity, error)

	// Version returns the user's current stream version, as stored on this
	// node. It is read after the connection is registered, so any change
	// above it is delivered to the connection as well.
	Version func(ctx context.Context, userID int64) (int64, error)

	// CatchUp builds the message sent right after hello when the client's
	// since is below the current version (docs/PROTOCOL.md §4: op "sync").
	CatchUp func(version int64) Message

	// OnOpen, OnMessage and OnClose are optional callbacks for code built on
	// top of the endpoint. OnOpen runs after the greeting is queued.
	// OnMessage gets each client text message other than "ping" (WebSocket
	// only); the slice is only valid during the call. OnClose runs once when
	// the connection ends. None of them may block for long: they run on the
	// connection's reader.
	OnOpen    func(c *Conn)
	OnMessage func(c *Conn, text []byte)
	OnClose   func(c *Conn)

	// Node and Region are announced in hello.
	Node, Region string

	// OriginPatterns lists extra host patterns allowed to open a WebSocket
	// cross-origin (see websocket.AcceptOptions). Same-origin is always
	// allowed.
	OriginPatterns []string

	// ReadLimit is the largest client message accepted (default 4 KiB).
	ReadLimit int64

	// MaxHandshakes bounds the connections being opened at once
	// (authenticated, upgraded and greeted); the rest wait their turn, in
	// order of arrival. 0 means DefaultMaxHandshakes.
	MaxHandshakes int

	admitOnce sync.Once
	admitting chan struct{}
}

// DefaultMaxHandshakes is enough to keep every core busy with handshakes
// whose database reads wait on a small pool. When a node restarts,
// thousands of tabs reconnect at once: all of them at the same time waited
// for the database's few connections in random order, and the unlucky ones
// gave up after seconds and came back later.
const DefaultMaxHandshakes = 64

// admit waits for a handshake slot, in order of arrival; it reports false
// if the request ended first. Every true must be followed by done.
func (e *Endpoint) admit(r *http.Request) bool {
	e.admitOnce.Do(func() {
		n := e.MaxHandshakes
		if n <= 0 {
			n = DefaultMaxHandshakes
		}
		e.admitting = make(chan struct{}, n)
	})
	select {
	case e.admitting <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (e *Endpoint) done() { <-e.admitting }

// hello is the first message on every connection.
type hello struct {
	Type    string `json:"type"`
	Node    string `json:"node"`
	Region  string `json:"region"`
	Version int64  `json:"version"`
	Conn    string `json:"conn"`
}

// open registers a connection and queues its greeting: hello, then a
// catch-up message when since is below the current version. Registration
// comes first so that no change committed after the version is read can be
// missed; changes at or below it are filtered out by the connection.
//
// c holds a place reserved with Hub.reserve, which open takes over: it is
// given back when c is not registered (errHubClosed, errUserFull) and when
// c closes.
func (e *Endpoint) open(ctx context.Context, c *Conn, since int64, hasSince bool) error {
	if err := e.Hub.add(c); err != nil {
		e.Hub.release()
		return err
	}
	v, err := e.Version(ctx, c.id.UserID)
	if err != nil {
		c.Close(websocketInternalError, "internal error")
		return err
	}
	data, _ := json.Marshal(hello{Type: "hello", Node: e.Node, Region: e.Region, Version: v, Conn: c.cid})
	// hello is outside the version filter (Version 0), but over SSE it
	// carries the version as its id so that Last-Event-ID resumes from it.
	greeting := []Message{{Type: "hello", Data: data, eventID: v}}
	if hasSince && v > since && e.CatchUp != nil {
		greeting = append(greeting, e.CatchUp(v))
	}
	floor := v
	if hasSince && since > floor {
		// The client has seen newer data elsewhere; changes up to since are
		// already on its screen.
		floor = since
	}
	c.start(floor, greeting...)
	if e.OnOpen != nil {
		e.OnOpen(c)
	}
	return nil
}

// parseSince reads a non-negative version from s.
func parseSince(s string) (int64, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, false, errors.New("since must be a non-negative integer")
	}
	return v, true, nil
}

// Retry-After values, in seconds, of refused connections: a full node
// (its connections end over minutes; the page's backoff spreads the
// retries), and a user at their cap (a tab must close first).
const (
	nodeFullRetryAfter = "5"
	userFullRetryAfter = "10"
)

// refuseNodeFull answers a connection the hub has no place for, before any
// upgrade: 503 with Retry-After.
func refuseNodeFull(w http.ResponseWriter) {
	w.Header().Set("Retry-After", nodeFullRetryAfter)
	writeJSONError(w, http.StatusServiceUnavailable, "this node is at its connection limit; try again shortly")
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
