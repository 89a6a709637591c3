package web

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/http"
	"notesync/realtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"notesync/cluster"
)

func TestSortMembersPrimaryFirstThenByName(t *testing.T) {
	want := []string{"node3", "ams-1", "node1", "node10", "node2"}
	for i := range 20 {
		ms := []memberStatus{
			{Name: "node1", Role: "replica"}, {Name: "node10", Role: "replica"},
			{Name: "node2", Role: "replica"}, {Name: "node3", Role: "primary"},
			{Name: "ams-1", Role: "replica"},
		}
		rand.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		sortMembers(ms)
		var got []string
		for _, m := range ms {
			got = append(got, m.Name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("shuffle %d: order %v, want %v", i, got, want)
		}
	}
}

// TestMemberLink: the cluster panel links a member by where a person can
// reach it, never by a private address (moved here from the node's tests
// with the view itself).
func TestMemberLink(t *testing.T) {
	for _, m := range []struct {
		member cluster.Member
		fly    bool
		want   string
	}{
		{cluster.Member{Name: "node2", Meta: cluster.Meta{HTTP: "http://127.0.0.1:8082"}}, false, "http://127.0.0.1:8082"},
		{cluster.Member{Name: "node2", Meta: cluster.Meta{HTTP: "http://localhost:8082"}}, false, "http://localhost:8082"},
		{cluster.Member{Name: "node2", Meta: cluster.Meta{HTTP: "http://10.0.0.7:8080"}}, false, "/?node=node2"},
		{cluster.Member{Name: "node2", Meta: cluster.Meta{HTTP: "http://node2.internal:8080"}}, false, "/?node=node2"},
		{cluster.Member{Name: "node2", Meta: cluster.Meta{HTTP: "http://10.77.0.2:8082", Public: "http://127.0.0.1:8082"}}, false, "http://127.0.0.1:8082"},
		{cluster.Member{Name: "148e21ea7e4389", Meta: cluster.Meta{HTTP: "http://[fdaa::2]:8080", Machine: "148e21ea7e4389"}}, true, "/?node=148e21ea7e4389"},
	} {
		if got := memberLink(m.member, m.fly); got != m.want {
			t.Errorf("%s (fly %v): link %q, want %q", m.member.HTTP, m.fly, got, m.want)
		}
	}
}

// twoNodes is a cluster of node1 (this one, the primary) and node2.
type twoNodes struct{}

func (twoNodes) Members() []cluster.Member {
	return []cluster.Member{{Name: "node1", State: "alive"}, {Name: "node2", State: "alive"}}
}
func (twoNodes) Primary() string                   { return "node1" }
func (twoNodes) Replication() *cluster.Replication { return nil }
func (twoNodes) Acknowledgement() *cluster.AckStatus {
	return nil
}

func TestClusterShowsOnlyTheUsersOwnConnections(t *testing.T) {
	for _, c := range []struct {
		name  string
		tweak func(*Config)
	}{
		{"a node on its own", func(*Config) {}},
		{"a member of a cluster", func(c *Config) { c.Cluster = twoNodes{} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newTestServer(t, c.tweak)
			alice, bob := ts.browser(t), ts.browser(t)
			alice.signup("alice")
			bob.signup("bob")
			bob.DialWS("")
			counts := func(b *browser) map[string]int64 {
				t.Helper()
				resp, body := b.Do("GET", "/api/cluster", "", "")
				var st clusterStatus
				if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
				out := map[string]int64{}
				for _, m := range st.Members {
					out[m.Name] = m.Connections
				}
				return out
			}
			want := func(b *browser, n int64) bool { return counts(b)["node1"] == n }
			for deadline := time.Now().Add(5 * time.Second); !want(bob, 1); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("bob, one socket open, sees %v", counts(bob))
				}
			}
			for name, n := range counts(alice) {
				if n != 0 {
					t.Errorf("alice, no socket open, sees %d connections on %s", n, name)
				}
			}
		})
	}
}

// threeNodes is a cluster whose primary, node1, answered a write at TXID
// 9 that node3 holds and node2, behind, does not.
type threeNodes struct{}

func (threeNodes) Members() []cluster.Member {
	return []cluster.Member{
		{Name: "node2", State: "alive", Meta: cluster.Meta{TXID: 4}},
		{Name: "node1", State: "alive"}, {Name: "node3", State: "alive"},
	}
}
func (threeNodes) Primary() string { return "node1" }
func (threeNodes) Replication() *cluster.Replication {
	return &cluster.Replication{State: "primary", TXID: 9}
}
func (threeNodes) Acknowledgement() *cluster.AckStatus {
	return &cluster.AckStatus{Answered: 9, AckedBy: "node3",
		Positions: map[string]cluster.Held{"node2": {From: "node2", TXID: 7}, "node3": {From: "node3", TXID: 9}},
		Holding:   map[string]bool{"node3": true}}
}

func TestClusterShowsEachReplicasPositionAndWhetherItHoldsTheAnsweredWrites(t *testing.T) {
	st := clusterView("node1", false, threeNodes{}, realtime.Presence{})
	if st.Primary != "node1" || st.AnsweredTXID != 9 || st.AcknowledgedBy != "node3" {
		t.Fatalf("primary %q, answered %d, acknowledged by %q; want node1, 9, node3", st.Primary, st.AnsweredTXID, st.AcknowledgedBy)
	}
	type row struct {
		txid  uint64
		holds string
	}
	got := map[string]row{}
	for _, m := range st.Members {
		h := "-"
		if m.HoldsAnswered != nil {
			h = strconv.FormatBool(*m.HoldsAnswered)
		}
		got[m.Name] = row{m.TXID, h}
	}
	want := map[string]row{"node1": {9, "-"}, "node2": {7, "false"}, "node3": {9, "true"}}
	if !maps.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
}
