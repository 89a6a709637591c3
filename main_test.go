package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testNode is one notesync node started in-process by serve(), as `go run .`
// would start it, on a loopback port and a temp data dir.
type testNode struct {
	URL     string
	DataDir string
	cfg     *config
	stop    context.CancelFunc
	done    chan error
}

type nodeOption func(*config)

// withAddr pins the node to an address, so that a restarted node is found
// where its clients left it.
func withAddr(addr string) nodeOption { return func(c *config) { c.HTTPAddr = addr } }

// withDataDir reuses a data dir (a restart).
func withDataDir(dir string) nodeOption { return func(c *config) { c.DataDir = dir; c.DBPath = "" } }

// startNode starts a node and stops it when the test ends.
func startNode(t testing.TB, opts ...nodeOption) *testNode {
	t.Helper()
	cfg, err := parseConfig([]string{"-http-addr", "127.0.0.1:0", "-data-dir", t.TempDir(), "-log-level", "warn"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BcryptCost = bcrypt.MinCost
	cfg.DBPath = ""
	for _, o := range opts {
		o(cfg)
	}
	if cfg.DBPath == "" {
		cfg.DBPath = cfg.DataDir + "/notesync.db"
	}
	ready := make(chan string, 1)
	cfg.ready = ready
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{DataDir: cfg.DataDir, cfg: cfg, stop: cancel, done: make(chan error, 1)}
	logOut := io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	go func() { n.done <- serve(ctx, cfg, io.Discard, logOut) }()
	select {
	case addr := <-ready:
		n.URL = "http://" + addr
	case err := <-n.done:
		cancel()
		t.Fatalf("node did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("node did not start within 20 s")
	}
	t.Cleanup(func() { n.Stop(t) })
	return n
}

// Stop shuts the node down (as SIGTERM would) and waits for it.
func (n *testNode) Stop(t testing.TB) {
	t.Helper()
	if n.stop == nil {
		return
	}
	n.stop()
	n.stop = nil
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("node stopped with error: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("node did not stop within 20 s")
	}
}

// client is an HTTP client with its own cookie jar: one browser.
type client struct {
	t    testing.TB
	base string
	http *http.Client
}

func newClient(t testing.TB, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{
		Jar:     jar,
		Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// signup creates an account and keeps its session cookie.
func (c *client) signup(username, password string) {
	c.t.Helper()
	resp := c.form("/signup", url.Values{"username": {username}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("signup %s: status %d, want 303", username, resp.StatusCode)
	}
}

func (c *client) form(path string, v url.Values) *http.Response {
	c.t.Helper()
	resp, err := c.http.PostForm(c.base+path, v)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// do sends a request and returns the response with its body read.
func (c *client) do(method, path, contentType, body string, header ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// cookieHeader returns the Cookie header this client sends to base.
func (c *client) cookieHeader() string {
	u, _ := url.Parse(c.base)
	var parts []string
	for _, ck := range c.http.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}
