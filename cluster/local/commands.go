package local

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
)

// FaultCommands lists the fault commands Command takes with Netns.
const FaultCommands = "partition NODE [NODE], oneway FROM TO, heal [NODE]"

// Command runs one command, as typed on the launcher's standard input
// (NodeCommands, and with Netns FaultCommands), and returns its one-line
// answer: "ok", the primary (and with Netns the cuts in force) for status,
// or what is wrong.
func (l *Launcher) Command(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	var err error
	switch f[0] {
	case "kill", "stop", "promote":
		if len(f) != 2 {
			return "usage: " + f[0] + " NODE"
		}
		err = l.nodeCommand(f[0], f[1])
	case "partition":
		if len(f) < 2 || len(f) > 3 {
			return "usage: partition NODE (from every other node) or partition NODE NODE (that link)"
		}
		err = l.Partition(f[1:]...)
	case "oneway":
		if len(f) != 3 {
			return "usage: oneway FROM TO (packets from FROM to TO are dropped)"
		}
		err = l.OneWay(f[1], f[2])
	case "heal":
		if len(f) > 2 {
			return "usage: heal (every cut) or heal NODE (the cuts to and from NODE)"
		}
		err = l.Heal(f[1:]...)
	case "status":
		if len(f) != 1 {
			return "usage: status"
		}
		if !l.Netns {
			return l.leaseStatus()
		}
		return describeCuts(l.Cuts()) + "; " + l.leaseStatus()
	default:
		return fmt.Sprintf("unknown command %q; commands: %s, %s", f[0], NodeCommands, FaultCommands)
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// nodeCommand runs kill, stop or promote on node.
func (l *Launcher) nodeCommand(cmd, node string) error {
	switch cmd {
	case "kill":
		return l.Kill(node)
	case "stop":
		return l.Stop(node)
	default:
		return l.Promote(context.Background(), node)
	}
}

// describeCuts says which links are cut: "node1<->node3" both ways,
// "node1->node2" one way.
func describeCuts(cuts []Cut) string {
	if len(cuts) == 0 {
		return "no cuts"
	}
	has := map[Cut]bool{}
	for _, c := range cuts {
		has[c] = true
	}
	var parts []string
	for _, c := range cuts {
		back := Cut{From: c.To, To: c.From}
		switch {
		case !has[back]:
			parts = append(parts, c.From+"->"+c.To)
		case has[c]: // both ways: said once, and not again for back
			parts = append(parts, c.From+"<->"+c.To)
			delete(has, back)
		}
	}
	return "cuts: " + strings.Join(parts, ", ")
}

// serveCommands answers each line of in on l.Stdout until in ends.
func (l *Launcher) serveCommands(in io.Reader) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if answer := l.Command(sc.Text()); answer != "" {
			fmt.Fprintln(l.Stdout, answer)
		}
	}
}
