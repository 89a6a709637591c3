package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"notesync/cluster"
	"notesync/cluster/local"
	"notesync/cluster/local/lease"
	"notesync/internal/testenv"
)

// supervise runs l's restarts until the pause it returns is called:
// meanwhile, a node that exits stays down.
func supervise(l *local.Launcher) (pause func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	return func() { cancel(); <-done }
}

// A candidate that is behind takes the lease, as LiteFS allows (its issue
// #282), and the writes answered meanwhile are applied again through it,
// once (docs/PROTOCOL.md §11). node2 is stopped and held down while
// writes are answered on node3's acknowledgement; then node1, the
// primary, is cut off, so that it loses the lease, and node2 comes back
// and takes it (node3's replication stream hangs on node1, which LiteFS
// v0.5.14 does not notice before the heal, so node3 does not run for
// it). Once healed, LiteFS brings node1 and node3 in line with node2's
// history, and they
// apply the writes it lacks again through it: every write answered 201
// is then stored exactly once, under the id it was answered with, on
// every node.
func TestBehindCandidateTakesTheLease(t *testing.T) {
	testenv.NeedNetns(t)
	l := newLauncher(t, 3, "LOG_LEVEL=info")
	l.Netns, l.Lease = true, local.LeaseConsul
	if err := l.Open(context.Background()); err != nil {
		dumpLogs(t, l.Dir)
		t.Fatal(err)
	}
	pause := supervise(l)
	t.Cleanup(func() {
		pause()
		if t.Failed() {
			dumpLogs(t, l.Dir)
		}
		l.Close()
		if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), l.Dir) {
			t.Errorf("a LiteFS mount under %s is left behind", l.Dir)
		}
	})
	c := &localCluster{Launcher: l}
	urls := []string{c.URL(1), c.URL(2), c.URL(3)}
	u := signup(t, urls[2], "behind")
	w := &writers{u: u, urls: []string{urls[2]}, patience: 30 * time.Second, ids: map[string]int64{}}
	w.write(0)
	u.waitAck(t, urls[0], ackView.holdsAll)

	pause()
	_, exited := l.Node(2)
	if got := c.Command("stop node2"); got != "ok" {
		t.Fatalf("stop node2: %q", got)
	}
	<-exited
	time.Sleep(cluster.CurrentWithin + time.Second)
	for i := 1; i <= 10; i++ {
		w.write(i)
	}
	for _, f := range w.failed {
		t.Fatal(f)
	}
	u.waitAck(t, urls[0], func(v ackView) bool { return v.AcknowledgedBy == "node3" })

	if got := c.Command("partition node1"); got != "ok" {
		t.Fatalf("partition node1: %q", got)
	}
	defer c.Heal()
	cut := time.Now()
	for c.Primary() != "" {
		if time.Since(cut) > lease.DefaultTTL+10*time.Second {
			t.Fatalf("%s still holds the lease %v after node1 was cut off", c.Primary(), time.Since(cut))
		}
		time.Sleep(100 * time.Millisecond)
	}
	pause = supervise(l)
	for c.Primary() != "node2" {
		if time.Since(cut) > 90*time.Second {
			t.Fatalf("node2 has not taken the lease; primary %q", c.Primary())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("node2, behind, took the lease %v after the cuts", time.Since(cut).Round(time.Millisecond))
	if got := c.Command("heal"); got != "ok" {
		t.Fatalf("heal: %q", got)
	}
	u.waitPrimaryEverywhere(t, urls, "node2", 90*time.Second)
	healed := time.Now()
	for key, id := range w.ids {
		for {
			status, _, _, err := u.Try("GET", fmt.Sprintf("%s/api/notes/%d", urls[1], id), "")
			if err == nil && status == http.StatusOK {
				break
			}
			if time.Since(healed) > 60*time.Second {
				t.Fatalf("write %s, note %d, is not on node2 60 s after the heal: %d %v", key, id, status, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("every answered write is on node2 %v after the heal", time.Since(healed).Round(time.Millisecond))
	for _, base := range urls {
		u.waitAck(t, base, ackView.holdsAll)
		w.checkStored(t, base)
	}
	if n := countInNodeLogs(l.Dir, "applied a change again through the primary"); n == 0 {
		t.Error("no node logs a change applied again")
	}
}
