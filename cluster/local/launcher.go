package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"notesync/cluster/local/lease"
)

// Launcher runs a local cluster of N nodes on one Linux machine, each node
// under its own real LiteFS mount started as the exec child of LiteFS, the
// way the container runs it. The lease is the launcher's own Consul lease
// server, every node a candidate and node1 the first primary, or a static
// lease held by node1 (Lease). The nodes gossip over loopback, or with
// Netns each on a network of its own, and share one session secret. Open
// starts the nodes, Run starts again a node that dies, and Close stops
// every node and unmounts every mount.
type Launcher struct {
	N        int
	BasePort int    // HTTP port of node1; node i listens on BasePort+i-1
	Host     string // loopback address to bind (127.0.0.1)
	Dir      string // state of every node, under Dir/nodeI
	// Netns runs node i in a network namespace of its own at 10.77.0.i,
	// reached from the machine at Host on its usual port (docs/PROTOCOL.md
	// §10); Partition, OneWay and Heal then cut links between nodes. It
	// needs Linux and root (CheckNetns).
	Netns bool
	// Lease is LeaseConsul (the default) or LeaseStatic.
	Lease string
	// Input, if set, is read by Run for commands, one a line (see
	// Command); the answers go to Stdout.
	Input io.Reader
	// Exe is the notesync binary each LiteFS mount starts.
	Exe string
	// LiteFS is the litefs binary (`go tool -n litefs`).
	LiteFS string
	// Config is the path of litefs.yml.
	Config string
	// SessionSecret and GossipKey are shared by every node; generated when
	// empty.
	SessionSecret string
	GossipKey     string
	// ExtraEnv is added to every node's environment.
	ExtraEnv []string
	Stdout   io.Writer // URLs, roles, "cluster ready"
	Logger   *slog.Logger
	// ReadyTimeout bounds the wait for every node's /readyz.
	ReadyTimeout time.Duration

	// handoffToken lets Promote ask a primary for a handoff (-handoff-token).
	handoffToken string

	mu      sync.Mutex
	nodes   []*nodeProc
	exited  chan *nodeProc // nodes whose process ended, for Run
	lock    *dirLock
	stopped bool

	nsPrefix string         // with Netns: the names of this Dir's namespaces
	net      *network       // with Netns: the namespaces and the bridge
	fwds     []*portForward // with Netns: Host:port into each node's namespace

	faultMu sync.Mutex      // serialises changes to the cuts
	cuts    map[[2]int]bool // {from, to} node indexes whose packets drop

	leaseSrv *lease.Server  // with LeaseConsul: the lease
	relays   []*portForward // with Netns and LeaseConsul: node i's way to it
}

// nodeProc is one supervised LiteFS process with its app.
type nodeProc struct {
	index    int // 1-based
	name     string
	httpAddr string
	env      []string
	fuseDir  string
	logPath  string
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
}

// URL returns node i's HTTP base URL on this machine (1-based).
func (l *Launcher) URL(i int) string {
	return "http://" + l.hostAddr(i)
}

// hostAddr is where node i's HTTP server is reached from this machine:
// the node itself, or with Netns the launcher's forward into its
// namespace.
func (l *Launcher) hostAddr(i int) string {
	return net.JoinHostPort(l.Host, strconv.Itoa(l.BasePort+i-1))
}

// MetricsURL returns node i's metrics base URL on this machine (1-based):
// /metrics is served there, not on the node's public port.
func (l *Launcher) MetricsURL(i int) string {
	return "http://" + l.hostMetricsAddr(i)
}

// hostMetricsAddr is where node i's metrics are reached from this machine
// (with Netns, the launcher's forward).
func (l *Launcher) hostMetricsAddr(i int) string {
	return net.JoinHostPort(l.Host, strconv.Itoa(l.BasePort+300+i-1))
}

// nodeHost is the address node i binds: Host, or with Netns its own
// address in its namespace.
func (l *Launcher) nodeHost(i int) string {
	if l.Netns {
		return nodeIP(i)
	}
	return l.Host
}

