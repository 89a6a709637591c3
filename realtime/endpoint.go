package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
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

	// History, if set, names each version of a user's stream by the change
	// that reached it, in hello, and tells a client that resumes from a
	// change this node's stream does not hold to start again
	// (docs/PROTOCOL.md §11). Without it, since alone is trusted.
	History History

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

// History is what an Endpoint knows of the changes behind a user's
// versions. After a failover a stream can go back and reach the same
// version again by another change: since alone cannot tell the two
// apart, since with the change's id can. Its methods may be called by
// many handshakes at once.
type History interface {
	// ChangeAt returns the id of the change that brought userID's stream
	// to version, "" when it is not known.
	ChangeAt(ctx context.Context, userID, version int64) (string, error)
	// Diverged reports whether a client that has seen userID's stream up
	// to version since, reached by the change named change, has seen a
	// stream this node's is not: another change reached since here, or
	// this node's stream ends below since. It may wait a bounded time for
	// this node to reach since; a change it no longer knows is not a
	// divergence.
	Diverged(ctx context.Context, userID, since int64, change string) (bool, error)
	// Restart builds the message that tells such a client to drop what
	// it shows and fetch it all again: the stream is at version, reached
	// by change.
	Restart(version int64, change string) Message
}

// hello is the first message on every connection.
type hello struct {
	Type    string `json:"type"`
	Node    string `json:"node"`
	Region  string `json:"region"`
	Version int64  `json:"version"`
	Change  string `json:"change,omitempty"`
	Conn    string `json:"conn"`
}

// resume is where a client says its stream is: since (given: has), and
// the change that reached it ("" when the client does not say).
type resume struct {
	since  int64
	has    bool
	change string
}

// open registers a connection and queues its greeting: hello, then a
// catch-up message when the client's since is below the current version,
// or a restart when the stream the client has seen is not this node's
// (History). Registration comes first so that no change committed after
// the version is read can be missed; changes at or below it are filtered
// out by the connection.
//
// c holds a place reserved with Hub.reserve, which open takes over: it is
// given back when c is not registered (errHubClosed, errUserFull) and when
// c closes.
func (e *Endpoint) open(ctx context.Context, c *Conn, from resume) error {
	if err := e.Hub.add(c); err != nil {
		e.Hub.release()
		return err
	}
	diverged, err := e.diverged(ctx, c.id.UserID, from)
	if err != nil {
		c.Close(websocketInternalError, "internal error")
		return err
	}
	v, err := e.Version(ctx, c.id.UserID)
	if err != nil {
		c.Close(websocketInternalError, "internal error")
		return err
	}
	var change string
	if e.History != nil {
		if change, err = e.History.ChangeAt(ctx, c.id.UserID, v); err != nil {
			c.Close(websocketInternalError, "internal error")
			return err
		}
	}
	data, _ := json.Marshal(hello{Type: "hello", Node: e.Node, Region: e.Region, Version: v, Change: change, Conn: c.cid})
	// hello is outside the version filter (Version 0), but over SSE it
	// carries the version as its id so that Last-Event-ID resumes from it.
	greeting := []Message{{Type: "hello", Data: data, eventID: v, Change: change}}
	floor := v
	switch {
	case diverged:
		// Whatever the client shows is from another stream: it starts
		// again from this one, even below what it has seen.
		greeting = append(greeting, e.History.Restart(v, change))
	case from.has && v > from.since && e.CatchUp != nil:
		greeting = append(greeting, e.CatchUp(v))
	case from.has && from.since > floor:
		// The client has seen newer data elsewhere; changes up to since are
		// already on its screen.
		floor = from.since
	}
	c.start(floor, greeting...)
	if e.OnOpen != nil {
		e.OnOpen(c)
	}
	return nil
}

// diverged asks History whether the stream the client resumes from is
// not this node's; only a client that names its change can be told.
func (e *Endpoint) diverged(ctx context.Context, userID int64, from resume) (bool, error) {
	if e.History == nil || !from.has || from.change == "" {
		return false, nil
	}
	return e.History.Diverged(ctx, userID, from.since, from.change)
}

// parseResume reads where a client resumes from: since and change from
// the query, or an SSE Last-Event-ID, "V" or "V.change", in their place.
func parseResume(since, change, lastEventID string) (resume, error) {
	if lastEventID != "" {
		since, change, _ = strings.Cut(lastEventID, ".")
	}
	if since == "" {
		return resume{}, nil
	}
	v, err := strconv.ParseInt(since, 10, 64)
	if err != nil || v < 0 {
		return resume{}, errors.New("since must be a non-negative integer")
	}
	if len(change) > 64 || strings.ContainsFunc(change, notIDRune) {
		return resume{}, errors.New("change must be the change id the server sent")
	}
	return resume{since: v, has: true, change: change}, nil
}

// notIDRune reports a rune that no change id holds.
func notIDRune(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r == '-' || r == '_')
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
