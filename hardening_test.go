package main

// What a hostile or careless client gets from a whole node
// (docs/PROTOCOL.md §8), over the wire.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"notesync/internal/apitest"

	"github.com/coder/websocket"
)

func TestSlowBodies(t *testing.T) {
	const within = 500 * time.Millisecond
	n := startNode(t, func(c *config) { c.bodyTimeout = within })
	c := apitest.New(t, n.URL)
	c.SignUp("alice", "password1")
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
			method, path, host, c.Cookie(), contentType)
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
		req.Header.Set("Cookie", c.Cookie())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(n.URL, "http")+"/ws",
			&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {c.Cookie()}}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		time.Sleep(3 * within)
		id, _ := c.CreateNote("after the deadline")
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

func TestMetricsApart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := l.Addr().String()
	l.Close()
	n := startNode(t, func(c *config) { c.MetricsAddr = maddr })
	c := apitest.New(t, n.URL)
	c.SignUp("alice", "password1")

	if resp, _ := c.Do("GET", "/metrics", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the public port: %d, want 404", resp.StatusCode)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "notesync_connections_refused_total") {
		t.Fatalf("-metrics-addr: %d, %d bytes without the connection metrics", resp.StatusCode, len(body))
	}
}

// TestBenchPublishOnlyAsBenchmark checks the load tool's publish: served
// on the metrics address of a node run with -benchmark, delivered to the
// tabs of the session's user with its send time, and nowhere else.
func TestBenchPublishOnlyAsBenchmark(t *testing.T) {
	for _, benchmark := range []bool{false, true} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		maddr := l.Addr().String()
		l.Close()
		n := startNode(t, func(c *config) { c.MetricsAddr = maddr; c.Benchmark = benchmark })
		c := apitest.New(t, n.URL)
		c.SignUp("alice", "password1")
		publish := func(base string) (int, string) {
			req, _ := http.NewRequest("POST", base+"/debug/publish", strings.NewReader(`{"seq":7}`))
			req.Header.Set("Cookie", c.Cookie())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := publish(n.URL); code == http.StatusOK {
			t.Fatalf("benchmark %v: /debug/publish answered on the public port", benchmark)
		}
		if !benchmark {
			if code, _ := publish("http://" + maddr); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
				t.Fatalf("/debug/publish on a node without -benchmark: %d, want 404", code)
			}
			continue
		}
		ws := c.DialWS("")
		if p, err := apitest.Next(ws, 5*time.Second); err != nil || !strings.Contains(string(p), `"hello"`) {
			t.Fatalf("first message %s, %v", p, err)
		}
		before := time.Now().UnixNano()
		code, body := publish("http://" + maddr)
		if code != http.StatusOK {
			t.Fatalf("/debug/publish: %d %s", code, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			_, p, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("no published message: %v", err)
			}
			var m struct {
				Type      string
				Seq, Sent int64
			}
			if json.Unmarshal(p, &m) != nil || m.Type != "bench_publish" {
				continue
			}
			if m.Seq != 7 || m.Sent < before || m.Sent > time.Now().UnixNano() {
				t.Fatalf("published %s, want seq 7 sent during the call", p)
			}
			break
		}
	}
}

func TestClusterStatusShowsNoAddresses(t *testing.T) {
	n := startNode(t)
	c := apitest.New(t, n.URL)
	c.SignUp("alice", "password1")
	resp, body := c.Do("GET", "/api/cluster", "", "")
	var st struct {
		Members []map[string]any `json:"members"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || len(st.Members) != 1 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, ok := st.Members[0]["addr"]; ok {
		t.Errorf("a member's address is shown: %s", body)
	}
	// The panel's link to the node: on this machine, its loopback URL.
	if st.Members[0]["http_url"] != n.URL {
		t.Errorf("http_url %v, want %s", st.Members[0]["http_url"], n.URL)
	}
}

func TestDataDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	n := startNode(t, withDataDir(dir))
	c := apitest.New(t, n.URL)
	c.SignUp("alice", "password1") // a session row: what must not be readable
	for p, want := range map[string]os.FileMode{
		dir: 0o700, filepath.Join(dir, "notesync.db"): 0o600, filepath.Join(dir, "session_secret"): 0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: %v, want %v", filepath.Base(p), got, want)
		}
	}
}

func TestPrivateFilesNarrowedAtRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, withDataDir(dir))
	n.Stop(t)
	db, secret := filepath.Join(dir, "notesync.db"), filepath.Join(dir, "session_secret")
	for _, p := range []string{db, secret} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startNode(t, withDataDir(dir))
	for _, p := range []string{db, secret} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
			t.Errorf("%s after a restart: %v, want %v", filepath.Base(p), got, want)
		}
	}
}
