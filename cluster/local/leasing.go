package local

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"notesync/cluster/local/lease"
)

// The lease a local cluster runs under (Launcher.Lease).
const (
	// LeaseConsul: the launcher serves a Consul lease on Host's loopback
	// (package lease) and every node is a candidate, so the primary moves
	// when it dies, stops or hands off (docs/PROTOCOL.md §11).
	LeaseConsul = "consul"
	// LeaseStatic: node1 is the primary for good and the others are never
	// candidates.
	LeaseStatic = "static"
)

const (
	// leaseKeyLocal is the lease key's name after "litefs/" (litefs.yml's
	// LITEFS_CONSUL_KEY_LOCAL).
	leaseKeyLocal = "local"
	// leaseRelayAddr is where, with Netns, a node reaches the lease
	// server: a relay on its namespace's own loopback.
	leaseRelayAddr = "127.0.0.1:8500"
)

// openLease, with LeaseConsul, starts the lease server. It listens on the
// machine's 127.0.0.1 whatever Host is: with Netns the nodes reach it
// through relays (openLeaseRelays).
func (l *Launcher) openLease() error {
	if l.Lease != LeaseConsul {
		return nil
	}
	s := &lease.Server{Logger: l.Logger}
	if err := s.Open(); err != nil {
		return err
	}
	l.leaseSrv = s
	return nil
}

// closeLease stops the lease server, if there is one.
func (l *Launcher) closeLease() {
	if l.leaseSrv != nil {
		l.leaseSrv.Close()
	}
}

// leaseEnv is what node i's LiteFS reads for its lease (litefs.yml).
func (l *Launcher) leaseEnv(i int) []string {
	if l.Lease == LeaseStatic {
		region := ""
		if i == 1 {
			region = "local" // only node1 is a lease candidate
		}
		return []string{
			"LITEFS_LEASE_TYPE=static",
			// With a static lease every node names the primary's hostname
			// and URL; a replica reports its own values as the primary's.
			"LITEFS_LEASE_HOSTNAME=node1",
			"LITEFS_LEASE_ADVERTISE_URL=http://" + l.litefsAddr(1),
			"PRIMARY_REGION=" + region,
			"FLY_CONSUL_URL=",
		}
	}
	url := l.leaseSrv.URL()
	if l.Netns {
		url = "http://" + leaseRelayAddr
	}
	return []string{
		"LITEFS_LEASE_TYPE=consul",
		"LITEFS_LEASE_HOSTNAME=" + nodeName(i),
		"LITEFS_LEASE_ADVERTISE_URL=http://" + l.litefsAddr(i),
		"PRIMARY_REGION=local", // every node is a candidate
		"FLY_CONSUL_URL=" + url,
		"LITEFS_CONSUL_KEY_LOCAL=" + leaseKeyLocal,
		"LITEFS_CONSUL_TTL=" + lease.DefaultTTL.String(),
		"LITEFS_CONSUL_LOCK_DELAY=" + lease.DefaultLockDelay.String(),
		// A node started again must not take the lease back.
		"LITEFS_LEASE_PROMOTE=false",
	}
}

// Primary names the node that holds the lease: node1 with a static lease,
// "" while no node holds a Consul lease (an election in progress).
func (l *Launcher) Primary() string {
	if l.Lease == LeaseStatic {
		return nodeName(1)
	}
	if l.leaseSrv == nil {
		return ""
	}
	v, ok := l.leaseSrv.Holder("litefs/" + leaseKeyLocal)
	if !ok {
		return ""
	}
	var info struct {
		Hostname string `json:"hostname"`
	}
	if err := json.Unmarshal(v, &info); err != nil {
		return ""
	}
	return info.Hostname
}

// waitPrimary waits until name holds the lease; it gives up when deadline
// passes, ctx ends or exited closes.
func (l *Launcher) waitPrimary(ctx context.Context, name string, deadline time.Time, exited <-chan struct{}) error {
	for l.Primary() != name {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not take the lease in time (primary: %q)", name, l.Primary())
		}
		if err := pause(ctx, exited, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// openLeaseRelays, with Netns and LeaseConsul, gives each node's namespace
// a relay to the lease server on its own loopback (leaseRelayAddr). A node
// that a partition cuts from every other node is cut from the lease server
// too: its relay refuses new connections and drops the ones it carries, so
// an isolated primary cannot renew and loses the lease.
func (l *Launcher) openLeaseRelays() error {
	if !l.Netns || l.Lease != LeaseConsul {
		return nil
	}
	target := l.leaseSrv.URL()[len("http://"):]
	for i := 1; i <= l.N; i++ {
		var ln net.Listener
		err := l.net.in(l.net.nodes[i-1], func() (err error) {
			ln, err = net.Listen("tcp", leaseRelayAddr)
			return err
		})
		if err != nil {
			return fmt.Errorf("lease relay for node%d: %w", i, err)
		}
		dial := func(ctx context.Context) (net.Conn, error) {
			if l.leaseCut(i) {
				return nil, fmt.Errorf("node%d is cut off by a partition", i)
			}
			return (&net.Dialer{}).DialContext(ctx, "tcp", target)
		}
		l.relays = append(l.relays, serveForward(ln, dial, l.Logger))
	}
	return nil
}

// leaseCut reports whether node i is cut, both ways, from every other
// node, and so from the lease server.
func (l *Launcher) leaseCut(i int) bool {
	l.faultMu.Lock()
	defer l.faultMu.Unlock()
	return l.isolated(i)
}

// isolated reports whether the cuts in force cut node i both ways from
// every other node. l.faultMu must be held.
func (l *Launcher) isolated(i int) bool {
	if l.N < 2 {
		return false
	}
	for j := 1; j <= l.N; j++ {
		if j != i && (!l.cuts[[2]int{i, j}] || !l.cuts[[2]int{j, i}]) {
			return false
		}
	}
	return true
}

// cutLeaseRelays drops the lease connections of every isolated node, as
// the partition drops its packets. l.faultMu must be held.
func (l *Launcher) cutLeaseRelays() {
	for i, r := range l.relays {
		if l.isolated(i + 1) {
			r.closeConns()
		}
	}
}

// leaseStatus is the lease half of the status command's answer.
func (l *Launcher) leaseStatus() string {
	if p := l.Primary(); p != "" {
		return "primary " + p
	}
	return "no primary (an election is under way)"
}
