package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"notesync/cluster"
	"notesync/cluster/local"
)

// ackView is what /api/cluster says of the answered writes
// (docs/PROTOCOL.md §11).
type ackView struct {
	Primary        string
	AnsweredTXID   uint64 `json:"answered_txid"`
	AcknowledgedBy string `json:"acknowledged_by"`
	Members        []struct {
		Name, Role    string
		TXID          uint64
		HoldsAnswered *bool `json:"holds_answered"`
	}
}

// ackOn reads base's /api/cluster.
func (u *user) ackOn(t *testing.T, base string) ackView {
	t.Helper()
	status, body, _, err := u.Try("GET", base+"/api/cluster", "")
	var v ackView
	if err != nil || status != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("GET %s/api/cluster: %d %s %v", base, status, body, err)
	}
	return v
}

// waitAck waits until base's /api/cluster satisfies ok, and returns it.
func (u *user) waitAck(t *testing.T, base string, ok func(ackView) bool) ackView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := u.ackOn(t, base)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/api/cluster: %+v", base, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// holdsAll reports whether every replica of v holds every answered write.
func (v ackView) holdsAll() bool {
	for _, m := range v.Members {
		if m.Role != "primary" && (m.HoldsAnswered == nil || !*m.HoldsAnswered || m.TXID < v.AnsweredTXID) {
			return false
		}
	}
	return len(v.Members) > 1
}

// A write is answered only once the other live candidates hold it, every
// one that reports and at least one (docs/PROTOCOL.md §11), so a SIGKILL
// of the primary, whichever candidate takes the lease then, loses no
// answered write: under writes at
// about 50/s through every node, retried as the page retries them, the
// primary is killed three times; every write answered 201 is then stored
// exactly once, on every node.
func TestKillLosesNoAnsweredWrite(t *testing.T) {
	c := startCluster(t, 3, noWriteBudget)
	urls := []string{c.URL(1), c.URL(2), c.URL(3)}
	u := signup(t, urls[1], "acked")
	u.writeRetrying(t, urls[2], "first", "first", 10*time.Second)

	t.Run("every node says which candidate acknowledged the answered writes, and that each replica holds them", func(t *testing.T) {
		for _, base := range urls {
			v := u.waitAck(t, base, func(v ackView) bool { return v.AnsweredTXID > 0 && v.holdsAll() })
			if v.AcknowledgedBy != "node2, node3" {
				t.Errorf("%s: acknowledged by %q, want both replicas of %s", base, v.AcknowledgedBy, v.Primary)
			}
		}
	})

	w := &writers{u: u, urls: urls, patience: 30 * time.Second}
	w.start(50)
	for round := 1; round <= 3; round++ {
		time.Sleep(2 * time.Second) // writes flowing
		old := c.Primary()
		start := time.Now()
		if got := c.Command("kill " + old); got != "ok" {
			t.Fatalf("kill %s: %q", old, got)
		}
		// Any candidate may take the lease once the dead node's session
		// ends, the killed node too once it is started again.
		key := fmt.Sprintf("resumed-%d", round)
		u.writeRetrying(t, urls[round%3], key, key, 30*time.Second)
		next := c.Primary()
		u.waitPrimaryEverywhere(t, urls, next, 60*time.Second)
		t.Logf("round %d: %s primary, writes answered again %v after SIGKILL to %s", round, next, time.Since(start).Round(time.Millisecond), old)
	}
	time.Sleep(time.Second)
	w.stop()
	t.Logf("%d writes answered 201, %d retried (%d after a 504); longest write %v", len(w.ids), w.retried, w.timedOut, w.longest.Round(time.Millisecond))
	for _, f := range w.failed {
		t.Error(f)
	}
	for _, base := range urls {
		u.waitAck(t, base, ackView.holdsAll)
		w.checkStored(t, base)
	}
}

// Under a static lease only node1 is a candidate: no other candidate is
// alive to wait for, so writes are answered once committed, and
// /api/cluster says so.
func TestWritesAnsweredAloneWithoutAnotherCandidate(t *testing.T) {
	l := newLauncher(t, 2)
	l.Lease = local.LeaseStatic
	c := runLauncher(t, l)
	u := signup(t, c.URL(2), "alone")
	start := time.Now()
	u.writeRetrying(t, c.URL(1), "alone", "alone-1", 10*time.Second)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the write took %v with no candidate to wait for", took)
	}
	v := u.waitAck(t, c.URL(1), func(v ackView) bool { return v.AnsweredTXID > 0 })
	if want := "none (no other candidate alive)"; v.AcknowledgedBy != want {
		t.Fatalf("acknowledged by %q, want %q", v.AcknowledgedBy, want)
	}
	if n := countInNodeLogs(l.Dir, "no other candidate is alive"); n != 1 {
		t.Errorf("the log says %d times that no other candidate is alive, want once", n)
	}
}

// A candidate cut off from the primary (a §10 partition of that link
// alone, with -netns) stops reporting to it, and is no longer waited for
// after 1.5 s: writes are answered once the other candidate holds them,
// and /api/cluster says the cut-off one does not. Then the primary is
// killed and the link healed: a candidate that held the writes takes the
// lease (node3, or node1 started again; LiteFS v0.5.14's cut-off replica
// notices its primary is gone only after the heal), and every answered
// write is on every node.
func TestCutOffCandidateIsNotWaitedFor(t *testing.T) {
	c := startNetnsClusterLease(t, 3, local.LeaseConsul)
	urls := []string{c.URL(1), c.URL(2), c.URL(3)}
	u := signup(t, urls[2], "cutoff")
	w := &writers{u: u, urls: []string{urls[2]}, patience: 30 * time.Second}
	w.ids = map[string]int64{}
	w.write(0)
	if got := c.Command("partition node1 node2"); got != "ok" {
		t.Fatalf("partition node1 node2: %q", got)
	}
	defer c.Heal()
	time.Sleep(cluster.CurrentWithin + time.Second)
	for i := 1; i <= 20; i++ {
		start := time.Now()
		w.write(i)
		if took := time.Since(start); took > time.Second {
			t.Errorf("write %d took %v with node2 cut off", i, took)
		}
	}
	v := u.waitAck(t, urls[0], func(v ackView) bool { return v.AcknowledgedBy == "node3" })
	for _, m := range v.Members {
		if m.Name == "node2" && (m.HoldsAnswered == nil || *m.HoldsAnswered) {
			t.Errorf("node1 says node2, cut off, holds every answered write: %+v", v)
		}
	}
	if got := c.Command("kill node1"); got != "ok" {
		t.Fatalf("kill node1: %q", got)
	}
	killed := time.Now()
	w.write(21) // answered once a candidate has taken the lease
	t.Logf("%s took the lease; writes answered again %v after the kill", c.Primary(), time.Since(killed).Round(time.Millisecond))
	if got := c.Command("heal"); got != "ok" {
		t.Fatalf("heal: %q", got)
	}
	for i := 22; i <= 25; i++ {
		w.write(i)
	}
	for _, f := range w.failed {
		t.Error(f)
	}
	u.waitPrimaryEverywhere(t, urls, c.Primary(), 90*time.Second)
	for _, base := range urls {
		u.waitAck(t, base, ackView.holdsAll)
		w.checkStored(t, base)
	}
}
