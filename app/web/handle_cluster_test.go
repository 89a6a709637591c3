package web

import (
	"math/rand/v2"
	"slices"
	"testing"

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
