package main

import (
	"context"
	"io"
	"os"
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
