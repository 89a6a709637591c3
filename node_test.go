package main

// A whole node started in-process (startNode), over the wire: real-time
// delivery over WebSocket and SSE, log-out, shutdown and restart.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"notesync/internal/apitest"

	"github.com/coder/websocket"
)

type event = apitest.Event

// next reads one JSON message within d, passing over presence (whose
// tests look at it on their own).
func next(t *testing.T, ws *websocket.Conn, d time.Duration) (event, error) {
	t.Helper()
	p, err := apitest.Next(ws, d)
	if err != nil {
		return event{}, err
	}
	var e event
	if err := json.Unmarshal(p, &e); err != nil {
		t.Fatalf("not JSON: %q", p)
	}
	return e, nil
}

func mustNext(t *testing.T, ws *websocket.Conn) event {
	t.Helper()
	e, err := next(t, ws, 5*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return e
}

func closeStatus(t *testing.T, ws *websocket.Conn) (websocket.StatusCode, string) {
	t.Helper()
	for {
		_, err := next(t, ws, 10*time.Second)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, err.Error()
		}
	}
}

func TestNodeRealtime(t *testing.T) {
	n := startNode(t)

	t.Run("without a session the socket closes with 1008 auth_required", func(t *testing.T) {
		ws := apitest.New(t, n.URL).DialWS("")
		if code, reason := closeStatus(t, ws); code != websocket.StatusPolicyViolation || reason != "auth_required" {
			t.Fatalf("closed with %d %q", code, reason)
		}
	})

	t.Run("a change reaches every tab of the user, once, and no other user", func(t *testing.T) {
		alice := apitest.New(t, n.URL)
		alice.SignUp("alice", "password1")
		bob := apitest.New(t, n.URL)
		bob.SignUp("bob", "password1")
		tab1, tab2, other := alice.DialWS(""), alice.DialWS(""), bob.DialWS("")
		for _, ws := range []*websocket.Conn{tab1, tab2, other} {
			if h := mustNext(t, ws); h.Type != "hello" || h.Node != "node1" || h.Region != "local" {
				t.Fatalf("hello: %+v", h)
			}
		}
		id, v := alice.CreateNote("hi")
		for _, ws := range []*websocket.Conn{tab1, tab2} {
			e := mustNext(t, ws)
			if e.Type != "note_changed" || e.Op != "created" || e.NoteID != id || e.Version != v || e.Node != "node1" {
				t.Fatalf("got %+v, want created #%d v%d", e, id, v)
			}
		}
		alice.Do("DELETE", "/api/notes/"+itoa(id), "", "")
		for _, ws := range []*websocket.Conn{tab1, tab2} {
			if e := mustNext(t, ws); e.Op != "deleted" || e.NoteID != id || e.Version != v+1 {
				t.Fatalf("got %+v, want deleted", e)
			}
		}
		if e, err := next(t, other, 300*time.Millisecond); err == nil {
			t.Fatalf("bob received %+v", e)
		}
	})

	t.Run("a reconnect with since catches up with a sync", func(t *testing.T) {
		c := apitest.New(t, n.URL)
		c.SignUp("carol", "password1")
		_, v1 := c.CreateNote("one")
		c.CreateNote("two")
		_, v3 := c.CreateNote("three")
		ws := c.DialWS("?since=" + itoa(v1))
		if h := mustNext(t, ws); h.Type != "hello" || h.Version != v3 {
			t.Fatalf("hello %+v", h)
		}
		if e := mustNext(t, ws); e.Op != "sync" || e.Version != v3 {
			t.Fatalf("got %+v, want sync v%d", e, v3)
		}
	})

	t.Run("log-out closes that session's sockets with 1008 and the cookie stops working", func(t *testing.T) {
		d := apitest.New(t, n.URL)
		d.SignUp("dave", "password1")
		ws := d.DialWS("")
		mustNext(t, ws)
		cookie := d.Cookie()
		d.Form("/logout", nil)
		if code, reason := closeStatus(t, ws); code != websocket.StatusPolicyViolation || reason != "auth_required" {
			t.Fatalf("closed with %d %q", code, reason)
		}
		req, _ := http.NewRequest("GET", n.URL+"/api/notes", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("old cookie: %d, want 401", resp.StatusCode)
		}
	})

	t.Run("SSE carries the same messages", func(t *testing.T) {
		e := apitest.New(t, n.URL)
		e.SignUp("erin", "password1")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/events", nil)
		req.Header.Set("Cookie", e.Cookie())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		readEvent := func() (name, data string) {
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				line = strings.TrimSpace(line)
				switch {
				case strings.HasPrefix(line, "event: "):
					name = line[7:]
				case strings.HasPrefix(line, "data: "):
					data = line[6:]
				case line == "" && data != "" && name == "presence":
					name, data = "", "" // presence has tests of its own
				case line == "" && data != "":
					return name, data
				}
			}
		}
		if name, _ := readEvent(); name != "hello" {
			t.Fatalf("first event %q", name)
		}
		id, _ := e.CreateNote("via sse")
		name, data := readEvent()
		if name != "note_changed" || !strings.Contains(data, `"note_id":`+itoa(id)) {
			t.Fatalf("got %s %s", name, data)
		}
	})

	t.Run("concurrent repeats of a keyed write make one change", func(t *testing.T) {
		f := apitest.New(t, n.URL)
		f.SignUp("frank", "password1")
		var wg sync.WaitGroup
		bodies := make([]string, 6)
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, bodies[i] = f.Do("POST", "/api/notes", "application/json", `{"body":"once"}`, "Idempotency-Key", "same-key")
			}()
		}
		wg.Wait()
		for _, b := range bodies {
			if b != bodies[0] {
				t.Fatalf("answers differ: %q vs %q", b, bodies[0])
			}
		}
		_, list := f.Do("GET", "/api/notes", "", "")
		if strings.Count(list, `"once"`) != 1 {
			t.Fatalf("list: %s", list)
		}
	})
}

