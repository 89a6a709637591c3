package web

// GET /api/cluster: the members of the cluster as this node knows them.

import (
	"cmp"
	"net"
	"net/http"
	"net/url"
	"slices"

	"notesync/cluster"
	"notesync/realtime"
)

// ClusterInfo is the cluster as this node knows it, for GET /api/cluster
// and /readyz; main wires it to memberlist and LiteFS. Its methods are
// quick and safe for concurrent use.
type ClusterInfo interface {
	// Members lists every node of the cluster, this one included.
	Members() []cluster.Member
	// Primary names the node that takes writes, "" when none is known.
	Primary() string
	// Replication is this node's view of its copy of the data, nil
	// without LiteFS. A replica that cannot hear from the primary stays
	// ready (it serves what it has) and says so here.
	Replication() *cluster.Replication
	// Acknowledgement is what the primary says of the writes it answered
	// and where each other node's copy is, nil without LiteFS.
	Acknowledgement() *cluster.AckStatus
}

// handleCluster describes the cluster; a node on its own is a cluster of
// one. A member's connections and tabs are the signed-in user's own
// there, from the presence their tabs are told: other users' counts are
// theirs, and a node's totals are in its metrics (notesync_connections,
// notesync_tabs). The tabs of a browser that share one connection
// (docs/PROTOCOL.md §13) are one connection and as many tabs.
func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request, u *User) {
	p := s.Hub.PresenceOf(u.ID)
	if s.Cluster != nil {
		writeJSON(w, http.StatusOK, clusterView(s.Node, s.Fly, s.Cluster, p))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"self":    s.Node,
		"primary": s.Node,
		"members": []map[string]any{{
			"name":        s.Node,
			"region":      s.Region,
			"http_url":    "",
			"state":       "alive",
			"role":        "primary",
			"connections": p.NodeConns[s.Node],
			"tabs":        p.Nodes[s.Node],
		}},
	})
}

// clusterStatus is the answer of GET /api/cluster.
type clusterStatus struct {
	Self        string               `json:"self"`
	Primary     string               `json:"primary"`
	Members     []memberStatus       `json:"members"`
	Replication *cluster.Replication `json:"replication,omitempty"`
	// AnsweredTXID is the newest position the primary answered a write
	// at, and AcknowledgedBy the candidate that held it then, or
	// cluster.NoCandidate (docs/PROTOCOL.md §11).
	AnsweredTXID   uint64 `json:"answered_txid,omitempty"`
	AcknowledgedBy string `json:"acknowledged_by,omitempty"`
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
	Tabs        int64  `json:"tabs"`
	// TXID is the member's replication position (LiteFS's), as it last
	// said; HoldsAnswered, on a replica, whether it holds every write the
	// primary answered.
	TXID          uint64 `json:"txid,omitempty"`
	HoldsAnswered *bool  `json:"holds_answered,omitempty"`
}

// clusterView is what GET /api/cluster answers, from info and p, a user's
// presence (their connections and tabs by node).
func clusterView(self string, fly bool, info ClusterInfo, p realtime.Presence) clusterStatus {
	st := clusterStatus{Self: self, Primary: info.Primary(), Replication: info.Replication()}
	ack := info.Acknowledgement()
	if ack != nil {
		st.AnsweredTXID, st.AcknowledgedBy = ack.Answered, ack.AckedBy
	}
	for _, m := range info.Members() {
		ms := memberStatus{
			Name: m.Name, Region: m.Region, HTTPURL: memberLink(m, fly),
			State: m.State, Role: "replica", TXID: m.TXID,
			Connections: int64(p.NodeConns[m.Name]), Tabs: int64(p.Nodes[m.Name]),
		}
		if m.Name == st.Primary {
			ms.Role = "primary"
		}
		if ack != nil {
			positions(&ms, self, st.Replication, ack)
		}
		st.Members = append(st.Members, ms)
	}
	sortMembers(st.Members)
	return st
}

// positions fills in where member ms's copy is, from this node's own
// position (rep) or the member's newest report, and whether, as a
// replica, it holds every answered write (all do while none was).
func positions(ms *memberStatus, self string, rep *cluster.Replication, ack *cluster.AckStatus) {
	if h, ok := ack.Positions[ms.Name]; ok {
		ms.TXID = h.TXID
	}
	if ms.Name == self && rep != nil {
		ms.TXID = rep.TXID
	}
	if ms.Role != "primary" {
		holds := ack.Answered == 0 || ack.Holding[ms.Name]
		ms.HoldsAnswered = &holds
	}
}

// memberLink is where the page's cluster panel sends a person to reach
// member m: on Fly, the app's own URL pinned to the member's machine; the
// URL its operator gave browsers (-public-url); on a cluster on this
// machine, its loopback URL, which is the one a person opens; anywhere else
// a tab pinned to it by name (docs/PROTOCOL.md §3), so that a private
// address is never shown.
func memberLink(m cluster.Member, fly bool) string {
	if fly && m.Machine != "" {
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
