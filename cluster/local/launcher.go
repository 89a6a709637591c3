package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Launcher runs a local cluster of N nodes on one Linux machine, each node
// under its own real LiteFS mount (static lease, node1 primary) started as
// the exec child of LiteFS, the way the container runs it. The nodes gossip
// over loopback, or with Netns each on a network of its own, and share one
// session secret. A node that dies is started again; Run returns after
// stopping every node and unmounting every mount.
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
	// Input, if set, is read by Run for fault commands, one a line (see
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

	mu      sync.Mutex
	nodes   []*nodeProc
	exited  chan *nodeProc // nodes whose process ended, for Supervise
	lock    *dirLock
	stopped bool

	nsPrefix string         // with Netns: the names of this Dir's namespaces
	net      *network       // with Netns: the namespaces and the bridge
	fwds     []*portForward // with Netns: Host:port into each node's namespace

	faultMu sync.Mutex      // serialises changes to the cuts
	cuts    map[[2]int]bool // {from, to} node indexes whose packets drop
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

// ErrNoFUSE means the machine cannot mount LiteFS.
var ErrNoFUSE = errors.New("FUSE is not available: install fuse3 (apt-get install fuse3, which provides fusermount3) and make sure /dev/fuse exists")

// CheckFUSE reports whether LiteFS can mount here.
func CheckFUSE() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return ErrNoFUSE
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return ErrNoFUSE
	}
	return nil
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

// Start takes the lock on Dir, clears what an earlier run left behind,
// starts every node and waits until all answer /readyz; then it prints each
// node's URL and role and "cluster ready". It refuses, saying why, while
// another launcher runs from Dir or an address it needs is taken, and
// fails naming the node and the end of its log when a node does not start.
func (l *Launcher) Start(ctx context.Context) error {
	if l.Netns {
		if err := CheckNetns(); err != nil {
			return err
		}
	}
	if err := CheckFUSE(); err != nil {
		return err
	}
	l.defaults()
	lock, err := lockDir(l.Dir, l.describe())
	if err != nil {
		return err
	}
	l.lock = lock
	if err := l.prepare(); err != nil {
		l.lock.release()
		return err
	}
	if err := l.openNetwork(); err != nil {
		l.Stop()
		return err
	}
	l.exited = make(chan *nodeProc, len(l.nodes))
	for _, n := range l.nodes {
		if err := l.start(n); err != nil {
			l.Stop()
			return err
		}
	}
	if err := l.waitAllReady(ctx); err != nil {
		l.Stop()
		return err
	}
	fmt.Fprintln(l.Stdout, "cluster ready")
	return nil
}

// prepare clears what an earlier run left (namespaces, mounts), checks
// the addresses and describes the nodes.
func (l *Launcher) prepare() error {
	if l.Netns {
		prefix, err := netnsPrefix(l.Dir)
		if err != nil {
			return err
		}
		removed, err := removeLeftovers(prefix, 10*time.Second)
		if len(removed) > 0 {
			fmt.Fprintf(l.Stdout, "removed network namespaces left by an earlier run: %s\n", strings.Join(removed, " "))
		}
		if err != nil {
			return err
		}
		l.nsPrefix = prefix
	}
	if err := l.checkAddrs(); err != nil {
		return err
	}
	for i := 1; i <= l.N; i++ {
		n, err := l.newNode(i)
		if err != nil {
			return err
		}
		l.nodes = append(l.nodes, n)
	}
	return nil
}

// describe names this launcher for the lock file: who holds Dir.
func (l *Launcher) describe() string {
	ports := strconv.Itoa(l.BasePort)
	if l.N > 1 {
		ports += "-" + strconv.Itoa(l.BasePort+l.N-1)
	}
	return fmt.Sprintf("pid %d, http://%s:%s", os.Getpid(), l.Host, ports)
}

// checkAddrs fails, naming the address, when one the nodes will bind on
// this machine is taken: the nodes would only say so in their logs. With
// Netns only the forwarded HTTP ports are on the machine.
func (l *Launcher) checkAddrs() error {
	for i := 1; l.Netns && i <= l.N; i++ {
		for _, addr := range []string{l.hostAddr(i), l.hostMetricsAddr(i)} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("%s is taken (another cluster or program listens there): stop it, or choose another -base-port", addr)
			}
			ln.Close()
		}
	}
	for i := 1; !l.Netns && i <= l.N; i++ {
		for _, addr := range []string{l.httpAddr(i), l.litefsAddr(i), l.gossipAddr(i), l.metricsAddr(i)} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("%s is taken (another cluster or program listens there): stop it, or choose another -base-port", addr)
			}
			ln.Close()
		}
		pc, err := net.ListenPacket("udp", l.gossipAddr(i))
		if err != nil {
			return fmt.Errorf("udp %s is taken (another cluster or program uses it): stop it, or choose another -base-port", l.gossipAddr(i))
		}
		pc.Close()
	}
	return nil
}

