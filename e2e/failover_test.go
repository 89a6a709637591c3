package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"notesync/cluster/local"
	"notesync/cluster/local/lease"
	"notesync/internal/localcluster"
	"notesync/internal/testenv"
)

// `notesync cluster` under its Consul lease (docs/PROTOCOL.md §11), driven
// as a person drives it: promote, kill and stop on its standard input, and
// the primary moves.
func TestFailover(t *testing.T) {
	testenv.NeedFUSE(t)
	b := buildBinaries(t)
	host := localcluster.RandomLoopback()
	args := []string{"cluster", "-n", "3", "-dir", filepath.Join(t.TempDir(), "cluster"), "-host", host, "-base-port", strconv.Itoa(localcluster.BasePort), "-config", b.Config}
	p := startCLI(t, b.Exe, append(os.Environ(), "LITEFS_BIN="+b.LiteFS, "LOG_LEVEL=warn"), args...)
	if line := p.waitFor(t, "node1 ", 120*time.Second); !strings.HasSuffix(strings.TrimSpace(line), "primary") {
		t.Fatalf("node1 is not the first primary: %q", line)
	}
	p.waitFor(t, "cluster ready", 120*time.Second)
	p.waitFor(t, "type a command", time.Second)
	var urls []string
	for i := range 3 {
		urls = append(urls, fmt.Sprintf("http://%s:%d", host, localcluster.BasePort+i))
	}
	if got := p.ask(t, "status"); got != "primary node1" {
		t.Fatalf("status: %q, want primary node1", got)
	}
	u := signup(t, urls[0], "mover")
	tab, err := u.Dial(urls[0], "")
	if err != nil {
		t.Fatal(err)
	}
	defer tab.CloseNow()
	read(tab, 5*time.Second)

	t.Run("promote hands the lease over, and a write through another node reaches a tab on the old primary", func(t *testing.T) {
		start := time.Now()
		if got := p.ask(t, "promote node2"); got != "ok" {
			t.Fatalf("promote node2: %q", got)
		}
		u.waitPrimaryEverywhere(t, urls, "node2", 5*time.Second)
		t.Logf("node2 primary on every node %v after promote", time.Since(start).Round(time.Millisecond))
		id := u.writeRetrying(t, urls[2], "after the handoff", "handoff-1", 5*time.Second)
		for deadline := time.Now().Add(10 * time.Second); ; {
			e, err := read(tab, time.Until(deadline))
			if err != nil {
				t.Fatalf("the tab on node1 was not pushed note %d: %v", id, err)
			}
			if e.Type == "note_changed" && e.NoteID == id {
				break
			}
		}
	})

	for _, c := range []struct{ cmd, what string }{{"kill", "SIGKILL"}, {"stop", "SIGTERM"}} {
		t.Run(c.cmd+" of the primary: a candidate takes the lease, writes resume, every node agrees", func(t *testing.T) {
			old := strings.TrimPrefix(p.ask(t, "status"), "primary ")
			start := time.Now()
			if got := p.ask(t, c.cmd+" "+old); got != "ok" {
				t.Fatalf("%s %s: %q", c.cmd, old, got)
			}
			bound := lease.DefaultTTL + 2*time.Second
			if c.cmd == "stop" {
				// The stopping primary hands the lease to another node.
				next := p.waitNewPrimary(t, old, bound+5*time.Second)
				t.Logf("%s primary %v after %s of %s", next, time.Since(start).Round(time.Millisecond), c.what, old)
			}
			// After a kill, the lease is free once the dead node's session
			// ends (the TTL); any candidate may take it then, the killed
			// node too once the launcher has started it again. Either way
			// writes through another node are answered again.
			other := urls[0]
			if old == "node1" {
				other = urls[2]
			}
			u.writeRetrying(t, other, "after the "+c.cmd, c.cmd+"-1", bound+10*time.Second)
			took := time.Since(start)
			t.Logf("writes answered 201 again %v after %s of %s", took.Round(time.Millisecond), c.what, old)
			if took > bound+3*time.Second {
				t.Errorf("writes answered again after %v, want within the TTL + 2 s (%v) and the time a write takes to be forwarded and retried", took, bound)
			}
			next := strings.TrimPrefix(p.ask(t, "status"), "primary ")
			u.waitPrimaryEverywhere(t, urls, next, 60*time.Second) // the old primary among them, back
		})
	}
}

