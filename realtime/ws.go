package realtime

import (
	"context"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

const websocketInternalError = websocket.StatusInternalError

// wsTransport writes to a WebSocket over a batchConn.
type wsTransport struct {
	ws   *websocket.Conn
	conn *batchConn
}

// write sends the batch's frames with one writev(2), under deadline.
func (t *wsTransport) write(batch []Message, deadline time.Time) error {
	t.conn.hold(deadline)
	var err error
	for _, m := range batch {
		f := m.frame
		if f == nil {
			f = appendTextFrame(nil, m.Data)
		}
		if err = t.conn.queue(f); err != nil {
			break
		}
	}
	if rerr := t.conn.release(); rerr != nil {
		return rerr
	}
	return err
}

// writeNow queues the batch's frames and sends what the socket takes at
// once; with the rest pending, the batch stays held for finish.
func (t *wsTransport) writeNow(batch []Message, deadline time.Time) (bool, error) {
	t.conn.hold(deadline)
	for _, m := range batch {
		f := m.frame
		if f == nil {
			f = appendTextFrame(nil, m.Data)
		}
		if err := t.conn.queue(f); err != nil {
			if rerr := t.conn.release(); rerr != nil {
				return false, rerr
			}
			return false, err
		}
	}
	return t.conn.releaseNow()
}

func (t *wsTransport) finish() error { return t.conn.release() }

// goAway sends the close frame and drops the connection: on a node
// shutting down, the client's answer would find nobody to read it.
func (t *wsTransport) goAway(code StatusCode, reason string) {
	t.conn.goAway(appendCloseFrame(nil, code, reason))
}

func (t *wsTransport) close(code StatusCode, reason string) {
	// Close waits up to 5 s for the peer's close frame, then drops the TCP
	// connection either way.
	_ = t.ws.Close(code, reason)
}

// pong is the answer to a client's text "ping".
var pong = Message{Type: "pong", Data: []byte("pong")}

// ServeWS upgrades the request to a WebSocket and registers the connection.
//
// A cross-origin upgrade is refused with 403 before upgrading, and so is
// one from a page on this host over plain http when the request came over
// https (checkOrigin, shared with ServeSSE). A request
// without a valid session is upgraded and closed at once with 1008
// auth_required, so that browsers, which cannot read an HTTP status of a
// failed upgrade, learn why.
//
// A node at its connection cap (Hub.MaxConns) answers 503 with Retry-After
// before upgrading; a user at theirs (Hub.MaxConnsPerUser) is upgraded and
// closed at once with 1013 too_many_connections.
//
// The handler returns as soon as the connection is registered: a reader
// goroutine of the connection's own keeps it (and the net/http serving
// goroutine with its buffers is released).
func (e *Endpoint) ServeWS(w http.ResponseWriter, r *http.Request) {
	since, err := parseResume(r.URL.Query().Get("since"), r.URL.Query().Get("change"), "")
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := e.checkOrigin(r); err != nil {
		writeJSONError(w, http.StatusForbidden, err.Error())
		return
	}
	if !e.admit(r) {
		return // the client went away while it waited
	}
	// The handshake slot is given back before anything that waits on the
	// client.
	admitted := true
	leave := func() {
		if admitted {
			admitted = false
			e.done()
		}
	}
	defer leave()
	id, authErr := e.Authenticate(r)
	if authErr != nil && r.Context().Err() != nil {
		return // the client went away; nobody to tell
	}
	if !e.Hub.reserve() {
		refuseNodeFull(w)
		return
	}
	hj := &batchHijacker{ResponseWriter: w}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{
		OriginPatterns:  e.OriginPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has already answered (403 for a cross-origin request,
		// 400/426 for a bad handshake).
		e.Hub.release()
		return
	}
	if authErr != nil {
		e.Hub.release()
		leave()
		if !errors.Is(authErr, ErrUnauthenticated) {
			e.Hub.Logger.Error("websocket authenticate", "err", authErr)
			_ = ws.Close(websocket.StatusInternalError, "internal error")
			return
		}
		_ = ws.Close(websocket.StatusPolicyViolation, "auth_required")
		return
	}
	limit := e.ReadLimit
	if limit == 0 {
		limit = DefaultReadLimit
	}
	ws.SetReadLimit(limit)

	c := newConn(e.Hub, id, &wsTransport{ws: ws, conn: hj.conn})
	// The request context ends when this handler returns; the connection
	// outlives it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	err = e.open(ctx, c, since)
	leave()
	if err != nil {
		if errors.Is(err, errUserFull) {
			// After the upgrade, so that a browser learns why.
			_ = ws.Close(StatusTryAgainLater, "too_many_connections")
			return
		}
		_ = ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	go e.readLoop(c, ws)
}

// readLoop reads client messages until the connection ends, answering text
// "ping" with "pong" and sending WebSocket pings of its own to drop dead
// peers.
func (e *Endpoint) readLoop(c *Conn, ws *websocket.Conn) {
	h := e.Hub
	var pinger *time.Timer
	pinger = time.AfterFunc(h.PingInterval, func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.PingTimeout)
		defer cancel()
		if err := ws.Ping(ctx); err != nil {
			c.Close(StatusGoingAway, "ping timeout")
			return
		}
		pinger.Reset(h.PingInterval)
	})
	defer func() {
		pinger.Stop()
		if e.OnClose != nil {
			e.OnClose(c)
		}
	}()

	// Read is unblocked by the connection being closed (Conn.Close closes
	// the socket), so no watcher goroutine is needed.
	ctx := context.Background()
	for {
		typ, p, err := ws.Read(ctx)
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrMessageTooBig):
				c.Close(StatusMessageTooBig, "message too big")
			default:
				// The peer went away or closed; the library has already
				// answered its close frame.
				code := websocket.CloseStatus(err)
				if code == -1 {
					code = websocket.StatusAbnormalClosure
				}
				c.Close(code, "")
			}
			return
		}
		kind := classify(typ, p)
		switch kind {
		case clientBinary:
			c.Close(StatusUnsupportedData, "binary messages are not supported")
			return
		case clientInvalidUTF8:
			c.Close(StatusInvalidUTF8, "text messages must be valid UTF-8")
			return
		}
		if !c.AllowMessage() {
			c.Close(StatusTryAgainLater, "too many messages")
			return
		}
		switch kind {
		case clientPing:
			c.enqueue(pong)
		case clientText:
			if e.OnMessage != nil {
				e.OnMessage(c, p)
			}
		}
	}
}

// clientKind is what a client message asks of the server.
type clientKind int

const (
	clientText        clientKind = iota // other text: handed to OnMessage, else ignored
	clientPing                          // text "ping": answered with "pong"
	clientBinary                        // binary: not part of the protocol, closes with 1003
	clientInvalidUTF8                   // text that is not UTF-8 (RFC 6455 §8.1): closes with 1007
)

// classify parses one client message (docs/PROTOCOL.md §4). Size is enforced by the
// read limit before a message gets here.
func classify(typ websocket.MessageType, p []byte) clientKind {
	switch {
	case typ != websocket.MessageText:
		return clientBinary
	case string(p) == "ping":
		return clientPing
	case !utf8.Valid(p):
		return clientInvalidUTF8
	default:
		return clientText
	}
}
