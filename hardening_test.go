package main

// What a hostile or careless client gets from a whole node
// (docs/PROTOCOL.md §8), over the wire.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestSlowBodies(t *testing.T) {
	const within = 500 * time.Millisecond
	n := startNode(t, func(c *config) { c.bodyTimeout = within })
	c := newClient(t, n.URL)
	c.signup("alice", "password1")
	host := strings.TrimPrefix(n.URL, "http://")

	// slowPost announces a 1,000-byte body, sends 10 bytes and waits.
	slowPost := func(t *testing.T, method, path, contentType string) {
		t.Helper()
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\n0123456789",
			method, path, host, c.cookieHeader(), contentType)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("%s: %d %s, want 408", path, resp.StatusCode, body)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%s: the connection stayed open after the 408 (%v)", path, err)
		}
	}
	for _, p := range []struct{ method, path, ct string }{
		{"POST", "/api/notes", "application/json"},
		{"POST", "/api/notes", "application/x-www-form-urlencoded"},
		{"PATCH", "/api/notes/1", "application/json"},
		{"POST", "/login", "application/x-www-form-urlencoded"},
		{"POST", "/signup", "application/x-www-form-urlencoded"},
		{"POST", "/api/assistant", "application/json"},
	} {
		t.Run("a body that does not arrive: 408 and closed, "+p.method+" "+p.path+" "+p.ct, func(t *testing.T) {
			slowPost(t, p.method, p.path, p.ct)
		})
	}

	t.Run("streams outlive the body deadline", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/events", nil)
		req.Header.Set("Cookie", c.cookieHeader())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(n.URL, "http")+"/ws",
			&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {c.cookieHeader()}}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		time.Sleep(3 * within)
		id, _ := c.createNote("after the deadline")
		want := fmt.Sprintf(`"note_id":%d`, id)
		for { // presence and other messages may come first
			_, p, err := ws.Read(dctx)
			if err != nil {
				t.Fatalf("WebSocket: %v before the note's note_changed", err)
			}
			if strings.Contains(string(p), want) {
				break
			}
		}
		stop := time.AfterFunc(5*time.Second, cancel)
		defer stop.Stop()
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("SSE ended: %v", err)
			}
			if strings.Contains(line, want) {
				break
			}
		}
	})
}
