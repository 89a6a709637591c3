package realtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fixture is an Endpoint on a test server. A request authenticates with the
// header X-User: <id> (and optional X-Session); versions come from a map.
type fixture struct {
	hub *Hub
	ep  *Endpoint
	srv *httptest.Server

	mu       sync.Mutex
	versions map[int64]int64
}

func newFixture(t *testing.T, tweak ...func(*Endpoint)) *fixture {
	t.Helper()
	f := &fixture{hub: NewHub(), versions: map[int64]int64{}}
	f.ep = &Endpoint{
		Hub: f.hub,
		Authenticate: func(r *http.Request) (Identity, error) {
			id, err := strconv.ParseInt(r.Header.Get("X-User"), 10, 64)
			if err != nil || id <= 0 {
				return Identity{}, ErrUnauthenticated
			}
			return Identity{UserID: id, SessionID: r.Header.Get("X-Session")}, nil
		},
		Version: func(ctx context.Context, userID int64) (int64, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.versions[userID], nil
		},
		CatchUp: func(v int64) Message { return changed("sync", v) },
		Node:    "node1",
		Region:  "ams",
	}
	for _, fn := range tweak {
		fn(f.ep)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", f.ep.ServeWS)
	mux.HandleFunc("/events", f.ep.ServeSSE)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.hub.Close(time.Second)
		f.srv.Close()
	})
	return f
}

func (f *fixture) setVersion(user, v int64) {
	f.mu.Lock()
	f.versions[user] = v
	f.mu.Unlock()
}

// changed is a note_changed-like message at version v.
func changed(op string, v int64) Message {
	data, _ := json.Marshal(map[string]any{"type": "note_changed", "op": op, "version": v})
	return Message{Type: "note_changed", Version: v, Data: data}
}

type msg struct {
	Type    string `json:"type"`
	Op      string `json:"op"`
	Node    string `json:"node"`
	Region  string `json:"region"`
	Version int64  `json:"version"`
}

// dial opens a WebSocket as user (0: no session).
func (f *fixture) dial(t *testing.T, user int64, query string, hdr ...string) *websocket.Conn {
	t.Helper()
	h := http.Header{}
	if user > 0 {
		h.Set("X-User", strconv.FormatInt(user, 10))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.srv.URL, "http")+"/ws"+query, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func read(t *testing.T, c *websocket.Conn) msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, p, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("got message type %v, want text", typ)
	}
	var m msg
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("not JSON: %q", p)
	}
	return m
}

// expectClose reads until the connection closes and returns the code.
func expectClose(t *testing.T, c *websocket.Conn) (websocket.StatusCode, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, err.Error()
		}
	}
}

