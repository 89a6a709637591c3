//go:build linux

package lease_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/superfly/litefs"

	"notesync/cluster/local/lease"
	"notesync/internal/localcluster"
	"notesync/internal/testenv"
)

// TestMount runs two real `litefs mount` processes under a Consul lease on
// the server, with the local cluster's TTL and lock delay, and moves the
// primary every way the cluster will: a handoff (POST /promote), a SIGKILL
// and a SIGTERM.
func TestMount(t *testing.T) {
	testenv.NeedFUSE(t)
	b, err := localcluster.Find("") // only its LiteFS: no notesync runs here
	if err != nil {
		t.Fatal(err)
	}
	s := openServer(t)
	n1, n2 := newMountNode(t, b.LiteFS, s, "node1"), newMountNode(t, b.LiteFS, s, "node2")

	n1.start(t)
	n1.waitInfo(t, 20*time.Second, "node1 becomes primary", isPrimary)
	n2.start(t)
	n2.waitInfo(t, 20*time.Second, "node2 replicates from node1", replicaOf("node1"))

	t.Run("promote hands the lease to a replica", func(t *testing.T) {
		resp, err := http.Post("http://"+n2.addr+"/promote", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /promote: %s", resp.Status)
		}
		n2.waitInfo(t, 5*time.Second, "node2 becomes primary", isPrimary)
		n1.waitInfo(t, 5*time.Second, "node1 replicates from node2", replicaOf("node2"))
	})

	t.Run("a SIGKILLed primary is replaced within the TTL plus 2 s", func(t *testing.T) {
		killed := n2.signal(t, syscall.SIGKILL)
		bound := lease.DefaultTTL + 2*time.Second
		took := n1.waitInfo(t, bound+5*time.Second, "node1 becomes primary", isPrimary).Sub(killed)
		t.Logf("new primary %v after SIGKILL (TTL %v, lock delay %v)", took, lease.DefaultTTL, lease.DefaultLockDelay)
		if took > bound {
			t.Fatalf("new primary after %v, want within %v", took, bound)
		}
	})

	t.Run("a primary stopped with SIGTERM releases the lease at once", func(t *testing.T) {
		n2.start(t)
		n2.waitInfo(t, 20*time.Second, "node2 replicates from node1", replicaOf("node1"))
		stopped := n1.signal(t, syscall.SIGTERM)
		bound := 3 * time.Second // LiteFS's reconnect delay (1 s), and its shutdown
		took := n2.waitInfo(t, bound+5*time.Second, "node2 becomes primary", isPrimary).Sub(stopped)
		t.Logf("new primary %v after SIGTERM", took)
		if took > bound {
			t.Fatalf("new primary after %v, want within %v: no lock delay after a release", took, bound)
		}
	})
}

func isPrimary(info litefs.NodeInfo) bool { return info.IsPrimary }

func replicaOf(name string) func(litefs.NodeInfo) bool {
	return func(info litefs.NodeInfo) bool { return !info.IsPrimary && info.Primary.Hostname == name }
}

// mountNode is one `litefs mount` with its own directories, on a loopback
// address of its own.
type mountNode struct {
	name, addr, dir, bin string
	cmd                  *exec.Cmd
	exited               chan struct{}
}

func newMountNode(t *testing.T, bin string, s *lease.Server, name string) *mountNode {
	t.Helper()
	n := &mountNode{name: name, dir: t.TempDir(), bin: bin}
	ln, err := net.Listen("tcp", localcluster.RandomLoopback()+":0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = ln.Addr().String()
	ln.Close()
	config := fmt.Sprintf(`fuse:
  dir: %q
data:
  dir: %q
http:
  addr: %q
lease:
  type: consul
  hostname: %q
  advertise-url: "http://%s"
  candidate: true
  consul:
    url: %q
    key: "litefs/mount-test"
    ttl: %q
    lock-delay: %q
`, n.fuseDir(), filepath.Join(n.dir, "data"), n.addr, name, n.addr, s.URL(),
		lease.DefaultTTL.String(), lease.DefaultLockDelay.String())
	if err := os.WriteFile(filepath.Join(n.dir, "litefs.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *mountNode) fuseDir() string { return filepath.Join(n.dir, "fuse") }

// start starts the node's LiteFS, unmounting what a killed one left.
func (n *mountNode) start(t *testing.T) {
	t.Helper()
	n.unmount()
	if err := os.MkdirAll(n.fuseDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(n.dir, "litefs.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	n.cmd = exec.Command(n.bin, "mount", "-config", filepath.Join(n.dir, "litefs.yml"))
	n.cmd.Stdout, n.cmd.Stderr = log, log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", n.name, err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait() // a signalled LiteFS exits with an error
		close(exited)
	}(n.cmd, n.exited)
}

// signal sends sig to the node's LiteFS by its PID, waits for it to exit
// and returns when it was sent.
func (n *mountNode) signal(t *testing.T, sig syscall.Signal) time.Time {
	t.Helper()
	at := time.Now()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", n.name, err)
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still runs 10 s after %v", n.name, sig)
	}
	return at
}

// stop ends the node's LiteFS if it runs, removes its mount, and on a
// failure shows its log.
func (n *mountNode) stop(t *testing.T) {
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-n.exited:
			case <-time.After(5 * time.Second):
				_ = n.cmd.Process.Kill()
				<-n.exited
			}
		}
	}
	n.unmount()
	if t.Failed() {
		b, _ := os.ReadFile(filepath.Join(n.dir, "litefs.log"))
		t.Logf("%s's LiteFS log:\n%s", n.name, b[max(0, len(b)-4000):])
	}
}

// unmount removes the node's FUSE mount, if there is one.
func (n *mountNode) unmount() {
	_ = exec.Command("fusermount3", "-u", "-z", n.fuseDir()).Run() // fails when not mounted
}

// waitInfo polls the node's GET /info until ok holds, for at most limit,
// and returns when it did.
func (n *mountNode) waitInfo(t *testing.T, limit time.Duration, what string, ok func(litefs.NodeInfo) bool) time.Time {
	t.Helper()
	return waitFor(t, limit, what, func() bool {
		resp, err := http.Get("http://" + n.addr + "/info")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		var info litefs.NodeInfo
		if _, err := buf.ReadFrom(resp.Body); err != nil || json.Unmarshal(buf.Bytes(), &info) != nil {
			return false
		}
		return ok(info)
	})
}
