package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"notesync/app"
	"notesync/cluster"
	"notesync/realtime"
)

// clusterWiring connects app and realtime to the cluster package: gossip
// membership, LiteFS roles and write forwarding. With no gossip configured
// it describes a cluster of one.
type clusterWiring struct {
	cfg      *config
	lfs      *cluster.LiteFS
	hub      *realtime.Hub
	changes  *cluster.Changes
	sessions *app.SessionStore
	logger   *slog.Logger
	httpURL  string

	members *cluster.Membership // nil without gossip
}

func (w *clusterWiring) open() error {
	if w.cfg.GossipBind == "" {
		return nil
	}
	m := &cluster.Membership{
		Name:      w.cfg.Node,
		Bind:      w.cfg.GossipBind,
		Advertise: w.cfg.GossipAdvert,
		Peers:     w.cfg.Peers,
		Key:       w.cfg.GossipKey,
		WAN:       w.cfg.GossipWAN,
		Logger:    w.logger,
		MetaFunc:  w.meta,
		// The primary's commits: its position, and the lag to time.
		OnChanged: w.changes.Announced,
		OnEndSession: func(id string) {
			w.sessions.MarkEnded(id)
			w.hub.CloseSession(id, realtime.StatusPolicyViolation, "auth_required")
		},
		// Ephemeral messages and presence: realtime's own, carried.
		OnEphemeral: w.hub.Receive,
		OnJoin:      w.hub.PeerJoined,
		OnLeave:     w.hub.PeerLeft,
		State:       w.hub.PresenceState,
		MergeState:  w.hub.MergePresenceState,
	}
	if err := m.Open(); err != nil {
		return err
	}
	w.members = m
	w.hub.Peers = m
	return nil
}

var _ realtime.Peers = (*cluster.Membership)(nil)

func (w *clusterWiring) close() {
	if w.members != nil {
		if err := w.members.Close(); err != nil {
			w.logger.Warn("leave cluster", "err", err)
		}
	}
}

// meta is what this node gossips about itself.
func (w *clusterWiring) meta() cluster.Meta {
	txid, _ := w.lfs.TXID()
	return cluster.Meta{
		Region:      w.cfg.Region,
		HTTP:        w.httpURL,
		Public:      w.cfg.PublicURL,
		TXID:        txid,
		LiteFS:      w.cfg.LiteFSHostname,
		Machine:     w.cfg.FlyMachineID,
		Connections: w.hub.Stats().Connections,
		Primary:     w.lfs.IsPrimary(),
	}
}

// refreshMeta re-gossips the metadata every few seconds (connection counts
// and roles change while running).
func (w *clusterWiring) refreshMeta(ctx context.Context) {
	if w.members == nil {
		return
	}
	every(ctx, 3*time.Second, func() { _ = w.members.RefreshMeta() })
}

// announceChanges tells the other nodes of each transaction this node
// commits as primary (cluster.Changes).
func (w *clusterWiring) announceChanges(ctx context.Context) {
	if w.members == nil {
		return
	}
	w.changes.Run(ctx, w.members.PublishChanged)
}

// endSession closes a session's sockets here and on every other node.
func (w *clusterWiring) endSession(id string) {
	w.sessions.MarkEnded(id)
	w.hub.CloseSession(id, realtime.StatusPolicyViolation, "auth_required")
	if w.members != nil {
		w.members.PublishEndSession(id)
	}
}

// ready adds the LiteFS mount and cluster membership to /readyz.
func (w *clusterWiring) ready(ctx context.Context) error {
	if err := w.lfs.Ready(); err != nil {
		return err
	}
	if w.members != nil && !w.members.Joined() {
		return errNotJoined
	}
	return nil
}

var errNotJoined = errors.New("not joined to the cluster yet")

