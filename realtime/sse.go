package realtime

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// sseTransport writes Server-Sent Events. Only the ServeSSE handler
// goroutine writes to it.
type sseTransport struct {
	w  *bufio.Writer
	rc *http.ResponseController
}

func (t *sseTransport) write(batch []Message, deadline time.Time) error {
	_ = t.rc.SetWriteDeadline(deadline)
	for _, m := range batch {
		t.w.Write(appendSSEEvent(t.w.AvailableBuffer(), m.Type, m.Data, max(m.Version, m.eventID), m.Change))
	}
	if err := t.w.Flush(); err != nil {
		return deadlineErr(err, deadline)
	}
	return deadlineErr(t.rc.Flush(), deadline)
}

// deadlineErr makes a write error that came after deadline say so: net/http
// does not always keep the socket's own error.
func deadlineErr(err error, deadline time.Time) error {
	if err != nil && !timedOut(err) && !time.Now().Before(deadline) {
		return fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)
	}
	return err
}

// close is a no-op: the handler notices Conn.Done and writes the final
// "close" event itself, since it is the stream's only writer.
func (t *sseTransport) close(StatusCode, string) {}

func (t *sseTransport) goAway(StatusCode, string) {}

// ServeSSE streams the same messages as ServeWS as Server-Sent Events:
// event = the message type, data = its JSON, id = its version, so that a
// reconnecting EventSource resumes from Last-Event-ID. A cross-origin
// request is answered 403 (checkOrigin, as for ServeWS), one without a
// valid session 401, a node at its connection cap 503 and a
// user at theirs 429 (both with Retry-After). When the server ends the stream (log-out,
// shutdown, slow client) it first sends an event "close" with
// {"code":N,"reason":"..."}.
func (e *Endpoint) ServeSSE(w http.ResponseWriter, r *http.Request) {
	since, err := parseResume(r.URL.Query().Get("since"), r.URL.Query().Get("change"), r.Header.Get("Last-Event-ID"))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := e.checkOrigin(r); err != nil {
		writeJSONError(w, http.StatusForbidden, err.Error())
		return
	}
	if !e.admit(r) {
		return
	}
	id, err := e.Authenticate(r)
	if err != nil {
		e.done()
		if r.Context().Err() != nil {
			return
		}
		if errors.Is(err, ErrUnauthenticated) {
			writeJSONError(w, http.StatusUnauthorized, "auth_required")
			return
		}
		e.Hub.Logger.Error("sse authenticate", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}

	if !e.Hub.reserve() {
		e.done()
		refuseNodeFull(w)
		return
	}
	rc := http.NewResponseController(w)
	t := &sseTransport{w: bufio.NewWriterSize(w, 1024), rc: rc}
	c := newConn(e.Hub, id, t)
	c.notify = make(chan struct{}, 1)
	// Nothing is written to the stream before the handler's loop below, so
	// a refusal can still be a plain HTTP answer.
	err = e.open(r.Context(), c, since)
	e.done()
	if err != nil {
		switch {
		case errors.Is(err, errUserFull):
			w.Header().Set("Retry-After", userFullRetryAfter)
			writeJSONError(w, http.StatusTooManyRequests, "too_many_connections")
		case errors.Is(err, errHubClosed):
			writeJSONError(w, http.StatusServiceUnavailable, "server shutting down")
		default:
			writeJSONError(w, http.StatusInternalServerError, "internal error")
		}
		return
	}
	WriteSSEHeader(w)
	defer func() {
		c.Close(StatusGoingAway, "")
		if e.OnClose != nil {
			e.OnClose(c)
		}
	}()

	keepalive := time.NewTicker(e.Hub.PingInterval)
	defer keepalive.Stop()
	for {
		select {
		case <-c.notify:
			batch := c.take()
			if batch != nil && !c.writeBatch(batch) {
				return
			}
		case <-keepalive.C:
			// A comment line keeps proxies from timing the stream out and
			// finds dead peers.
			_ = rc.SetWriteDeadline(time.Now().Add(e.Hub.WriteTimeout))
			t.w.Write(AppendSSEComment(t.w.AvailableBuffer(), "ping"))
			if t.w.Flush() != nil || rc.Flush() != nil {
				return
			}
		case <-c.done:
			c.mu.Lock()
			ci := c.closeErr
			c.mu.Unlock()
			_ = rc.SetWriteDeadline(time.Now().Add(time.Second))
			data := fmt.Appendf(nil, `{"code":%d,"reason":%q}`, int(ci.code), ci.reason)
			t.w.Write(AppendSSEEvent(t.w.AvailableBuffer(), "close", data, 0))
			_ = t.w.Flush()
			_ = rc.Flush()
			return
		case <-r.Context().Done():
			return
		}
	}
}