// waitConns waits until the hub holds n connections.
func (f *fixture) waitConns(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.hub.Stats().Connections != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d connections, want %d", f.hub.Stats().Connections, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebSocket(t *testing.T) {
	t.Run("without a session the upgrade is closed with 1008 auth_required", func(t *testing.T) {
		f := newFixture(t)
		c := f.dial(t, 0, "")
		code, reason := expectClose(t, c)
		if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "auth_required") {
			t.Fatalf("closed with %d %q, want 1008 auth_required", code, reason)
		}
	})

	t.Run("hello comes first with node, region and version", func(t *testing.T) {
		f := newFixture(t)
		f.setVersion(7, 12)
		c := f.dial(t, 7, "")
		m := read(t, c)
		if m.Type != "hello" || m.Node != "node1" || m.Region != "ams" || m.Version != 12 {
			t.Fatalf("first message %+v, want hello node1 ams 12", m)
		}
	})

	t.Run("a cross-origin upgrade is refused with 403 before upgrading", func(t *testing.T) {
		f := newFixture(t)
		req, _ := http.NewRequest("GET", f.srv.URL+"/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("X-User", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
		if f.hub.Stats().Connections != 0 {
			t.Fatal("a connection was registered")
		}
	})

	t.Run("broadcast reaches every tab of the user and no other user", func(t *testing.T) {
		f := newFixture(t)
		a1, a2, b := f.dial(t, 1, ""), f.dial(t, 1, ""), f.dial(t, 2, "")
		for _, c := range []*websocket.Conn{a1, a2, b} {
			read(t, c) // hello
		}
		f.waitConns(t, 3)
		if n := f.hub.Broadcast(1, changed("created", 1)); n != 2 {
			t.Fatalf("Broadcast reached %d connections, want 2", n)
		}
		for _, c := range []*websocket.Conn{a1, a2} {
			if m := read(t, c); m.Type != "note_changed" || m.Version != 1 {
				t.Fatalf("got %+v", m)
			}
		}
		// b gets nothing: its next message is the answer to its own ping.
		if err := b.Write(context.Background(), websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, p, err := b.Read(ctx)
		if err != nil || string(p) != "pong" {
			t.Fatalf("other user read %q, %v; want only pong", p, err)
		}
	})

	t.Run("text ping is answered with pong and other text is ignored", func(t *testing.T) {
		f := newFixture(t)
		c := f.dial(t, 1, "")
		read(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Write(ctx, websocket.MessageText, []byte(`{"hello":"server"}`))
		c.Write(ctx, websocket.MessageText, []byte("ping"))
		_, p, err := c.Read(ctx)
		if err != nil || string(p) != "pong" {
			t.Fatalf("read %q, %v; want pong", p, err)
		}
	})

	t.Run("since below the current version gets a sync right after hello", func(t *testing.T) {
		f := newFixture(t)
		f.setVersion(1, 9)
		c := f.dial(t, 1, "?since=4")
		if m := read(t, c); m.Type != "hello" || m.Version != 9 {
			t.Fatalf("got %+v, want hello v9", m)
		}
		if m := read(t, c); m.Type != "note_changed" || m.Op != "sync" || m.Version != 9 {
			t.Fatalf("got %+v, want sync v9", m)
		}
	})

	t.Run("since at the current version gets no sync", func(t *testing.T) {
		f := newFixture(t)
		f.setVersion(1, 9)
		c := f.dial(t, 1, "?since=9")
		read(t, c)
		f.waitConns(t, 1)
		f.hub.Broadcast(1, changed("created", 10))
		if m := read(t, c); m.Op != "created" || m.Version != 10 {
			t.Fatalf("got %+v, want created v10 (no sync)", m)
		}
	})

	t.Run("bad since is a 400", func(t *testing.T) {
		f := newFixture(t)
		resp, err := http.Get(f.srv.URL + "/ws?since=abc")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})

	t.Run("versions at or below what was sent are not sent again", func(t *testing.T) {
		f := newFixture(t)
		f.setVersion(1, 5)
		c := f.dial(t, 1, "")
		read(t, c)
		f.waitConns(t, 1)
		f.hub.Broadcast(1, changed("created", 4)) // covered by hello v5
		f.hub.Broadcast(1, changed("created", 6))
		f.hub.Broadcast(1, changed("created", 6)) // duplicate
		f.hub.Broadcast(1, changed("created", 7))
		for _, want := range []int64{6, 7} {
			if m := read(t, c); m.Version != want {
				t.Fatalf("got v%d, want v%d", m.Version, want)
			}
		}
	})

	t.Run("a message over 4 KiB closes with 1009", func(t *testing.T) {
		f := newFixture(t)
		c := f.dial(t, 1, "")
		read(t, c)
		c.Write(context.Background(), websocket.MessageText, []byte(strings.Repeat("x", 4097)))
		if code, _ := expectClose(t, c); code != websocket.StatusMessageTooBig {
			t.Fatalf("closed with %d, want 1009", code)
		}
	})

	t.Run("a binary message closes with 1003", func(t *testing.T) {
		f := newFixture(t)
		c := f.dial(t, 1, "")
		read(t, c)
		c.Write(context.Background(), websocket.MessageBinary, []byte{1, 2, 3})
		if code, _ := expectClose(t, c); code != websocket.StatusUnsupportedData {
			t.Fatalf("closed with %d, want 1003", code)
		}
	})

	t.Run("a text message that is not UTF-8 closes with 1007", func(t *testing.T) {
		f := newFixture(t)
		c := f.dial(t, 1, "")
		read(t, c)
		c.Write(context.Background(), websocket.MessageText, []byte("caf\xe9"))
		if code, _ := expectClose(t, c); code != websocket.StatusInvalidFramePayloadData {
			t.Fatalf("closed with %d, want 1007", code)
		}
	})

	t.Run("a page on this host over http cannot open a socket to it over https", func(t *testing.T) {
		f := newFixture(t)
		host := strings.TrimPrefix(f.srv.URL, "http://")
		upgrade := func(origin, proto string) int {
			req, _ := http.NewRequest("GET", f.srv.URL+"/ws", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			req.Header.Set("Origin", origin)
			req.Header.Set("X-Forwarded-Proto", proto)
			req.Header.Set("X-User", "1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := upgrade("http://"+host, "https"); got != http.StatusForbidden {
			t.Errorf("http origin, https request: %d, want 403", got)
		}
		if got := upgrade("ftp://"+host, "http"); got != http.StatusForbidden {
			t.Errorf("ftp origin: %d, want 403", got)
		}
		for _, c := range [][2]string{{"https://" + host, "https"}, {"http://" + host, "http"}, {"https://" + host, ""}} {
			if got := upgrade(c[0], c[1]); got != http.StatusSwitchingProtocols {
				t.Errorf("origin %s, X-Forwarded-Proto %q: %d, want 101", c[0], c[1], got)
			}
		}
	})

	t.Run("CloseSession closes that session's sockets with 1008 and no others", func(t *testing.T) {
		f := newFixture(t)
		a := f.dial(t, 1, "", "X-Session", "s1")
		b := f.dial(t, 1, "", "X-Session", "s2")
		read(t, a)
		read(t, b)
		f.waitConns(t, 2)
		if got := f.hub.Sessions(); len(got) != 2 {
			t.Fatalf("Sessions() = %v, want s1 and s2", got)
		}
		if n := f.hub.CloseSession("s1", StatusPolicyViolation, "auth_required"); n != 1 {
			t.Fatalf("closed %d, want 1", n)
		}
		if code, reason := expectClose(t, a); code != websocket.StatusPolicyViolation || reason != "auth_required" {
			t.Fatalf("closed with %d %q", code, reason)
		}
		f.hub.Broadcast(1, changed("created", 1))
		if m := read(t, b); m.Version != 1 {
			t.Fatalf("other session got %+v", m)
		}
	})

	t.Run("closing the hub closes sockets with 1001", func(t *testing.T) {
		f := newFixture(t)
		c := f.dial(t, 1, "")
		read(t, c)
		f.waitConns(t, 1)
		go f.hub.Close(2 * time.Second)
		if code, _ := expectClose(t, c); code != websocket.StatusGoingAway {
			t.Fatalf("closed with %d, want 1001", code)
		}
	})

	t.Run("WebSocket pings drop a peer that stops answering", func(t *testing.T) {
		f := newFixture(t)
		f.hub.PingInterval = 50 * time.Millisecond
		f.hub.PingTimeout = 100 * time.Millisecond
		c := f.dial(t, 1, "")
		read(t, c)
		f.waitConns(t, 1)
		// A client that never reads never answers pings.
		_ = c
		f.waitConns(t, 0)
	})
}

func TestSlowConsumer(t *testing.T) {
	t.Run("a client that does not read is disconnected without delaying others", func(t *testing.T) {
		f := newFixture(t)
		slow := f.dial(t, 1, "")
		fast := f.dial(t, 1, "")
		read(t, slow)
		read(t, fast)
		fast.SetReadLimit(1 << 20)
		f.waitConns(t, 2)

		// Big messages fill the socket buffers of the client that never
		// reads; the fast client must get every one in order meanwhile.
		const n = 400
		pad := strings.Repeat("x", 64<<10)
		got := make(chan error, 1)
		var fastGot atomic.Int64
		go func() {
			for i := int64(1); i <= n; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, p, err := fast.Read(ctx)
				cancel()
				if err != nil {
					got <- fmt.Errorf("fast client read %d: %w", i, err)
					return
				}
				var m msg
				json.Unmarshal(p, &m)
				if m.Version != i {
					got <- fmt.Errorf("fast client got v%d, want v%d", m.Version, i)
					return
				}
				fastGot.Store(i)
			}
			got <- nil
		}()
		start := time.Now()
		for i := int64(1); i <= n; i++ {
			data, _ := json.Marshal(map[string]any{"type": "note_changed", "version": i, "pad": pad})
			// Keep the fast client within half its queue, however slow
			// this machine is; the slow one only ever falls further behind.
			for fastGot.Load() < i-DefaultQueueSize/2 && time.Since(start) < 20*time.Second {
				time.Sleep(100 * time.Microsecond)
			}
			f.hub.Broadcast(1, Message{Type: "note_changed", Version: i, Data: data})
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Fatalf("fast client took %v", d)
		}
		if code, _ := expectClose(t, slow); code != websocket.StatusTryAgainLater && code != -1 {
			t.Fatalf("slow client closed with %d, want 1013", code)
		}
		if f.hub.Stats().SlowClosed == 0 {
			t.Fatal("no slow disconnect counted")
		}
	})
}

// TestBlockedWrite checks the other half of backpressure: a client that
// stops reading, with fewer than QueueSize messages waiting, is dropped as
// too slow once one write has been blocked for WriteTimeout.
func TestBlockedWrite(t *testing.T) {
	f := newFixture(t)
	f.hub.WriteTimeout = 300 * time.Millisecond
	slow := f.dial(t, 1, "")
	read(t, slow)
	f.waitConns(t, 1)
	// Eight 1 MiB messages are more than the loopback socket buffers hold.
	pad := strings.Repeat("x", 1<<20)
	for i := int64(1); i <= 8; i++ {
		data, _ := json.Marshal(map[string]any{"type": "note_changed", "version": i, "pad": pad})
		f.hub.Broadcast(1, Message{Type: "note_changed", Version: i, Data: data})
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.hub.Stats().SlowClosed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a client blocked past WriteTimeout was not dropped: %+v", f.hub.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.waitConns(t, 0)
}

// TestHandshakeLimit checks that connections opened all at once are
// handled MaxHandshakes at a time, and every one of them is served.
func TestHandshakeLimit(t *testing.T) {
	var inside, most atomic.Int64
	f := newFixture(t, func(e *Endpoint) {
		e.MaxHandshakes = 2
		auth := e.Authenticate
		e.Authenticate = func(r *http.Request) (Identity, error) {
			n := inside.Add(1)
			defer inside.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			return auth(r)
		}
	})
	const clients = 20
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			h := http.Header{"X-User": {strconv.Itoa(i%3 + 1)}}
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.srv.URL, "http")+"/ws", &websocket.DialOptions{HTTPHeader: h})
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(func() { c.CloseNow() })
			_, p, err := c.Read(ctx)
			if err == nil && !strings.Contains(string(p), `"hello"`) {
				err = fmt.Errorf("first message %s", p)
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := most.Load(); got > 2 {
		t.Fatalf("%d handshakes at once, want at most 2", got)
	}
	f.waitConns(t, clients)
}

// TestFanOut checks delivery at the real boundary: many sockets, many
// messages, each socket gets every message of its user once and in order.
func TestFanOut(t *testing.T) {
	f := newFixture(t)
	const users, tabs, msgs = 10, 3, 200
	type tab struct {
		user int64
		c    *websocket.Conn
	}
	var all []tab
	for u := int64(1); u <= users; u++ {
		for i := 0; i < tabs; i++ {
			c := f.dial(t, u, "")
			read(t, c)
			all = append(all, tab{u, c})
		}
	}
	f.waitConns(t, users*tabs)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for _, tb := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := int64(1); v <= msgs; v++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, p, err := tb.c.Read(ctx)
				cancel()
				var m msg
				if err != nil || json.Unmarshal(p, &m) != nil || m.Version != v {
					t.Errorf("user %d: got %q (%v), want v%d", tb.user, p, err, v)
					failures.Add(1)
					return
				}
			}
		}()
	}
	// Publish in rounds that fit the per-connection queue (a burst larger
	// than QueueSize disconnects by design), from one goroutine per user.
	const round = 20
	for start := int64(1); start <= msgs; start += round {
		sentBefore := f.hub.Stats().Sent
		var pub sync.WaitGroup
		for u := int64(1); u <= users; u++ {
			pub.Add(1)
			go func() {
				defer pub.Done()
				for v := start; v < start+round && v <= msgs; v++ {
					f.hub.Broadcast(u, changed("created", v))
				}
			}()
		}
		pub.Wait()
		want := sentBefore + uint64(users*tabs*round)
		deadline := time.Now().Add(10 * time.Second)
		for f.hub.Stats().Sent < want && time.Now().Before(deadline) && failures.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	if got, want := f.hub.Stats().Sent, uint64(users*tabs*(msgs+1)); got != want {
		t.Fatalf("sent %d messages, want %d", got, want)
	}
}

func TestSSE(t *testing.T) {
	open := func(t *testing.T, f *fixture, user int64, hdr ...string) (*http.Response, *bufio.Reader) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.srv.URL+"/events", nil)
		if user > 0 {
			req.Header.Set("X-User", strconv.FormatInt(user, 10))
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp, bufio.NewReader(resp.Body)
	}
	type event struct{ name, data, id string }
	next := func(t *testing.T, r *bufio.Reader) event {
		t.Helper()
		var e event
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read event: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if e.data != "" {
					return e
				}
			case strings.HasPrefix(line, "event: "):
				e.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			}
		}
	}

	t.Run("without a session it is a 401", func(t *testing.T) {
		f := newFixture(t)
		resp, _ := open(t, f, 0)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})

	t.Run("a cross-origin request is refused with 403 before anything streams", func(t *testing.T) {
		f := newFixture(t, func(e *Endpoint) { e.OriginPatterns = []string{"app.example"} })
		host := strings.TrimPrefix(f.srv.URL, "http://")
		for _, c := range []struct {
			name string
			hdr  []string
			want int
		}{
			{"another site", []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
			{"another site by Origin alone", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
			{"another site by Fetch Metadata alone", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
			{"a sibling subdomain", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
			{"this host over http, the request over https", []string{"Origin", "http://" + host, "X-Forwarded-Proto", "https"}, http.StatusForbidden},
			{"this origin", []string{"Origin", "http://" + host, "Sec-Fetch-Site", "same-origin"}, http.StatusOK},
			{"an allowed origin", []string{"Origin", "https://app.example", "Sec-Fetch-Site", "cross-site"}, http.StatusOK},
			{"typed in the address bar", []string{"Sec-Fetch-Site", "none"}, http.StatusOK},
			{"no browser headers", nil, http.StatusOK},
		} {
			resp, r := open(t, f, 3, c.hdr...)
			if resp.StatusCode != c.want {
				t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
				continue
			}
			if c.want == http.StatusForbidden {
				if b, _ := io.ReadAll(r); strings.Contains(string(b), "hello") {
					t.Errorf("%s: refused after streaming: %s", c.name, b)
				}
			}
			resp.Body.Close()
		}
		f.waitConns(t, 0)
	})

	t.Run("hello first, then changes, each with its version as id", func(t *testing.T) {
		f := newFixture(t)
		f.setVersion(3, 2)
		resp, r := open(t, f, 3)
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		if e := next(t, r); e.name != "hello" || e.id != "2" {
			t.Fatalf("got %+v, want hello id 2", e)
		}
		f.waitConns(t, 1)
		f.hub.Broadcast(3, changed("created", 3))
		if e := next(t, r); e.name != "note_changed" || e.id != "3" || !strings.Contains(e.data, `"op":"created"`) {
			t.Fatalf("got %+v", e)
		}
	})

	t.Run("Last-Event-ID resumes with a sync when behind", func(t *testing.T) {
		f := newFixture(t)
		f.setVersion(3, 8)
		_, r := open(t, f, 3, "Last-Event-ID", "5")
		if e := next(t, r); e.name != "hello" {
			t.Fatalf("got %+v", e)
		}
		if e := next(t, r); e.name != "note_changed" || !strings.Contains(e.data, `"op":"sync"`) || e.id != "8" {
			t.Fatalf("got %+v, want sync id 8", e)
		}
	})

	t.Run("CloseSession ends the stream with a close event carrying 1008", func(t *testing.T) {
		f := newFixture(t)
		_, r := open(t, f, 3, "X-Session", "s9")
		next(t, r)
		f.waitConns(t, 1)
		f.hub.CloseSession("s9", StatusPolicyViolation, "auth_required")
		if e := next(t, r); e.name != "close" || !strings.Contains(e.data, `"code":1008`) || !strings.Contains(e.data, "auth_required") {
			t.Fatalf("got %+v", e)
		}
	})
}
