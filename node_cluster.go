package main

import (
	"notesync/app/web"
	"notesync/cluster"
	"notesync/realtime"
)

// openMembership joins the gossip, when the node has peers to gossip with
// (nil without). The membership carries what the node commits
// (cluster.Changes) both ways, log-outs, and realtime's ephemeral messages
// and presence.
func (n *Node) openMembership() (*cluster.Membership, error) {
	if n.cfg.GossipBind == "" {
		return nil, nil
	}
	m := &cluster.Membership{
		Name:         n.cfg.Node,
		Bind:         n.cfg.GossipBind,
		Advertise:    n.cfg.GossipAdvert,
		Peers:        n.cfg.Peers,
		Key:          n.cfg.GossipKey,
		WAN:          n.cfg.GossipWAN,
		Logger:       n.logger,
		MetaFunc:     n.meta,
		Changes:      n.changes,
		OnEndSession: func(id string) { n.sessions.EndHere(id, n.hub) },
		// Ephemeral messages and presence: realtime's own, carried.
		OnEphemeral: n.hub.Receive,
		OnJoin:      n.hub.PeerJoined,
		OnLeave:     n.hub.PeerLeft,
		State:       n.hub.PresenceState,
		MergeState:  n.hub.MergePresenceState,
	}
	if err := m.Open(); err != nil {
		return nil, err
	}
	n.onClose("cluster membership", m.Close)
	n.metrics.CountGossip(func() (uint64, uint64, uint64, uint64) {
		t := m.Traffic()
		return t.Packets, t.PacketBytes, t.Streams, t.StreamBytes
	})
	n.hub.Peers = m
	return m, nil
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
		LiteFSAPI:   n.cfg.LiteFSAdvert,
		Machine:     n.cfg.FlyMachineID,
		Connections: n.hub.Stats().Connections,
		Primary:     n.lfs.IsPrimary(),
	}
}

// endSession closes a session's sockets here and on every other node.
func (n *Node) endSession(id string) {
	n.sessions.EndHere(id, n.hub)
	if g := n.cluster.Gossip; g != nil {
		g.PublishEndSession(id)
	}
}

// The cluster view is what /api/cluster shows.
var _ web.ClusterInfo = (*cluster.Node)(nil)
