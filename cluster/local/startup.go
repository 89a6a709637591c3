package local

import (
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
	"strconv"
	"strings"
	"time"
)

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

// defaults fills in the fields left empty, and refuses a Lease it does
// not know.
func (l *Launcher) defaults() error {
	switch l.Lease {
	case "":
		l.Lease = LeaseConsul
	case LeaseConsul, LeaseStatic:
	default:
		return fmt.Errorf("lease %q: want %s or %s", l.Lease, LeaseConsul, LeaseStatic)
	}
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
	l.handoffToken = randomHex(32)
	if l.GossipKey == "" {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		l.GossipKey = base64.StdEncoding.EncodeToString(k)
	}
	return nil
}

// startAll starts every node. With a Consul lease node1 starts alone and
// the others once it holds the lease, so that node1 is the first primary,
// as with a static lease.
func (l *Launcher) startAll(ctx context.Context) error {
	l.exited = make(chan *nodeProc, len(l.nodes))
	deadline := time.Now().Add(l.ReadyTimeout)
	for i, n := range l.nodes {
		if err := l.start(n); err != nil {
			return err
		}
		if i > 0 || l.Lease != LeaseConsul {
			continue
		}
		l.mu.Lock()
		done := n.done
		l.mu.Unlock()
		if err := l.waitPrimary(ctx, n.name, deadline, done); err != nil {
			return fmt.Errorf("%s did not start: %w%s", n.name, err, n.logTail(8))
		}
	}
	return nil
}

// waitAllReady waits until every node answers /readyz and prints each
// node's URL and role.
func (l *Launcher) waitAllReady(ctx context.Context) error {
	deadline := time.Now().Add(l.ReadyTimeout)
	for _, n := range l.nodes {
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
		if n.name == l.Primary() {
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
			dial := func(ctx context.Context) (net.Conn, error) { return nw.dial(ctx, ns, target) }
			f, err := startForward(from, dial, l.Logger)
			if err != nil {
				return fmt.Errorf("forward %s to node%d: %w", from, i, err)
			}
			l.fwds = append(l.fwds, f)
		}
	}
	return nil
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
		if err := pause(ctx, exited, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("not ready in time: %s", last)
}

// pause waits d, or less: it returns ctx's error when ctx ends and
// errExited when exited closes (a nil exited never does).
func pause(ctx context.Context, exited <-chan struct{}, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-exited:
		return errExited
	case <-time.After(d):
		return nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
