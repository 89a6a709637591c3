package local

import (
	"strings"
	"testing"
)

func TestDescribeCuts(t *testing.T) {
	cases := []struct {
		cuts []Cut
		want string
	}{
		{nil, "no cuts"},
		{[]Cut{{"node1", "node3"}}, "cuts: node1->node3"},
		{[]Cut{{"node1", "node3"}, {"node3", "node1"}}, "cuts: node1<->node3"},
		// Node order, not string order: node10 comes after node2.
		{[]Cut{{"node2", "node10"}, {"node2", "node3"}, {"node10", "node2"}}, "cuts: node2<->node10, node2->node3"},
	}
	for _, c := range cases {
		if got := describeCuts(c.cuts); got != c.want {
			t.Errorf("describeCuts(%v) = %q, want %q", c.cuts, got, c.want)
		}
	}
}

func TestFaultCommandsWithoutNetns(t *testing.T) {
	l := &Launcher{N: 3}
	for line, want := range map[string]string{
		"":                      "",
		"partition node3":       ErrNoNetns.Error(),
		"heal":                  ErrNoNetns.Error(),
		"status":                ErrNoNetns.Error(),
		"partition node4":       `no node "node4": the nodes are node1 to node3`,
		"partition node03":      `no node "node03"`,
		"oneway node1":          "usage: oneway FROM TO",
		"heal node1 node2":      "usage: heal",
		"partition a b c":       "usage: partition",
		"partition node2 node2": "node2 twice",
		"shrug":                 `unknown command "shrug"; commands: ` + FaultCommands,
	} {
		if got := l.Command(line); !strings.HasPrefix(got, want) || (want == "" && got != "") {
			t.Errorf("Command(%q) = %q, want %q", line, got, want)
		}
	}
}
