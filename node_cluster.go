package main

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

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
		Acks:         n.acks,
		OnEndSession: func(id string) { n.sessions.EndHere(id, n.hub) },
		// Ephemeral messages and presence: realtime's own, carried.
		OnEphemeral: n.hub.Receive,
		OnJoin:      n.hub.PeerJoined,
		OnLeave:     n.hub.PeerLeft,
		State:       n.hub.PresenceState,
		MergeState:  n.hub.MergePresenceState,
	}
	if n.acks != nil {
		n.acks.Candidates = m.Candidates
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
		Candidate:   n.cfg.Candidate && n.lfs.Enabled(),
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

// handOffHandler serves POST /handoff?to=NODE: this node, the primary,
// hands its lease to NODE by the same path as on a stop (handOff and
// cluster.Node.HandOff, docs/PROTOCOL.md §11): writes held, NODE caught
// up, its LiteFS asked to promote, then the held writes forwarded to it.
// It answers 200 with NODE once this node's LiteFS says it is a replica,
// 409 when NODE is not a candidate, 421 when this node is not the primary,
// and 503 with the reason otherwise.
//
// It is served on -metrics-addr only, never on the public port, and only
// to a caller with the bearer token: the local cluster's launcher, which
// made the token and binds every node's metrics address on loopback (or
// in the node's own namespace). On Fly.io the metrics port is reachable
// over the private network, and no token is set there: not served.
func (n *Node) handOffHandler(token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		to := r.URL.Query().Get("to")
		if to == "" {
			http.Error(w, "to: the node to hand the lease to", http.StatusBadRequest)
			return
		}
		start := time.Now()
		got, err := n.cluster.HandOff(r.Context(), to)
		switch {
		case errors.Is(err, cluster.ErrNotCandidate):
			http.Error(w, err.Error(), http.StatusConflict)
		case errors.Is(err, cluster.ErrNotPrimary):
			http.Error(w, err.Error(), http.StatusMisdirectedRequest)
		case err != nil:
			n.logger.Warn("the lease was not handed off", "to", to, "err", err, "took", time.Since(start))
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			n.logger.Info("handed the lease off", "to", got, "took", time.Since(start))
			fmt.Fprintln(w, got)
		}
	})
}
