package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"notesync/app/web"
	"notesync/cluster"
	"notesync/realtime"
)

// openMembership joins the gossip, when the node has peers to gossip with.
func (n *Node) openMembership() error {
	if n.cfg.GossipBind == "" {
		return nil
	}
	m := &cluster.Membership{
		Name:      n.cfg.Node,
		Bind:      n.cfg.GossipBind,
		Advertise: n.cfg.GossipAdvert,
		Peers:     n.cfg.Peers,
		Key:       n.cfg.GossipKey,
		WAN:       n.cfg.GossipWAN,
		Logger:    n.logger,
		MetaFunc:  n.meta,
		// The primary's commits: its position, and the lag to time.
		OnChanged:    n.changes.Announced,
		OnEndSession: func(id string) { n.sessions.EndHere(id, n.hub) },
		// Ephemeral messages and presence: realtime's own, carried.
		OnEphemeral: n.hub.Receive,
		OnJoin:      n.hub.PeerJoined,
		OnLeave:     n.hub.PeerLeft,
		State:       n.hub.PresenceState,
		MergeState:  n.hub.MergePresenceState,
	}
	if err := m.Open(); err != nil {
		return err
	}
	n.members = m
	n.hub.Peers = m
	return nil
}

var _ realtime.Peers = (*cluster.Membership)(nil)

// meta is what this node gossips about itself.
func (n *Node) meta() cluster.Meta {
	txid, _ := n.lfs.TXID()
	return cluster.Meta{
		Region:      n.cfg.Region,
		HTTP:        n.httpURL,
		Public:      n.cfg.PublicURL,
		TXID:        txid,
		LiteFS:      n.cfg.LiteFSHostname,
		Machine:     n.cfg.FlyMachineID,
		Connections: n.hub.Stats().Connections,
		Primary:     n.lfs.IsPrimary(),
	}
}

// refreshMeta re-gossips the metadata every few seconds (connection counts
// and roles change while running).
func (n *Node) refreshMeta(ctx context.Context) {
	if n.members == nil {
		return
	}
	every(ctx, 3*time.Second, func() { _ = n.members.RefreshMeta() })
}

// announceChanges tells the other nodes of each transaction this node
// commits as primary (cluster.Changes).
func (n *Node) announceChanges(ctx context.Context) {
	if n.members == nil {
		return
	}
	n.changes.Run(ctx, n.members.PublishChanged)
}

// endSession closes a session's sockets here and on every other node.
func (n *Node) endSession(id string) {
	n.sessions.EndHere(id, n.hub)
	if n.members != nil {
		n.members.PublishEndSession(id)
	}
}

// ready adds the LiteFS mount and cluster membership to /readyz.
func (n *Node) ready(ctx context.Context) error {
	if err := n.lfs.Ready(); err != nil {
		return err
	}
	if n.members != nil && !n.members.Joined() {
		return errNotJoined
	}
	return nil
}

var errNotJoined = errors.New("not joined to the cluster yet")

// Members lists every node of the cluster, this one included: the node is
// app's ClusterInfo, with Primary and Replication.
func (n *Node) Members() []cluster.Member {
	if n.members == nil {
		return []cluster.Member{{Name: n.cfg.Node, Addr: n.httpURL, State: "alive", Meta: n.meta()}}
	}
	return n.members.Members()
}

// Primary names the node that takes writes, "" when none is known.
func (n *Node) Primary() string {
	p, _ := n.primary()
	return p.Name
}

var _ web.ClusterInfo = (*Node)(nil)

// primary returns the member that holds the LiteFS lease, if known.
func (n *Node) primary() (cluster.Member, bool) {
	if n.lfs.IsPrimary() {
		return cluster.Member{Name: n.cfg.Node, State: "alive", Meta: n.meta()}, true
	}
	if n.members == nil {
		return cluster.Member{}, false
	}
	return n.members.Primary(n.lfs.Primary())
}

// front is what stands between the public port and the app: the body
// deadline, Fly's pinning, the trusted client-address header and write
// forwarding, outermost first.
func (n *Node) front(srv http.Handler, secret []byte) http.Handler {
	h := srv
	if n.lfs.Enabled() {
		h = n.forwarder(secret).Wrap(h)
	}
	if n.cfg.ClientIPHeader != "" {
		// Outside the forwarder, so that a forwarded write carries the
		// client's address; inside the pinner, so that it wins over
		// Fly-Client-IP when another proxy stands in front of Fly's.
		h = web.TrustClientHeader(n.cfg.ClientIPHeader, h)
	}
	if n.cfg.FlyMachineID != "" {
		h = n.pinner().Wrap(h)
	}
	bodyTimeout := web.BodyTimeout
	if n.cfg.bodyTimeout != 0 {
		bodyTimeout = n.cfg.bodyTimeout
	}
	return web.ReadBodyWithin(bodyTimeout, h)
}

// forwarder sends writes that reach this node, when it is a replica, to the
// primary: proxied locally, answered with fly-replay on Fly.
func (n *Node) forwarder(secret []byte) *cluster.Forwarder {
	f := &cluster.Forwarder{
		Secret:    secret,
		Node:      n.cfg.Node,
		IsPrimary: n.lfs.IsPrimary,
		ServeHere: web.ServedOnEveryNode,
		PrimaryURL: func() string {
			if p, ok := n.primary(); ok {
				return p.HTTP
			}
			return ""
		},
		Logger: n.logger,
	}
	if n.cfg.FlyMachineID != "" {
		f.FlyReplay = func() string {
			if p, ok := n.primary(); ok && p.Machine != "" {
				return "instance=" + p.Machine
			}
			return ""
		}
	}
	return f
}

// Replication describes this node's copy of the database and whether it
// hears from the primary, for /readyz and /api/cluster (nil without
// LiteFS).
func (n *Node) Replication() *cluster.Replication {
	if !n.lfs.Enabled() {
		return nil
	}
	var view cluster.PrimaryView
	if n.members != nil {
		view = n.members.PrimaryView(n.lfs.Primary())
		// Its announcements are fresher than its metadata.
		if txid, from := n.changes.PrimaryTXID(); from == view.Name && txid > view.TXID {
			view.TXID = txid
		}
	}
	r := n.lfs.Replication(view)
	return &r
}

// pinner answers requests pinned to another machine with fly-replay.
func (n *Node) pinner() *cluster.Pinner {
	return &cluster.Pinner{
		Node: n.cfg.Node, Machine: n.cfg.FlyMachineID, Region: n.cfg.Region,
		MachineOf: func(name string) (string, bool) {
			if n.members == nil {
				return "", false
			}
			for _, m := range n.members.Members() {
				if m.Name == name && m.State == "alive" {
					return m.Machine, true
				}
			}
			return "", false
		},
	}
}

// migrateOnPromotion applies pending migrations each time LiteFS says
// this node became the primary while running (a Consul lease moved
// between candidates): the role is never decided once at start-up. A
// migration that fails is tried again every second while the node stays
// primary.
func (n *Node) migrateOnPromotion(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.promoted:
		}
		n.logger.Info("promoted to primary")
		for n.lfs.IsPrimary() {
			err := n.db.Migrate(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			n.logger.Error("migrate after promotion", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}
