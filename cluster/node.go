package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
)

// Node is this node's place in the cluster, as the rest of the node sees
// it: the view of the cluster (Members, Primary, Replication and Ready,
// for /api/cluster and /readyz), and what stands in front of the app
// because of it: Pin, which sends a tab pinned to another machine there
// (on Fly.io), and Forward, which sends a write that reaches a replica to
// the primary. Set the fields, then call the methods from any goroutine.
type Node struct {
	// Name and Region are this node's; Machine is its Fly machine id ("":
	// not on Fly.io, where writes are proxied rather than replayed).
	Name, Region, Machine string
	// Secret signs forwarded writes; every node of the cluster has it.
	Secret []byte
	// LiteFS is the mount the database lives on: the role, and this
	// node's position.
	LiteFS *LiteFS
	// Changes gives the primary's position as its announcements said.
	Changes *Changes
	// Acks says where each node's copy is, and what the primary answered
	// (nil without LiteFS).
	Acks *Acks
	// Gossip is the membership, nil on a node without peers.
	Gossip *Membership
	// Self returns what this node gossips about itself.
	Self func() Meta
	// NodeLocal names writes that change only this node's own state
	// (nothing in the database), which are never forwarded.
	NodeLocal func(*http.Request) bool
	Logger    *slog.Logger
	// HoldWrites, if set, stops every write to the database, once those
	// in flight end, until release (HandOff).
	HoldWrites func(context.Context) (release func(), err error)

	fwd        *Forwarder // Forward's, which Send signs with
	gate       writeGate  // holds writes while the lease is handed off
	handingOff sync.Mutex // held by HandOff
}

// Members lists every node of the cluster, this one included.
func (n *Node) Members() []Member {
	if n.Gossip == nil {
		return []Member{n.self()}
	}
	return n.Gossip.Members()
}

func (n *Node) self() Member {
	m := n.Self()
	return Member{Name: n.Name, Addr: m.HTTP, State: "alive", Meta: m}
}

// Primary names the node that takes writes, "" when none is known.
func (n *Node) Primary() string {
	p, _ := n.primary()
	return p.Name
}

// primary returns the member that holds the LiteFS lease, if known.
func (n *Node) primary() (Member, bool) {
	if n.LiteFS.IsPrimary() {
		m := n.self()
		m.Addr = ""
		return m, true
	}
	if n.Gossip == nil {
		return Member{}, false
	}
	return n.Gossip.Primary(n.LiteFS.Primary())
}

// Replication describes this node's copy of the database and whether it
// hears from the primary, for /readyz and /api/cluster (nil without
// LiteFS).
func (n *Node) Replication() *Replication {
	if !n.LiteFS.Enabled() {
		return nil
	}
	var view PrimaryView
	if n.Gossip != nil {
		view = n.Gossip.PrimaryView(n.LiteFS.Primary())
		// Its announcements are fresher than its metadata.
		if txid, from := n.Changes.PrimaryTXID(); from == view.Name && txid > view.TXID {
			view.TXID = txid
		}
	}
	r := n.LiteFS.Replication(view)
	return &r
}

// Acknowledgement is what the primary says of the writes it answered,
// and where each other node's copy is (nil without LiteFS).
func (n *Node) Acknowledgement() *AckStatus {
	if n.Acks == nil {
		return nil
	}
	st := n.Acks.Status()
	return &st
}

// Ready reports whether the LiteFS mount is up and the node has joined
// its peers, for /readyz.
func (n *Node) Ready(context.Context) error {
	if err := n.LiteFS.Ready(); err != nil {
		return err
	}
	if n.Gossip != nil && !n.Gossip.Joined() {
		return errNotJoined
	}
	return nil
}

var errNotJoined = errors.New("not joined to the cluster yet")

// Forward returns h behind write forwarding (Forwarder) on a LiteFS
// mount: while this node is a replica, writes go to the primary, proxied
// locally and answered with fly-replay on Fly.io. Without LiteFS every
// node is the primary, and h is returned as is.
func (n *Node) Forward(h http.Handler) http.Handler {
	if !n.LiteFS.Enabled() {
		return h
	}
	f := &Forwarder{
		Secret:    n.Secret,
		Node:      n.Name,
		IsPrimary: n.LiteFS.IsPrimary,
		NodeLocal: n.NodeLocal,
		PrimaryURL: func() string {
			if p, ok := n.primary(); ok {
				return p.HTTP
			}
			return ""
		},
		Logger: n.Logger,
		gate:   &n.gate,
	}
	if n.Machine != "" {
		f.FlyReplay = func() string {
			if p, ok := n.primary(); ok && p.Machine != "" {
				return "instance=" + p.Machine
			}
			return ""
		}
	}
	n.fwd = f
	return f.Wrap(h)
}

// Pin returns h behind the pin check (Pinner) on Fly.io: a request pinned
// to another machine is replayed there. Off Fly.io, h is returned as is.
func (n *Node) Pin(h http.Handler) http.Handler {
	if n.Machine == "" {
		return h
	}
	p := &Pinner{
		Node: n.Name, Machine: n.Machine, Region: n.Region,
		MachineOf: func(name string) (string, bool) {
			if n.Gossip == nil {
				return "", false
			}
			for _, m := range n.Gossip.Members() {
				if m.Name == name && m.State == "alive" {
					return m.Machine, true
				}
			}
			return "", false
		},
	}
	return p.Wrap(h)
}
