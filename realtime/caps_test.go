package realtime

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// getSSE opens /events as user and returns the response; the stream is
// closed when the test ends.
func (f *fixture) getSSE(t *testing.T, user int64) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/events", nil)
	req.Header.Set("X-User", strconv.FormatInt(user, 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// dialStatus tries a WebSocket upgrade as user and returns the HTTP status
// of a refused one (0 when it was upgraded).
func (f *fixture) dialStatus(t *testing.T, user int64) (int, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{"X-User": {strconv.FormatInt(user, 10)}}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.srv.URL, "http")+"/ws", &websocket.DialOptions{HTTPHeader: h})
	if err == nil {
		c.CloseNow()
		return 0, nil
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

func TestConnectionCaps(t *testing.T) {
	t.Run("a user past the per-user cap: the WebSocket closes with 1013 too_many_connections, SSE gets 429", func(t *testing.T) {
		f := newFixture(t, func(e *Endpoint) { e.Hub.MaxConnsPerUser = 3 })
		var open []*websocket.Conn
		for i := 0; i < 3; i++ {
			c := f.dial(t, 1, "")
			read(t, c)
			open = append(open, c)
		}
		f.waitConns(t, 3)

		extra := f.dial(t, 1, "")
		if code, reason := expectClose(t, extra); code != websocket.StatusTryAgainLater || reason != "too_many_connections" {
			t.Fatalf("4th socket closed with %d %q, want 1013 too_many_connections", code, reason)
		}
		resp := f.getSSE(t, 1)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("SSE past the cap: %d Retry-After=%q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if got := f.hub.Stats().RefusedUserFull; got != 2 {
			t.Errorf("RefusedUserFull = %d, want 2", got)
		}

		// Another user is not affected, and the user's open sockets work.
		other := f.dial(t, 2, "")
		if m := read(t, other); m.Type != "hello" {
			t.Fatalf("other user got %+v", m)
		}
		f.waitConns(t, 4)
		f.hub.Broadcast(1, changed("created", 1))
		for _, c := range open {
			if m := read(t, c); m.Version != 1 {
				t.Fatalf("open socket got %+v", m)
			}
		}

		// Once one closes, there is a place again.
		open[0].Close(websocket.StatusNormalClosure, "")
		f.waitConns(t, 3)
		again := f.dial(t, 1, "")
		if m := read(t, again); m.Type != "hello" {
			t.Fatalf("after a close: %+v, want hello", m)
		}
	})

	t.Run("a node at its cap answers 503 with Retry-After before upgrading and keeps its connections", func(t *testing.T) {
		f := newFixture(t, func(e *Endpoint) { e.Hub.MaxConns = 2 })
		a, b := f.dial(t, 1, ""), f.dial(t, 2, "")
		read(t, a)
		read(t, b)
		f.waitConns(t, 2)

		status, hdr := f.dialStatus(t, 3)
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
			t.Fatalf("WebSocket on a full node: %d Retry-After=%q, want 503 with Retry-After", status, hdr.Get("Retry-After"))
		}
		resp := f.getSSE(t, 3)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("SSE on a full node: %d, want 503 with Retry-After", resp.StatusCode)
		}
		if got := f.hub.Stats().RefusedNodeFull; got != 2 {
			t.Errorf("RefusedNodeFull = %d, want 2", got)
		}
		f.hub.Broadcast(1, changed("created", 1))
		if m := read(t, a); m.Version != 1 {
			t.Fatalf("open socket got %+v", m)
		}

		// Refused and unauthenticated attempts give their place back.
		for i := 0; i < 3; i++ {
			f.dialStatus(t, 3)
		}
		b.Close(websocket.StatusNormalClosure, "")
		f.waitConns(t, 1)
		unauth := f.dial(t, 0, "")
		expectClose(t, unauth)
		c := f.dial(t, 3, "")
		if m := read(t, c); m.Type != "hello" {
			t.Fatalf("after a close: %+v, want hello", m)
		}
	})
}
