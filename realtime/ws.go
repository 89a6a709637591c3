package realtime

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

const websocketInternalError = websocket.StatusInternalError

// wsTransport writes to a WebSocket.
type wsTransport struct {
	ws *websocket.Conn
}

func (t *wsTransport) write(ctx context.Context, m Message) error {
	return t.ws.Write(ctx, websocket.MessageText, m.Data)
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
// A cross-origin upgrade is refused with 403 before upgrading. A request
// without a valid session is upgraded and closed at once with 1008
// auth_required, so that browsers, which cannot read an HTTP status of a
// failed upgrade, learn why.
//
// The handler returns as soon as the connection is registered: a reader
// goroutine of the connection's own keeps it (and the net/http serving
// goroutine with its buffers is released).
func (e *Endpoint) ServeWS(w http.ResponseWriter, r *http.Request) {
	if e.RefuseWebSocket {
		writeJSONError(w, http.StatusServiceUnavailable, "websocket disabled on this server")
		return
	}
	since, hasSince, err := parseSince(r.URL.Query().Get("since"))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, authErr := e.Authenticate(r)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  e.OriginPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has already answered (403 for a cross-origin request,
		// 400/426 for a bad handshake).
		return
	}
	if authErr != nil {
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

	c := newConn(e.Hub, id, &wsTransport{ws: ws})
	// The request context ends when this handler returns; the connection
	// outlives it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := e.open(ctx, c, since, hasSince); err != nil {
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
		if kind == clientBinary {
			c.Close(StatusUnsupportedData, "binary messages are not supported")
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
	clientText   clientKind = iota // other text: handed to OnMessage, else ignored
	clientPing                     // text "ping": answered with "pong"
	clientBinary                   // binary: not part of the protocol, closes with 1003
)

// classify parses one client message (docs/PROTOCOL.md §4). Size is enforced by the
// read limit before a message gets here.
func classify(typ websocket.MessageType, p []byte) clientKind {
	switch {
	case typ != websocket.MessageText:
		return clientBinary
	case string(p) == "ping":
		return clientPing
	default:
		return clientText
	}
}