// waitNewPrimary asks status until it names a primary other than old.
func (p *cliProc) waitNewPrimary(t *testing.T, old string, within time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(within); ; {
		got := p.ask(t, "status")
		if name, ok := strings.CutPrefix(got, "primary "); ok && name != old {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("no primary but %s within %v: %q", old, within, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// primaryOn names the member that base's /api/cluster says is primary.
func (u *user) primaryOn(base string) string {
	status, body, _, err := u.Try("GET", base+"/api/cluster", "")
	if err != nil || status != http.StatusOK {
		return ""
	}
	var st struct{ Members []struct{ Name, Role string } }
	if json.Unmarshal([]byte(body), &st) != nil {
		return ""
	}
	for _, m := range st.Members {
		if m.Role == "primary" {
			return m.Name
		}
	}
	return ""
}

// waitPrimaryEverywhere waits until every node's /api/cluster names want
// as the primary.
func (u *user) waitPrimaryEverywhere(t *testing.T, urls []string, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i, base := range urls {
		for got := u.primaryOn(base); got != want; got = u.primaryOn(base) {
			if time.Now().After(deadline) {
				t.Fatalf("node%d's /api/cluster names %q as primary after %v, want %s", i+1, got, within, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// writeRetrying creates a note through base, retrying with the same
// Idempotency-Key until it is answered 201, and returns its id.
func (u *user) writeRetrying(t *testing.T, base, body, key string, within time.Duration) int64 {
	t.Helper()
	for deadline := time.Now().Add(within); ; {
		status, resp, _, err := u.Try("POST", base+"/api/notes", `{"body":"`+body+`"}`, "Idempotency-Key", key)
		if err == nil && status == http.StatusCreated {
			var created struct{ Note struct{ ID int64 } }
			if err := json.Unmarshal([]byte(resp), &created); err != nil {
				t.Fatal(err)
			}
			return created.Note.ID
		}
		if time.Now().After(deadline) {
			t.Fatalf("write through %s not answered 201 within %v: %d %s %v", base, within, status, resp, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// With -netns each node reaches the lease server through a relay in its
// own namespace, which a partition of the node cuts too: a primary cut off
// from every other node cannot renew and loses the lease within the TTL
// plus 2 s. The others take it once their replication stream from it ends:
// LiteFS v0.5.14 sets no read deadline on that stream, so a replica whose
// primary vanished behind a partition that drops packets notices only
// when TCP does, after the heal at the latest. After the heal, a primary
// is elected, writes resume, and every node names the same primary.
func TestFailoverNetnsPartition(t *testing.T) {
	c := startNetnsClusterLease(t, 3, local.LeaseConsul)
	if got := c.Command("status"); got != "no cuts; primary node1" {
		t.Fatalf("status: %q, want node1 primary and no cuts", got)
	}
	u := signup(t, c.URL(1), "isolated")
	start := time.Now()
	if got := c.Command("partition node1"); got != "ok" {
		t.Fatalf("partition node1: %q", got)
	}
	defer c.Heal()
	bound := lease.DefaultTTL + 2*time.Second
	for c.Primary() == "node1" {
		if time.Since(start) > bound+5*time.Second {
			t.Fatalf("node1 still holds the lease %v after the partition", time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("node1 lost the lease %v after it was cut off; primary now %q", took.Round(time.Millisecond), c.Primary())
	if took > bound {
		t.Errorf("node1 lost the lease after %v, want within %v", took, bound)
	}
	time.Sleep(time.Until(start.Add(bound + 3*time.Second)))
	t.Logf("primary %q %v after the partition", c.Primary(), time.Since(start).Round(time.Millisecond))
	healed := time.Now()
	if got := c.Command("heal"); got != "ok" {
		t.Fatalf("heal: %q", got)
	}
	next := ""
	for next = c.Primary(); next == ""; next = c.Primary() {
		if time.Since(healed) > 60*time.Second {
			t.Fatal("no primary 60 s after the heal")
		}
		time.Sleep(100 * time.Millisecond)
	}
	u.writeRetrying(t, c.URL(2), "after the heal", "healed-1", 60*time.Second)
	t.Logf("%s primary, writes answered 201 again %v after the heal", next, time.Since(healed).Round(time.Millisecond))
	u.waitPrimaryEverywhere(t, []string{c.URL(1), c.URL(2), c.URL(3)}, c.Primary(), 60*time.Second)
}
