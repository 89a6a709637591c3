package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// `promote NODE` moves the lease by the primary's own handoff, the one a
// stop makes (docs/PROTOCOL.md §11): under writes at about 50/s through
// every node, retried as the page retries them, the lease goes back and
// forth and no write fails, every write answered 201 is there exactly
// once, a tab gets every change once and in order, and no node's LiteFS
// exits (each node started once). The times are logged.
func TestPromote(t *testing.T) {
	c := startCluster(t, 3, noWriteBudget)
	urls := []string{c.URL(1), c.URL(2), c.URL(3)}
	u := signup(t, urls[1], "promote")
	tab := openTab(t, u, c.URL(3))

	w := &writers{u: u, urls: urls}
	w.start(50)
	var took []time.Duration
	// Back and forth between node1 and node2: the tab's node3 stays a
	// replica, as in TestHandoff.
	for _, to := range []string{"node2", "node1", "node2", "node1", "node2"} {
		time.Sleep(time.Second) // writes flowing
		from := c.Primary()
		start := time.Now()
		if got := c.Command("promote " + to); got != "ok" {
			t.Fatalf("promote %s: %q", to, got)
		}
		took = append(took, time.Since(start))
		t.Logf("promote %s: ok after %v (from %s)", to, took[len(took)-1].Round(time.Millisecond), from)
		if p := c.Primary(); p != to {
			t.Fatalf("promote %s answered ok with %q primary", to, p)
		}
	}
	time.Sleep(time.Second)
	w.stop()
	want, err := u.notesVersion(urls[1]) // the primary's
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if v, err := u.notesVersion(urls[2]); err == nil && v >= want || time.Now().After(deadline) {
			break
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("promote under writes: median %v of %v; %d writes, %d retried (%d after a 504); longest write %v, longest answer %v",
		took[len(took)/2].Round(time.Millisecond), took, len(w.ids), w.retried, w.timedOut, w.longest.Round(time.Millisecond), w.longestAnswer.Round(time.Millisecond))

	logs, _ := filepath.Glob(filepath.Join(c.Dir, "*", "node.log"))
	if len(logs) != 3 {
		t.Fatalf("node logs: %v", logs)
	}
	for _, p := range logs {
		b, _ := os.ReadFile(p)
		log := string(b)
		if n := strings.Count(log, "notesync node"); n != 1 {
			t.Errorf("%s: the node started %d times, want once (LiteFS exited)", p, n)
		}
		if strings.Contains(log, "lost write access") {
			t.Errorf("%s: LiteFS lost write access during a transaction", p)
		}
	}
	if handoffs := countInNodeLogs(c.Dir, "preserving lease for handoff"); handoffs < len(took) {
		t.Errorf("%d handoffs in LiteFS's logs for %d promotes", handoffs, len(took))
	}
	for _, f := range w.failed {
		t.Error(f)
	}
	total := w.checkStored(t, urls[2])
	tab.check(t, total)
}
