package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// network is the private network of a cluster started with -netns
// (docs/PROTOCOL.md §10): each node in a network namespace of its own at
// 10.77.0.i, the namespaces joined by a bridge that lives in a namespace of
// its own, and by nothing else.
//
//	<prefix>node1              <prefix>bridge              <prefix>node2
//	10.77.0.1 eth0 ── veth ── node1 ┐        ┌ node2 ── veth ── eth0 10.77.0.2
//	                                └─ br0 ──┘
//
// No address or route is added to the machine's own namespace, so nothing
// can leave the machine; the launcher reaches a node by dialling from a
// thread that joined the node's namespace (see portForward). Cuts between
// nodes are nftables rules on the bridge (table bridge notesync), real
// kernel filtering that never touches the launcher's own connections.
//
// Namespaces are named <prefix>bridge and <prefix>nodeI, where the prefix
// comes from the cluster's data directory: a later start from the same
// directory finds what a crashed run left, and never touches the
// namespaces of another cluster.
type network struct {
	prefix string
	n      int
	host   *os.File   // this process's own network namespace
	bridge *os.File   // the bridge's namespace
	nodes  []*os.File // node i's namespace is nodes[i-1]
}

// netnsDir is where `ip netns` keeps named network namespaces.
const netnsDir = "/run/netns"

// nodeIP is node i's address inside the cluster's network.
func nodeIP(i int) string { return "10.77.0." + strconv.Itoa(i) }

// netnsPrefix is the name prefix of the namespaces of the cluster whose
// state is in dir.
func netnsPrefix(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	return "notesync-" + hex.EncodeToString(sum[:4]) + "-", nil
}

func (nw *network) bridgeName() string    { return nw.prefix + "bridge" }
func (nw *network) nodeName(i int) string { return nw.prefix + "node" + strconv.Itoa(i) }

// names lists every namespace of the network, the bridge's first.
func (nw *network) names() []string {
	names := []string{nw.bridgeName()}
	for i := 1; i <= nw.n; i++ {
		names = append(names, nw.nodeName(i))
	}
	return names
}

// openNetwork creates the namespaces, the bridge and a veth pair per node,
// and the (empty) table of cuts. On error it removes what it made.
func openNetwork(prefix string, n int) (nw *network, err error) {
	nw = &network{prefix: prefix, n: n}
	defer func() {
		if err != nil {
			nw.close()
		}
	}()
	if nw.host, err = os.Open("/proc/self/ns/net"); err != nil {
		return nw, fmt.Errorf("open this process's network namespace: %w", err)
	}
	for _, name := range nw.names() {
		if err := runIP("netns", "add", name); err != nil {
			return nw, err
		}
		f, err := os.Open(filepath.Join(netnsDir, name))
		if err != nil {
			return nw, fmt.Errorf("open network namespace %s: %w", name, err)
		}
		if name == nw.bridgeName() {
			nw.bridge = f
		} else {
			nw.nodes = append(nw.nodes, f)
		}
		// IPv4 only: a node sees its one address, no IPv6 link-local.
		if err := nw.in(f, disableIPv6); err != nil {
			return nw, fmt.Errorf("network namespace %s: %w", name, err)
		}
	}
	if err := runIPBatch(nw.bridgeName(), "link set lo up", "link add br0 type bridge", "link set br0 up"); err != nil {
		return nw, err
	}
	for i := 1; i <= n; i++ {
		veth := "node" + strconv.Itoa(i) // its end on the bridge
		if err := runIPBatch(nw.nodeName(i),
			"link set lo up",
			"link add eth0 type veth peer name "+veth+" netns "+nw.bridgeName(),
			"addr add "+nodeIP(i)+"/24 dev eth0",
			"link set eth0 up",
		); err != nil {
			return nw, err
		}
		if err := runIPBatch(nw.bridgeName(), "link set "+veth+" master br0", "link set "+veth+" up"); err != nil {
			return nw, err
		}
	}
	return nw, nw.applyCuts(nil)
}

// close removes the namespaces (and with them the links, the bridge and
// the table of cuts) and returns their names.
func (nw *network) close() []string {
	var removed []string
	for _, f := range append(nw.nodes, nw.bridge, nw.host) {
		if f != nil {
			f.Close()
		}
	}
	for _, name := range nw.names() {
		if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
			continue
		}
		if err := runIP("netns", "del", name); err == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

// removeLeftovers deletes the namespaces with prefix that a crashed run
// left, and returns their names. A namespace that still holds a live
// process is left alone: after waiting up to wait (a killed launcher's
// nodes take a moment to stop), it fails naming the processes.
func removeLeftovers(prefix string, wait time.Duration) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for {
			pids := netnsPids(filepath.Join(netnsDir, name))
			if len(pids) == 0 {
				break
			}
			if !time.Now().Before(deadline) {
				return removed, fmt.Errorf("network namespace %s, left from an earlier run, still holds %s: stop it (kill %s), then start again",
					name, describeProcs(pids), joinInts(pids, " "))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := runIP("netns", "del", name); err != nil {
			return removed, err
		}
		removed = append(removed, name)
	}
	return removed, nil
}

// applyCuts replaces the rules on the bridge with one drop rule per cut,
// in one nftables transaction.
func (nw *network) applyCuts(cuts [][2]int) error {
	var b strings.Builder
	b.WriteString("add table bridge notesync\nflush table bridge notesync\n")
	b.WriteString("add chain bridge notesync links { type filter hook forward priority 0; policy accept; }\n")
	for _, c := range cuts {
		fmt.Fprintf(&b, "add rule bridge notesync links ip saddr %s ip daddr %s counter drop\n", nodeIP(c[0]), nodeIP(c[1]))
	}
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := nw.in(nw.bridge, cmd.Run); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", nw.bridgeName(), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// in runs fn on an OS thread that has joined the namespace ns; sockets
// that fn creates and processes that it starts stay in ns.
func (nw *network) in(ns *os.File, fn func() error) error {
	return inNetns(nw.host, ns, fn)
}

// dial connects to target (host:port) from inside the namespace ns.
func (nw *network) dial(ctx context.Context, ns *os.File, target string) (conn net.Conn, err error) {
	err = nw.in(ns, func() error {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", target)
		return err
	})
	return conn, err
}

// disableIPv6 turns IPv6 off in the calling thread's network namespace.
func disableIPv6() error {
	for _, conf := range []string{"all", "default"} {
		err := os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/disable_ipv6", []byte("1"), 0o644)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// runIP runs `ip args...`.
func runIP(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// runIPBatch runs ip commands inside the namespace ns, in one process.
func runIPBatch(ns string, cmds ...string) error {
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}
