package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
	"notesync/cluster"
)

// TestHistoryDiverged plays a failover that dropped changes a tab had
// seen (docs/PROTOCOL.md §11): the database goes back under the node,
// and the history that goes on from there reaches the tab's version
// again with another change, or not at all.
func TestHistoryDiverged(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, func(c *Config) { c.ResumeWait = 200 * time.Millisecond })
	alice := ts.browser(t)
	alice.signup("alice")
	u, err := ts.store.Authenticate(ctx, "alice", "password1")
	if err != nil {
		t.Fatal(err)
	}
	create := func() {
		t.Helper()
		if _, err := ts.store.CreateNote(ctx, u.ID, "a note", app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		create()
	}
	_, seen := dialResume(t, ts, alice, "")
	if seen["version"] != 3.0 || seen["change"] == "" {
		t.Fatalf("hello %v, want version 3 and its change", seen)
	}
	saw := fmt.Sprint(seen["change"])

	// The node's database goes back to version 2 and another change
	// reaches 3.
	sqlitetest.RollBack(t, ts.store, u.ID, 2, 2)
	create()
	now, err := ts.store.ChangeAt(ctx, u.ID, 3)
	if err != nil || now == saw || now == "" {
		t.Fatalf("change at 3 is %q (%v), the tab saw %q: want another", now, err, saw)
	}

	t.Run("a tab that saw the dropped change is told to start again", func(t *testing.T) {
		ws, hello := dialResume(t, ts, alice, "?since=3&change="+saw)
		m := readWS(t, ws)
		if hello["change"] != now || m["op"] != "sync" || m["diverged"] != true || m["version"] != 3.0 || m["change"] != now {
			t.Fatalf("hello %v then %v, want a diverged sync at 3, %s", hello, m, now)
		}
	})

	t.Run("a tab that saw this history resumes as before", func(t *testing.T) {
		ws, _ := dialResume(t, ts, alice, "?since=3&change="+now)
		create()
		if m := readWS(t, ws); m["op"] != "created" || m["version"] != 4.0 {
			t.Fatalf("after hello %v, want version 4 created", m)
		}
	})

	t.Run("a list read that names the dropped change says the history changed", func(t *testing.T) {
		_, body := alice.Do("GET", "/api/notes?min_version=3&change="+saw, "", "")
		var l struct {
			Version  int64
			Change   string
			Diverged bool
		}
		if err := json.Unmarshal([]byte(body), &l); err != nil || !l.Diverged || l.Version != 4 {
			t.Fatalf("GET /api/notes: %s, want diverged at version 4", body)
		}
		resp, _ := alice.Do("GET", "/notes?min_version=3&change="+now, "", "")
		if resp.Header.Get("X-Notes-Diverged") != "" || resp.Header.Get("X-Notes-Change") != l.Change {
			t.Fatalf("GET /notes naming this history: X-Notes-Diverged %q, X-Notes-Change %q; want none and %q",
				resp.Header.Get("X-Notes-Diverged"), resp.Header.Get("X-Notes-Change"), l.Change)
		}
	})

	t.Run("a tab ahead of the database is told to start again from the database's version", func(t *testing.T) {
		_, hello := dialResume(t, ts, alice, "")
		ahead := fmt.Sprint(hello["change"])
		sqlitetest.RollBack(t, ts.store, u.ID, 2, 2)
		ws, hello := dialResume(t, ts, alice, "?since=4&change="+ahead)
		if m := readWS(t, ws); hello["version"] != 2.0 || m["diverged"] != true || m["version"] != 2.0 {
			t.Fatalf("hello %v then %v, want a diverged sync at 2", hello, m)
		}
	})
}

// primaryNode is node1 of twoNodes on LiteFS, the primary.
type primaryNode struct{ twoNodes }

func (primaryNode) Replication() *cluster.Replication {
	return &cluster.Replication{State: "primary", TXID: 8}
}

// behindReplica is node2 of twoNodes, a replica one transaction behind
// the primary.
type behindReplica struct{ twoNodes }

func (behindReplica) Replication() *cluster.Replication {
	return &cluster.Replication{State: "current", Primary: "node1", TXID: 7, PrimaryTXID: 8}
}

// TestResumeWaitsOnlyWhereItMayBeBehind checks that a tab ahead of its node
// waits for the node to catch up only on a replica that may be behind: on
// the primary, or a node alone, it is told at once that its history is
// gone.
func TestResumeWaitsOnlyWhereItMayBeBehind(t *testing.T) {
	const wait = 400 * time.Millisecond
	for _, c := range []struct {
		name    string
		cluster ClusterInfo
		waits   bool
	}{
		{"a node alone", nil, false},
		{"the primary", primaryNode{}, false},
		{"a replica behind the primary", behindReplica{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newTestServer(t, func(cfg *Config) { cfg.ResumeWait, cfg.Cluster = wait, c.cluster })
			b := ts.browser(t)
			b.signup("alice")
			began := time.Now()
			ws, _ := dialResume(t, ts, b, "?since=9&change=abc")
			took := time.Since(began)
			if m := readWS(t, ws); m["diverged"] != true || m["version"] != 0.0 {
				t.Fatalf("after hello %v, want a diverged sync at 0", m)
			}
			if c.waits != (took >= wait) {
				t.Fatalf("greeted after %v; want a wait of %v: %v", took, wait, c.waits)
			}
		})
	}
}

// dialResume opens a WebSocket as b's session with query, and returns it
// with its hello.
func dialResume(t *testing.T, ts *testServer, b *browser, query string) (*websocket.Conn, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws"+query, &websocket.DialOptions{HTTPClient: b.HTTP})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %d %v", query, status, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("dial %s: %d", query, resp.StatusCode)
	}
	t.Cleanup(func() { ws.CloseNow() })
	hello := readWS(t, ws)
	if hello["type"] != "hello" {
		t.Fatalf("first message %v, want hello", hello)
	}
	return ws, hello
}
