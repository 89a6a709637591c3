package main

import (
	"math/rand/v2"
	"slices"
	"testing"
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