func TestShutdownAndRestart(t *testing.T) {
	n := startNode(t)
	addr := strings.TrimPrefix(n.URL, "http://")
	c := apitest.New(t, n.URL)
	c.SignUp("alice", "password1")
	_, v := c.CreateNote("before")
	ws := c.DialWS("")
	mustNext(t, ws)

	n.Stop(t)
	if code, _ := closeStatus(t, ws); code != websocket.StatusGoingAway {
		t.Fatalf("on shutdown the socket closed with %d, want 1001", code)
	}

	n2 := startNode(t, withAddr(addr), withDataDir(n.DataDir))
	// The session secret and the session live in the data dir: the same
	// cookie works after the restart.
	_, v2 := c.CreateNote("after")
	if v2 != v+1 {
		t.Fatalf("version after restart %d, want %d", v2, v+1)
	}
	ws2 := c.DialWS("?since=" + itoa(v))
	if h := mustNext(t, ws2); h.Version != v2 {
		t.Fatalf("hello %+v", h)
	}
	if e := mustNext(t, ws2); e.Op != "sync" || e.Version != v2 {
		t.Fatalf("got %+v, want sync", e)
	}
	_ = n2
}

// TestShutdownRefusesNewConnectionsAtOnce: while a node closes its sockets
// on shutdown, a tab trying to reconnect is refused at once (and backs
// off), rather than waiting in the dying process's accept queue.
func TestShutdownRefusesNewConnectionsAtOnce(t *testing.T) {
	n := startNode(t)
	addr := strings.TrimPrefix(n.URL, "http://")
	c := apitest.New(t, n.URL)
	c.SignUp("alice", "password1")
	// A read parked on a version the node does not have holds the shutdown
	// open (it waits for requests in flight) for up to 3 s.
	parked := make(chan struct{})
	go func() {
		defer close(parked)
		req, _ := http.NewRequest("GET", n.URL+"/api/notes?min_version=999", nil)
		req.Header.Set("Cookie", c.Cookie())
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	defer func() { <-parked }()
	time.Sleep(100 * time.Millisecond) // parked

	n.stop()
	if err := apitest.WaitRefused(addr, 2*time.Second); err != nil {
		t.Fatalf("2 s into the shutdown: %v", err)
	}
	select {
	case err := <-n.done:
		t.Fatalf("the node had already stopped (%v): nothing shows the listener closed first", err)
	default:
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