// Ports of node i: HTTP at BasePort+i-1, LiteFS at +100, gossip at +200,
// metrics at +300.
func (l *Launcher) httpAddr(i int) string {
	return net.JoinHostPort(l.nodeHost(i), strconv.Itoa(l.BasePort+i-1))
}
func (l *Launcher) litefsAddr(i int) string {
	return net.JoinHostPort(l.nodeHost(i), strconv.Itoa(l.BasePort+100+i-1))
}
func (l *Launcher) gossipAddr(i int) string {
	return net.JoinHostPort(l.nodeHost(i), strconv.Itoa(l.BasePort+200+i-1))
}
func (l *Launcher) metricsAddr(i int) string {
	return net.JoinHostPort(l.nodeHost(i), strconv.Itoa(l.BasePort+300+i-1))
}

// Open takes the lock on Dir, clears what an earlier run left behind,
// starts every node and waits until all answer /readyz; then it prints each
// node's URL and role and "cluster ready". It refuses, saying why, while
// another launcher runs from Dir or an address it needs is taken, and
// fails naming the node and the end of its log when a node does not start.
func (l *Launcher) Open(ctx context.Context) error {
	if l.Netns {
		if err := CheckNetns(); err != nil {
			return err
		}
	}
	if err := CheckFUSE(); err != nil {
		return err
	}
	if err := l.defaults(); err != nil {
		return err
	}
	lock, err := lockDir(l.Dir, l.describe())
	if err != nil {
		return err
	}
	l.lock = lock
	if err := l.openLease(); err != nil {
		l.lock.release()
		return err
	}
	if err := l.prepare(); err != nil {
		l.closeLease()
		l.lock.release()
		return err
	}
	if err := l.openNetwork(); err != nil {
		l.Close()
		return err
	}
	if err := l.openLeaseRelays(); err != nil {
		l.Close()
		return err
	}
	if err := l.startAll(ctx); err != nil {
		l.Close()
		return err
	}
	if err := l.waitAllReady(ctx); err != nil {
		l.Close()
		return err
	}
	fmt.Fprintln(l.Stdout, "cluster ready")
	return nil
}

// Node returns node i's process id (1-based), for fault tests.
func (l *Launcher) Node(i int) (pid int, done <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.nodes[i-1]
	return n.cmd.Process.Pid, n.done
}

// Close stops every node (SIGTERM to LiteFS, which stops the app and
// unmounts; SIGKILL after 15 s), removes any mount left behind that no live
// process uses, releases Dir and prints what it stopped. Calling it again
// does nothing.
func (l *Launcher) Close() {
	l.mu.Lock()
	nodes := append([]*nodeProc(nil), l.nodes...)
	stopped := l.stopped
	l.stopped = true
	l.mu.Unlock()
	if stopped {
		return
	}
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
		}
		// The process group: an app left behind by a killed LiteFS.
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		msg := fmt.Sprintf("stopped %s (pid %d)", n.name, n.cmd.Process.Pid)
		if err := clearStaleMount(n.fuseDir, 0); err != nil {
			msg += "; left mounted: " + err.Error()
		}
		fmt.Fprintln(l.Stdout, msg)
	}
	for _, f := range append(l.fwds, l.relays...) {
		f.Close()
	}
	l.closeLease()
	if l.net != nil {
		if removed := l.net.close(); len(removed) > 0 {
			fmt.Fprintf(l.Stdout, "removed network namespaces %s\n", strings.Join(removed, " "))
		}
	}
	l.lock.release()
	if len(nodes) > 0 {
		fmt.Fprintln(l.Stdout, "cluster stopped")
	}
}

// Namespaces names the network namespaces of a cluster started with
// Netns, the bridge's first (for `ip netns exec NAME ...`).
func (l *Launcher) Namespaces() []string {
	if l.net == nil {
		return nil
	}
	return l.net.names()
}