// defaults fills in the fields left empty.
func (l *Launcher) defaults() {
	if l.Host == "" {
		l.Host = "127.0.0.1"
	}
	if l.ReadyTimeout == 0 {
		l.ReadyTimeout = 90 * time.Second
	}
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
	if l.Stdout == nil {
		l.Stdout = io.Discard
	}
	if l.SessionSecret == "" {
		l.SessionSecret = randomHex(32)
	}
	if l.GossipKey == "" {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		l.GossipKey = base64.StdEncoding.EncodeToString(k)
	}
}

// newNode describes node i (1-based) and creates its directories; a stale
// mount is cleared first (a dead FUSE mount cannot even be looked at).
func (l *Launcher) newNode(i int) (*nodeProc, error) {
	name := "node" + strconv.Itoa(i)
	base, err := filepath.Abs(filepath.Join(l.Dir, name))
	if err != nil {
		return nil, err
	}
	n := &nodeProc{
		index:    i,
		name:     name,
		httpAddr: l.httpAddr(i),
		fuseDir:  filepath.Join(base, "fuse"),
		logPath:  filepath.Join(base, "node.log"),
	}
	n.env = append(os.Environ(), l.nodeEnv(i, n, base)...)
	n.env = append(n.env, l.ExtraEnv...)
	if err := clearStaleMount(n.fuseDir, 10*time.Second); err != nil {
		return nil, err
	}
	for _, d := range []string{n.fuseDir, filepath.Join(base, "litefs"), filepath.Join(base, "app")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// nodeEnv is what node i's LiteFS (litefs.yml) and app read from the
// environment.
func (l *Launcher) nodeEnv(i int, n *nodeProc, base string) []string {
	var peers []string
	for j := 1; j <= l.N; j++ {
		peers = append(peers, l.gossipAddr(j))
	}
	primaryRegion := ""
	if i == 1 {
		primaryRegion = "local" // only node1 is a lease candidate
	}
	return []string{
		"LITEFS_DIR=" + n.fuseDir,
		"LITEFS_DATA_DIR=" + filepath.Join(base, "litefs"),
		"LITEFS_HTTP_ADDR=" + l.litefsAddr(i),
		"LITEFS_URL=http://" + l.litefsAddr(i),
		"LITEFS_LEASE_TYPE=static",
		// With a static lease every node names the primary's hostname
		// and URL; a replica reports its own values as the primary's.
		"LITEFS_LEASE_HOSTNAME=node1",
		"LITEFS_LEASE_ADVERTISE_URL=http://" + l.litefsAddr(1),
		"FLY_REGION=local",
		"PRIMARY_REGION=" + primaryRegion,
		"FLY_CONSUL_URL=",
		"FLY_APP_NAME=", // set, LiteFS would act as on Fly.io
		"FLY_MACHINE_ID=",
		"NOTESYNC_CMD=" + l.Exe,
		"NODE_NAME=" + n.name,
		"LITEFS_HOSTNAME=" + n.name,
		"HTTP_ADDR=" + n.httpAddr,
		"METRICS_ADDR=" + l.metricsAddr(i),
		"PUBLIC_URL=" + l.URL(i), // with Netns, not where the node listens
		"DATA_DIR=" + filepath.Join(base, "app"),
		"DATABASE_PATH=",
		"GOSSIP_BIND=" + l.gossipAddr(i),
		"PEERS=" + strings.Join(peers, ","),
		"GOSSIP_KEY=" + l.GossipKey,
		"SESSION_SECRET=" + l.SessionSecret,
	}
}

// waitAllReady waits until every node answers /readyz and prints each
// node's URL and role.
func (l *Launcher) waitAllReady(ctx context.Context) error {
	deadline := time.Now().Add(l.ReadyTimeout)
	for i, n := range l.nodes {
		l.mu.Lock()
		done := n.done
		l.mu.Unlock()
		if err := waitReady(ctx, l.URL(n.index), deadline, done); err != nil {
			if errors.Is(err, errExited) {
				err = fmt.Errorf("%w (%s)", err, n.cmd.ProcessState)
			}
			return fmt.Errorf("%s did not start: %w%s", n.name, err, n.logTail(8))
		}
		role := "replica"
		if i == 0 {
			role = "primary"
		}
		where := ""
		if l.Netns {
			where = fmt.Sprintf("  (%s in network namespace %s)", nodeIP(n.index), l.net.nodeName(n.index))
		}
		fmt.Fprintf(l.Stdout, "%s  %s  %s%s\n", n.name, l.URL(n.index), role, where)
	}
	return nil
}

// Run starts the cluster, restarts nodes that die, and stops everything
// when ctx ends.
func (l *Launcher) Run(ctx context.Context) error {
	if err := l.Start(ctx); err != nil {
		return err
	}
	if l.Input != nil {
		if l.Netns {
			fmt.Fprintf(l.Stdout, "type a fault command: %s\n", FaultCommands)
		}
		go l.serveCommands(l.Input)
	}
	l.Supervise(ctx)
	l.Stop()
	return nil
}

// Supervise restarts any node whose process exits, until ctx ends.
func (l *Launcher) Supervise(ctx context.Context) {
	for {
		var n *nodeProc
		select {
		case <-ctx.Done():
			return
		case n = <-l.exited:
		}
		l.Logger.Warn("node exited; restarting", "node", n.name, "log", n.logPath)
		// Its app may outlive a killed LiteFS: the whole process group goes.
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		err := clearStaleMount(n.fuseDir, 5*time.Second)
		if err == nil {
			err = l.start(n)
		}
		if err != nil {
			l.Logger.Error("restart node; trying again", "node", n.name, "err", err)
			l.exited <- n // room: each node is queued at most once
		}
	}
}

// start launches LiteFS for n, which mounts and starts the app.
func (l *Launcher) start(n *nodeProc) error {
	cmd := exec.Command(l.LiteFS, "mount", "-config", l.Config)
	cmd.Env = n.env
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = nodeProcAttr()
	startCmd := cmd.Start
	if l.Netns {
		ns := l.net.nodes[n.index-1]
		startCmd = func() error { return l.net.in(ns, cmd.Start) }
	}
	if err := startCmd(); err != nil {
		logf.Close()
		return fmt.Errorf("start litefs for %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
		select {
		case l.exited <- n:
		default:
		}
	}()
	l.mu.Lock()
	n.cmd, n.done = cmd, done
	l.mu.Unlock()
	return nil
}

// Node returns node i's process id (1-based), for fault tests.
func (l *Launcher) Node(i int) (pid int, done <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.nodes[i-1]
	return n.cmd.Process.Pid, n.done
}

// Stop stops every node (SIGTERM to LiteFS, which stops the app and
// unmounts; SIGKILL after 15 s), removes any mount left behind that no live
// process uses, releases Dir and prints what it stopped. Calling it again
// does nothing.
func (l *Launcher) Stop() {
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
	for _, f := range l.fwds {
		f.Close()
	}
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

// openNetwork, with Netns, creates the nodes' network and the forwards
// from Host into it.
func (l *Launcher) openNetwork() error {
	if !l.Netns {
		return nil
	}
	nw, err := openNetwork(l.nsPrefix, l.N)
	if err != nil {
		return err
	}
	l.net = nw
	for i := 1; i <= l.N; i++ {
		for _, fw := range [][2]string{{l.hostAddr(i), l.httpAddr(i)}, {l.hostMetricsAddr(i), l.metricsAddr(i)}} {
			ns, from, target := nw.nodes[i-1], fw[0], fw[1]
			dial := func(ctx context.Context) (conn net.Conn, err error) {
				err = nw.in(ns, func() error {
					conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", target)
					return err
				})
				return conn, err
			}
			f, err := startForward(from, dial, l.Logger)
			if err != nil {
				return fmt.Errorf("forward %s to node%d: %w", from, i, err)
			}
			l.fwds = append(l.fwds, f)
		}
	}
	return nil
}

// logTail returns the last n lines of the node's log, indented under a
// line naming the file, or "" when it has none.
func (n *nodeProc) logTail(lines int) string {
	b, err := os.ReadFile(n.logPath)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	all = all[max(0, len(all)-lines):]
	return fmt.Sprintf("; the end of %s:\n    %s", n.logPath, strings.Join(all, "\n    "))
}

// errExited means a node's LiteFS ended before the node was ready.
var errExited = errors.New("LiteFS exited")

// waitReady polls url/readyz until it answers 200 or deadline passes; it
// gives up at once when exited closes.
func waitReady(ctx context.Context, url string, deadline time.Time, exited <-chan struct{}) error {
	c := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.Get(url + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = strings.TrimSpace(string(b))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errExited
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready in time: %s", last)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// LiteFSBinary returns bin when it names a binary; otherwise it builds (or
// finds, cached) the LiteFS that go.mod's tool line pins, so that nothing
// needs installing. The binary runs directly rather than through
// `go tool`, whose wrapper would orphan LiteFS on SIGKILL.
func LiteFSBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	out, err := exec.Command("go", "tool", "-n", "litefs").Output()
	if err != nil {
		return "", fmt.Errorf("build litefs with `go tool -n litefs`: %w (set LITEFS_BIN to use another binary)", err)
	}
	return strings.TrimSpace(string(out)), nil
}