// primary returns the member that holds the LiteFS lease, if known.
func (w *clusterWiring) primary() (cluster.Member, bool) {
	if w.lfs.IsPrimary() {
		return cluster.Member{Name: w.cfg.Node, State: "alive", Meta: w.meta()}, true
	}
	if w.members == nil {
		return cluster.Member{}, false
	}
	host := w.lfs.Primary()
	var fallback *cluster.Member
	for _, m := range w.members.Members() {
		if m.State != "alive" {
			continue
		}
		if host != "" && m.LiteFS == host {
			return m, true
		}
		if m.Primary && fallback == nil {
			fallback = &m
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return cluster.Member{}, false
}

// front is what stands between the public port and the app: the body
// deadline, Fly's pinning, the trusted client-address header and write
// forwarding, outermost first.
func (w *clusterWiring) front(srv http.Handler, secret []byte) http.Handler {
	h := srv
	if w.lfs.Enabled() {
		h = w.forwarder(secret).Wrap(h)
	}
	if w.cfg.ClientIPHeader != "" {
		// Outside the forwarder, so that a forwarded write carries the
		// client's address; inside the pinner, so that it wins over
		// Fly-Client-IP when another proxy stands in front of Fly's.
		h = app.TrustClientHeader(w.cfg.ClientIPHeader, h)
	}
	if w.cfg.FlyMachineID != "" {
		h = w.pinner().Wrap(h)
	}
	bodyTimeout := app.BodyTimeout
	if w.cfg.bodyTimeout != 0 {
		bodyTimeout = w.cfg.bodyTimeout
	}
	return app.ReadBodyWithin(bodyTimeout, h)
}

// forwarder sends writes that reach this node, when it is a replica, to the
// primary: proxied locally, answered with fly-replay on Fly.
func (w *clusterWiring) forwarder(secret []byte) *cluster.Forwarder {
	f := &cluster.Forwarder{
		Secret:    secret,
		Node:      w.cfg.Node,
		IsPrimary: w.lfs.IsPrimary,
		ServeHere: app.ServedOnEveryNode,
		PrimaryURL: func() string {
			if p, ok := w.primary(); ok {
				return p.HTTP
			}
			return ""
		},
		Logger: w.logger,
	}
	if w.cfg.FlyMachineID != "" {
		f.FlyReplay = func() string {
			if p, ok := w.primary(); ok && p.Machine != "" {
				return "instance=" + p.Machine
			}
			return ""
		}
	}
	return f
}

// clusterStatus is the answer of GET /api/cluster.
type clusterStatus struct {
	Self        string               `json:"self"`
	Primary     string               `json:"primary"`
	Members     []memberStatus       `json:"members"`
	Replication *cluster.Replication `json:"replication,omitempty"`
}

// memberStatus shows no address of a member's: gossip and private
// addresses are of no use to a browser and tell an attacker where to look.
type memberStatus struct {
	Name        string `json:"name"`
	Region      string `json:"region"`
	HTTPURL     string `json:"http_url"` // see memberLink
	State       string `json:"state"`
	Role        string `json:"role"`
	Connections int64  `json:"connections"`
}

func (w *clusterWiring) status(ctx context.Context) (any, error) {
	st := clusterStatus{Self: w.cfg.Node, Replication: w.replication()}
	if p, ok := w.primary(); ok {
		st.Primary = p.Name
	}
	var members []cluster.Member
	if w.members != nil {
		members = w.members.Members()
	} else {
		members = []cluster.Member{{Name: w.cfg.Node, Addr: w.httpURL, State: "alive", Meta: w.meta()}}
	}
	// Connection counts come from presence, the data every tab is told.
	conns := w.hub.NodeConnections()
	for _, m := range members {
		role := "replica"
		if m.Name == st.Primary {
			role = "primary"
		}
		st.Members = append(st.Members, memberStatus{
			Name: m.Name, Region: m.Region, HTTPURL: w.memberLink(m),
			State: m.State, Role: role, Connections: int64(conns[m.Name]),
		})
	}
	sortMembers(st.Members)
	return st, nil
}

// memberLink is where the page's cluster panel sends a person to reach
// member m: on Fly, the app's own URL pinned to the member's machine; the
// URL its operator gave browsers (-public-url); on a cluster on this
// machine, its loopback URL, which is the one a person opens; anywhere else
// a tab pinned to it by name (docs/PROTOCOL.md §3), so that a private
// address is never shown.
func (w *clusterWiring) memberLink(m cluster.Member) string {
	if w.cfg.FlyMachineID != "" && m.Machine != "" {
		return "/?node=" + url.QueryEscape(m.Machine)
	}
	if m.Public != "" {
		return m.Public
	}
	if u, err := url.Parse(m.HTTP); err == nil && u.Host != "" {
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || ip != nil && ip.IsLoopback() {
			return m.HTTP
		}
	}
	return "/?node=" + url.QueryEscape(m.Name)
}

// sortMembers puts the members in the order every node answers with: the
// primary first, then by name. Gossip lists them in an order of its own,
// which differs from node to node and from one call to the next.
func sortMembers(ms []memberStatus) {
	slices.SortStableFunc(ms, func(a, b memberStatus) int {
		if pa, pb := a.Role == "primary", b.Role == "primary"; pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// replication describes this node's copy of the database and whether it
// hears from the primary, for /readyz and /api/cluster (nil without
// LiteFS).
func (w *clusterWiring) replication() *cluster.Replication {
	if !w.lfs.Enabled() {
		return nil
	}
	var view cluster.PrimaryView
	if w.members != nil {
		// The primary as gossip sees it, in any state: LiteFS names it
		// (.primary), or failing that its metadata says so.
		host := w.lfs.Primary()
		for _, m := range w.members.Members() {
			if m.Name != w.cfg.Node && (host != "" && m.LiteFS == host || host == "" && m.Primary) {
				view = cluster.PrimaryView{Name: m.Name, State: m.State, TXID: m.TXID}
				break
			}
		}
		// Its announcements are fresher than its metadata.
		if txid, from := w.changes.PrimaryTXID(); from == view.Name && txid > view.TXID {
			view.TXID = txid
		}
	}
	r := w.lfs.Replication(view)
	return &r
}

// replicationReport is replication for app.Config.Replication: a plain
// nil, not a nil pointer, without LiteFS.
func (w *clusterWiring) replicationReport() any {
	if r := w.replication(); r != nil {
		return r
	}
	return nil
}

// pinner answers requests pinned to another machine with fly-replay.
func (w *clusterWiring) pinner() *cluster.Pinner {
	return &cluster.Pinner{
		Node: w.cfg.Node, Machine: w.cfg.FlyMachineID, Region: w.cfg.Region,
		MachineOf: func(name string) (string, bool) {
			if w.members == nil {
				return "", false
			}
			for _, m := range w.members.Members() {
				if m.Name == name && m.State == "alive" {
					return m.Machine, true
				}
			}
			return "", false
		},
	}
}

// migrateOnPromotion applies pending migrations when this node becomes
// primary while running (a Consul lease moves between candidates): the role
// is never decided once at start-up.
func (w *clusterWiring) migrateOnPromotion(ctx context.Context, db *app.DB) {
	if !w.lfs.Enabled() {
		return
	}
	was := w.lfs.IsPrimary()
	every(ctx, 500*time.Millisecond, func() {
		now := w.lfs.IsPrimary()
		if now && !was {
			w.logger.Info("promoted to primary")
			if err := db.Migrate(ctx); err != nil {
				w.logger.Error("migrate after promotion", "err", err)
				return // try again on the next tick
			}
		}
		was = now
	})
}

// closeEndedSessions closes, every interval, the sockets of sessions that
// ended elsewhere: log-out on another node tells this one over gossip, and
// this sweep catches a lost packet. The cookie stops authenticating at once
// everywhere (the session row is gone); its open sockets close within one
// interval at worst.
func (w *clusterWiring) closeEndedSessions(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		ended, err := w.sessions.Ended(ctx, w.hub.Sessions())
		if err != nil && ctx.Err() == nil {
			w.logger.Warn("check open sessions", "err", err)
		}
		for _, id := range ended {
			w.sessions.MarkEnded(id)
			w.hub.CloseSession(id, realtime.StatusPolicyViolation, "auth_required")
		}
	})
}
