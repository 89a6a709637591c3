package web

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"slices"
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
