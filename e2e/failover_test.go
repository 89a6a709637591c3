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
		t.Run(c.cmd+" of the primary: another node takes the lease, writes resume, it comes back a replica", func(t *testing.T) {
			old := strings.TrimPrefix(p.ask(t, "status"), "primary ")
			start := time.Now()
			if got := p.ask(t, c.cmd+" "+old); got != "ok" {
				t.Fatalf("%s %s: %q", c.cmd, old, got)
			}
			bound := lease.DefaultTTL + 2*time.Second
			next := p.waitNewPrimary(t, old, bound+5*time.Second)
			took := time.Since(start)
			t.Logf("%s primary %v after %s of %s", next, took.Round(time.Millisecond), c.what, old)
			if took > bound {
				t.Errorf("new primary after %v, want within %v", took, bound)
			}
			other := urls[0]
			if next == "node1" || old == "node1" {
				other = urls[2]
			}
			u.writeRetrying(t, other, "after the "+c.cmd, c.cmd+"-1", 10*time.Second)
			t.Logf("writes answered 201 again %v after %s", time.Since(start).Round(time.Millisecond), c.what)
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
