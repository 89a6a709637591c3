package e2e

import (
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"notesync/internal/localcluster"
	"notesync/internal/testenv"
)

// singleNode is one node of the built binary, as `notesync` starts
// without LiteFS: on a loopback port of its own and a temporary data
// dir, with an empty environment. It is startCluster's counterpart for
// the tests that need one node.
type singleNode struct {
	URL     string
	DataDir string

	exe, addr string
	args      []string // more flags for the binary
	cmd       *exec.Cmd
	out       testenv.SyncBuffer // its stdout and stderr
	exited    chan error
}

// startNode builds the binary and starts a node of it, with more flags
// args, which it stops when the test ends.
func startNode(t testing.TB, args ...string) *singleNode {
	t.Helper()
	exe, err := localcluster.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &singleNode{exe: exe, addr: l.Addr().String(), args: args, DataDir: filepath.Join(t.TempDir(), "data")}
	l.Close()
	n.URL = "http://" + n.addr
	t.Cleanup(func() {
		n.Stop(t)
		if t.Failed() {
			t.Logf("node output:\n%s", n.out.String())
		}
	})
	n.Start(t)
	return n
}

// Start starts the node (again, after Stop: same address, same data dir)
// and returns once it answers /healthz.
func (n *singleNode) Start(t testing.TB) {
	t.Helper()
	n.cmd = exec.Command(n.exe, append([]string{"-http-addr", n.addr, "-data-dir", n.DataDir, "-log-level", "warn"}, n.args...)...)
	n.cmd.Env = []string{}
	n.cmd.Stdout, n.cmd.Stderr = &n.out, &n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	n.exited = exited
	go func() { exited <- n.cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := http.Get(n.URL + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			n.cmd = nil
			t.Fatalf("node did not start: %v\n%s", err, n.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("node did not start within 20 s")
		}
	}
}

// Stop shuts the node down with SIGTERM, as a person's Ctrl-C or Fly.io
// would, and waits for it; a node that exits with an error, or not within
// 20 s, fails the test.
func (n *singleNode) Stop(t testing.TB) {
	t.Helper()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.exited:
		if err != nil {
			t.Errorf("node stopped with error: %v", err)
		}
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
		t.Error("node did not stop within 20 s")
	}
	n.cmd = nil
}
