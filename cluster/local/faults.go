package local

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Cut is one direction of a link between two nodes of a cluster started
// with -netns (docs/PROTOCOL.md §10): every packet From sends To is
// dropped. Both directions of a link are two cuts.
type Cut struct {
	From, To string
}

// ErrNoNetns means a network fault was asked of a cluster that runs
// without -netns, where every node shares the machine's loopback.
var ErrNoNetns = errors.New("network faults need a cluster started with -netns")

// Partition cuts node from every other node, both ways; given two nodes, it
// cuts only the link between them, both ways. Clients on the machine keep
// reaching every node.
func (l *Launcher) Partition(nodes ...string) error {
	idx, err := l.nodeIndexes(nodes, 1, 2)
	if err != nil {
		return err
	}
	return l.changeCuts(func(cuts map[[2]int]bool) {
		for j := 1; j <= l.N; j++ {
			if len(idx) == 2 && j != idx[1] || j == idx[0] {
				continue
			}
			cuts[[2]int{idx[0], j}] = true
			cuts[[2]int{j, idx[0]}] = true
		}
	})
}

// OneWay drops every packet from one node to another; the other direction
// still flows.
func (l *Launcher) OneWay(from, to string) error {
	idx, err := l.nodeIndexes([]string{from, to}, 2, 2)
	if err != nil {
		return err
	}
	return l.changeCuts(func(cuts map[[2]int]bool) { cuts[[2]int{idx[0], idx[1]}] = true })
}

// Heal lifts every cut, or, given a node, every cut to or from it.
func (l *Launcher) Heal(nodes ...string) error {
	idx, err := l.nodeIndexes(nodes, 0, 1)
	if err != nil {
		return err
	}
	return l.changeCuts(func(cuts map[[2]int]bool) {
		for c := range cuts {
			if len(idx) == 0 || c[0] == idx[0] || c[1] == idx[0] {
				delete(cuts, c)
			}
		}
	})
}

// Cuts lists the cuts in force, in node order.
func (l *Launcher) Cuts() []Cut {
	l.faultMu.Lock()
	defer l.faultMu.Unlock()
	var out []Cut
	for _, c := range sortedCuts(l.cuts) {
		out = append(out, Cut{From: nodeName(c[0]), To: nodeName(c[1])})
	}
	return out
}

// changeCuts applies change to a copy of the cuts in force, puts the result
// in force on the bridge, and keeps it only if that worked.
func (l *Launcher) changeCuts(change func(map[[2]int]bool)) error {
	if !l.Netns || l.net == nil {
		return ErrNoNetns
	}
	l.faultMu.Lock()
	defer l.faultMu.Unlock()
	next := map[[2]int]bool{}
	for c := range l.cuts {
		next[c] = true
	}
	change(next)
	if err := l.net.applyCuts(sortedCuts(next)); err != nil {
		return err
	}
	l.cuts = next
	l.cutLeaseRelays()
	return nil
}

func sortedCuts(cuts map[[2]int]bool) [][2]int {
	out := make([][2]int, 0, len(cuts))
	for c := range cuts {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	return out
}

func nodeName(i int) string { return "node" + strconv.Itoa(i) }

// nodeIndexes turns node names into indexes, checking how many were given
// and that they differ.
func (l *Launcher) nodeIndexes(names []string, least, most int) ([]int, error) {
	if len(names) < least || len(names) > most {
		return nil, fmt.Errorf("want %d to %d node names, got %d", least, most, len(names))
	}
	var idx []int
	for _, name := range names {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "node"))
		if !strings.HasPrefix(name, "node") || err != nil || i < 1 || i > l.N || nodeName(i) != name {
			return nil, fmt.Errorf("no node %q: the nodes are node1 to node%d", name, l.N)
		}
		if slices.Contains(idx, i) {
			return nil, fmt.Errorf("%s twice: a node cannot be cut from itself", name)
		}
		idx = append(idx, i)
	}
	return idx, nil
}
