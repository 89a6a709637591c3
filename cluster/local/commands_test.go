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
	l := &Launcher{N: 3, Lease: LeaseStatic}
	for line, want := range map[string]string{
		"":                      "",
		"partition node3":       ErrNoNetns.Error(),
		"heal":                  ErrNoNetns.Error(),
		"status":                "primary node1",
		"partition node4":       `no node "node4": the nodes are node1 to node3`,
		"partition node03":      `no node "node03"`,
		"oneway node1":          "usage: oneway FROM TO",
		"heal node1 node2":      "usage: heal",
		"partition a b c":       "usage: partition",
		"partition node2 node2": "node2 twice",
		"shrug":                 `unknown command "shrug"; commands: ` + NodeCommands + ", " + FaultCommands,
	} {
		if got := l.Command(line); !strings.HasPrefix(got, want) || (want == "" && got != "") {
			t.Errorf("Command(%q) = %q, want %q", line, got, want)
		}
	}
}

// The node commands' answers to what is wrong with the line, before any
// node is touched.
func TestNodeCommandErrors(t *testing.T) {
	l := &Launcher{N: 3, Lease: LeaseStatic}
	for line, want := range map[string]string{
		"kill":              "usage: kill NODE",
		"stop node1 node2":  "usage: stop NODE",
		"promote":           "usage: promote NODE",
		"kill node4":        `no node "node4": the nodes are node1 to node3`,
		"stop nodeX":        `no node "nodeX"`,
		"promote node0":     `no node "node0"`,
		"promote node2":     ErrStaticLease.Error(),
		"kill node1":        "node1 is not running", // Open never ran
		"status node1":      "usage: status",
		"KILL node1":        `unknown command "KILL"`,
		"  stop   node9   ": `no node "node9"`,
	} {
		if got := l.Command(line); !strings.HasPrefix(got, want) {
			t.Errorf("Command(%q) = %q, want %q", line, got, want)
		}
	}
	if got := (&Launcher{N: 3}).Command("status"); got != "no primary (an election is under way)" {
		t.Errorf("status with no lease holder = %q", got)
	}
}
