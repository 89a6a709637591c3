package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"notesync/internal/apitest"

	"github.com/coder/websocket"
)

// event is a real-time message as a client sees it.
type event struct {
	Type    string `json:"type"`
	Op      string `json:"op"`
	NoteID  int64  `json:"note_id"`
	Version int64  `json:"version"`
	Node    string `json:"node"`
	Region  string `json:"region"`
}

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

func TestRealtimeEndToEnd(t *testing.T) {
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
	deadline := time.Now().Add(2 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 2 s into the shutdown")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-n.done:
		t.Fatalf("the node had already stopped (%v): nothing shows the listener closed first", err)
	default:
	}
}

func TestFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	t.Run("-h lists every flag with its environment variable", func(t *testing.T) {
		var out bytes.Buffer
		_, err := parseConfig([]string{"-h"}, env(nil), &out)
		if err == nil {
			t.Fatal("no error for -h")
		}
		for _, want := range []string{"-http-addr", "PORT", "-data-dir", "DATA_DIR", "-db", "DATABASE_PATH", "-node", "NODE_NAME", "-region", "FLY_REGION", "-session-secret", "SESSION_SECRET"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("usage lacks %q", want)
			}
		}
	})

	t.Run("-h names the cluster subcommand and is not an error to the user; a bad flag is one line with a hint", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"-h"}, env(nil), &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stdout.String(), "notesync cluster") || stderr.Len() != 0 {
			t.Errorf("-h: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
		}
		stdout.Reset()
		err = run(context.Background(), []string{"cluster", "-h"}, env(nil), &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stdout.String(), "-netns") || !strings.Contains(stdout.String(), "-lease") || !strings.Contains(stdout.String(), "promote NODE") {
			t.Errorf("cluster -h: %v, stdout %q", err, stdout.String())
		}
		for _, args := range [][]string{{"-bogus"}, {"cluster", "-bogus"}} {
			stdout.Reset()
			err := run(context.Background(), args, env(nil), &stdout, &stderr)
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "-bogus") || !strings.Contains(err.Error(), "-h") || stdout.Len()+stderr.Len() != 0 {
				t.Errorf("%v: %v, and printed %q %q; want one line naming the flag with a hint to -h", args, err, stdout.String(), stderr.String())
			}
		}
	})

	t.Run("an explicit -db is never overridden; without it the database lives in the LiteFS mount", func(t *testing.T) {
		c, err := parseConfig([]string{"-db", "data/notesync.db", "-litefs-dir", "/litefs"}, env(nil), &bytes.Buffer{})
		if err != nil || c.DBPath != "data/notesync.db" {
			t.Errorf("explicit -db: %q %v, want data/notesync.db", c.DBPath, err)
		}
		c, err = parseConfig([]string{"-litefs-dir", "/litefs"}, env(nil), &bytes.Buffer{})
		if err != nil || c.DBPath != "/litefs/notesync.db" {
			t.Errorf("no -db with LiteFS: %q %v, want /litefs/notesync.db", c.DBPath, err)
		}
		c, err = parseConfig([]string{"-data-dir", "/d"}, env(nil), &bytes.Buffer{})
		if err != nil || c.DBPath != "/d/notesync.db" {
			t.Errorf("no -db: %q %v, want /d/notesync.db", c.DBPath, err)
		}
	})

	t.Run("environment fills in, flags win", func(t *testing.T) {
		c, err := parseConfig([]string{"-node", "n7"}, env(map[string]string{"PORT": "9999", "NODE_NAME": "envnode", "FLY_REGION": "ams"}), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTPAddr != ":9999" || c.Node != "n7" || c.Region != "ams" {
			t.Fatalf("%+v", c)
		}
	})

	t.Run("connection caps: 32 per user, and the node's below its open-file limit", func(t *testing.T) {
		c, err := parseConfig(nil, env(nil), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		if c.MaxConnsPerUser != 32 || c.MaxConns <= 0 || uint64(c.MaxConns) >= lim.Cur {
			t.Fatalf("caps: %d per user, %d per node (open-file limit %d)", c.MaxConnsPerUser, c.MaxConns, lim.Cur)
		}
		c, err = parseConfig([]string{"-max-conns", "500"}, env(map[string]string{"MAX_CONNS_PER_USER": "4"}), &bytes.Buffer{})
		if err != nil || c.MaxConns != 500 || c.MaxConnsPerUser != 4 {
			t.Fatalf("%v %+v", err, c)
		}
	})

	t.Run("on Fly.io it refuses to start without its secrets, saying how to set them", func(t *testing.T) {
		_, err := parseConfig(nil, env(map[string]string{"FLY_MACHINE_ID": "148e21e4b16189", "FLY_APP_NAME": "notes"}), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "fly secrets set") || !strings.Contains(err.Error(), "GOSSIP_KEY") || !strings.Contains(err.Error(), "SESSION_SECRET") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("on Fly.io the cluster settings default to the platform's", func(t *testing.T) {
		c, err := parseConfig(nil, env(map[string]string{
			"FLY_MACHINE_ID": "148e21e4b16189", "FLY_APP_NAME": "notes", "FLY_REGION": "syd",
			"FLY_PRIVATE_IP": "fdaa:0:1:a7b:1::2", "PORT": "8080",
			"SESSION_SECRET": "0123456789abcdef0123", "GOSSIP_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		}), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Node != "148e21e4b16189" || c.Region != "syd" || c.GossipBind != "[::]:7946" ||
			c.GossipAdvert != "[fdaa:0:1:a7b:1::2]:7946" || len(c.Peers) != 1 || c.Peers[0] != "notes.internal:7946" ||
			!c.GossipWAN || c.HTTPURL != "http://[fdaa:0:1:a7b:1::2]:8080" || len(c.GossipKey) != 32 {
			t.Fatalf("%+v", c)
		}
	})

	t.Run("a bad value stops the program with one line naming it", func(t *testing.T) {
		cases := []struct {
			args []string
			env  map[string]string
			name string
		}{
			{nil, map[string]string{"PORT": "x:y:z"}, "PORT"},
			{[]string{"-node", "bad name!"}, nil, "-node"},
			{[]string{"-region", ""}, nil, "-region"},
			{nil, map[string]string{"SESSION_SECRET": "short"}, "SESSION_SECRET"},
			{[]string{"-log-level", "loud"}, nil, "-log-level"},
			{[]string{"stray"}, nil, "stray"},
			{[]string{"-max-conns", "-1"}, nil, "-max-conns"},
			{nil, map[string]string{"MAX_CONNS_PER_USER": "lots"}, "MAX_CONNS_PER_USER"},
			{[]string{"-signup-limit", "1.5"}, nil, "-signup-limit"},
			{nil, map[string]string{"PASSWORD_PEPPER": "short"}, "PASSWORD_PEPPER"},
			{nil, map[string]string{"CLIENT_IP_HEADER": "X Real IP"}, "CLIENT_IP_HEADER"},
			{[]string{"-bcrypt-cost", "3", "-benchmark"}, nil, "-bcrypt-cost"},
			{nil, map[string]string{"BCRYPT_COST": "ten"}, "BCRYPT_COST"},
		}
		for _, c := range cases {
			_, err := parseConfig(c.args, env(c.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.name) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v %v: got %v, want one line naming %s", c.args, c.env, err, c.name)
			}
		}
	})

	t.Run("a bcrypt cost under 10 needs -benchmark", func(t *testing.T) {
		_, err := parseConfig([]string{"-bcrypt-cost", "4"}, env(nil), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "-benchmark") {
			t.Fatalf("-bcrypt-cost 4 alone: got %v, want a refusal naming -benchmark", err)
		}
		for _, c := range []struct {
			args []string
			env  map[string]string
		}{
			{[]string{"-bcrypt-cost", "4", "-benchmark"}, nil},
			{nil, map[string]string{"BCRYPT_COST": "4", "BENCHMARK": "true"}},
		} {
			cfg, err := parseConfig(c.args, env(c.env), &bytes.Buffer{})
			if err != nil || cfg.BcryptCost != 4 || !cfg.Benchmark {
				t.Errorf("%v %v: got %+v, %v", c.args, c.env, cfg, err)
			}
		}
		if cfg, err := parseConfig([]string{"-bcrypt-cost", "12"}, env(nil), &bytes.Buffer{}); err != nil || cfg.BcryptCost != 12 {
			t.Errorf("-bcrypt-cost 12: got %v", err)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestClusterCommand(t *testing.T) {
	t.Run("without FUSE it stops at once, saying what to install", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir()) // no fusermount3 to be found
		start := time.Now()
		err := run(context.Background(), []string{"cluster"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "fuse3") || time.Since(start) > 2*time.Second {
			t.Fatalf("got %v after %v", err, time.Since(start))
		}
	})
	t.Run("bad -n, -base-port and -lease are refused by name", func(t *testing.T) {
		for _, args := range [][]string{{"cluster", "-n", "0"}, {"cluster", "-base-port", "70000"}, {"cluster", "-lease", "raft"}} {
			err := run(context.Background(), args, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), args[1]) {
				t.Errorf("%v: got %v", args, err)
			}
		}
	})
}
