package e2e

// Presence across nodes (docs/PROTOCOL.md §7) on the LiteFS cluster: the
// built binary, three nodes, tabs as WebSocket and SSE clients.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// presenceMsg is a presence message.
type presenceMsg struct {
	Type       string         `json:"type"`
	Tabs       int            `json:"tabs"`
	Nodes      map[string]int `json:"nodes"`
	Editing    map[string]int `json:"editing"`
	OwnEditing string         `json:"own_editing"`
	Conn       string         `json:"conn"` // of hello
}

// watcher is a tab that keeps the last presence it was told.
type watcher struct {
	name string
	conn string // from hello
	ws   *websocket.Conn

	mu   sync.Mutex
	last presenceMsg
	at   time.Time
}

func (w *watcher) see(p []byte) {
	var m presenceMsg
	if json.Unmarshal(p, &m) != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch m.Type {
	case "hello":
		w.conn = m.Conn
	case "presence":
		w.last, w.at = m, time.Now()
	}
}

// wsTab opens a WebSocket tab of u on base.
func wsTab(t *testing.T, u *user, base, name string) *watcher {
	t.Helper()
	ws, err := u.Dial(base, "")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	w := &watcher{name: name, ws: ws}
	go func() {
		for {
			_, p, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			w.see(p)
		}
	}()
	return w
}

// sseTab opens a Server-Sent Events tab of u on base.
func sseTab(t *testing.T, u *user, base, name string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	req.Header.Set("Cookie", u.Cookie())
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("%s: GET /events: %v %v", name, resp, err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	w := &watcher{name: name}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				w.see([]byte(data))
			}
		}
	}()
	return w
}

// wait waits until the tab's last presence shows tabs on nodes, editing
// edits, and returns when that was first seen.
func (w *watcher) wait(t *testing.T, within time.Duration, tabs int, nodes, edits map[string]int) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		w.mu.Lock()
		p, at := w.last, w.at
		w.mu.Unlock()
		if p.Tabs == tabs && maps.Equal(p.Nodes, nodes) && maps.Equal(p.Editing, edits) {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: presence %+v, want %d tabs on %v editing %v, within %v", w.name, p, tabs, nodes, edits, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *watcher) connID(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		id := w.conn
		w.mu.Unlock()
		if id != "" {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no hello with a conn id", w.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterPresence(t *testing.T) {
	c := startCluster(t, 3)
	alice := signup(t, c.URL(1), "alice")
	bob := signup(t, c.URL(1), "bob")
	none := map[string]int{}

	a1 := wsTab(t, alice, c.URL(1), "alice on node1")
	a3 := wsTab(t, alice, c.URL(3), "alice on node3")
	t.Run("tabs on node1 and node3 see each other within 2 s", func(t *testing.T) {
		both := map[string]int{"node1": 1, "node3": 1}
		a1.wait(t, 2*time.Second, 2, both, none)
		a3.wait(t, 2*time.Second, 2, both, none)
	})

	a2 := sseTab(t, alice, c.URL(2), "alice on node2, over SSE")
	all := map[string]int{"node1": 1, "node2": 1, "node3": 1}
	t.Run("an SSE tab on node2 counts", func(t *testing.T) {
		for _, w := range []*watcher{a1, a2, a3} {
			w.wait(t, 2*time.Second, 3, all, none)
		}
	})

	t.Run("an editor reported on node1 shows on node3, and an SSE tab's on every node", func(t *testing.T) {
		if err := a1.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"editing","note_id":5}`)); err != nil {
			t.Fatal(err)
		}
		a3.wait(t, 2*time.Second, 3, all, map[string]int{"5": 1})
		status, body, _, err := alice.Try("POST", c.URL(2)+"/api/editing", fmt.Sprintf(`{"conn":%q,"note_id":7}`, a2.connID(t)))
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("POST /api/editing: %d %s %v", status, body, err)
		}
		for _, w := range []*watcher{a1, a3} {
			w.wait(t, 2*time.Second, 3, all, map[string]int{"5": 1, "7": 1})
		}
		if p := a1.last; p.OwnEditing != "5" {
			t.Errorf("node1's tab: own_editing %q, want 5", p.OwnEditing)
		}
	})

	t.Run("another user sees nothing, and cannot report for alice's tab", func(t *testing.T) {
		b1 := wsTab(t, bob, c.URL(1), "bob on node1")
		b1.wait(t, 2*time.Second, 1, map[string]int{"node1": 1}, none)
		status, _, _, _ := bob.Try("POST", c.URL(2)+"/api/editing", fmt.Sprintf(`{"conn":%q,"note_id":9}`, a2.connID(t)))
		if status != http.StatusNotFound {
			t.Errorf("bob reporting for alice's SSE tab: %d, want 404", status)
		}
		// A presence change goes out within 50 ms, and reaches other nodes in
		// a packet: 300 ms is room for several.
		time.Sleep(300 * time.Millisecond)
		b1.wait(t, time.Second, 1, map[string]int{"node1": 1}, none)
		a1.wait(t, time.Second, 3, all, map[string]int{"5": 1, "7": 1})
	})

	t.Run("the cluster panel counts the user's own connections from the same data", func(t *testing.T) {
		status, body, _, err := alice.Try("GET", c.URL(3)+"/api/cluster", "")
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET /api/cluster: %d %s %v", status, body, err)
		}
		var st struct {
			Members []struct {
				Name        string
				Connections int
			}
		}
		json.Unmarshal([]byte(body), &st)
		got := map[string]int{}
		for _, m := range st.Members {
			got[m.Name] = m.Connections
		}
		// alice's own tabs, one on each node: bob's on node1 is his.
		if want := map[string]int{"node1": 1, "node2": 1, "node3": 1}; !maps.Equal(got, want) {
			t.Errorf("connections %v, want %v", got, want)
		}
	})

	t.Run("a frozen node3's tabs stop counting once it is declared dead, and count again when it wakes", func(t *testing.T) {
		edits := map[string]int{"5": 1, "7": 1}
		pid, _ := c.Node(3)
		frozen := time.Now()
		if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		woken := false
		wake := func() {
			if !woken {
				woken = true
				syscall.Kill(-pid, syscall.SIGCONT)
			}
		}
		defer wake()
		at := a1.wait(t, 30*time.Second, 2, map[string]int{"node1": 1, "node2": 1}, edits)
		t.Logf("memberlist declared node3 dead and its tabs stopped counting %v after it froze", at.Sub(frozen).Round(10*time.Millisecond))
		wake()
		// Its socket may have been dropped meanwhile (the page reconnects);
		// what counts is that node1 and node2 agree with node3 again.
		if countOpen(a3) == 0 {
			a3 = wsTab(t, alice, c.URL(3), "alice on node3, reconnected")
		}
		for _, w := range []*watcher{a1, a2, a3} {
			w.wait(t, 30*time.Second, 3, all, edits)
		}
	})

	t.Run("SIGKILL of node3 removes its tabs within failure detection, and its restart converges", func(t *testing.T) {
		pid, done := c.Node(3)
		killed := time.Now()
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-done
		without3 := map[string]int{"node1": 1, "node2": 1}
		edits := map[string]int{"5": 1, "7": 1}
		at := a1.wait(t, 20*time.Second, 2, without3, edits)
		t.Logf("node3's tabs stopped counting on node1 %v after the kill", at.Sub(killed).Round(10*time.Millisecond))
		a2.wait(t, 2*time.Second, 2, without3, edits)

		// The supervisor starts node3 again; a tab there counts everywhere.
		var again *watcher
		deadline := time.Now().Add(60 * time.Second)
		for again == nil && time.Now().Before(deadline) {
			if ws, err := alice.Dial(c.URL(3), ""); err == nil {
				ws.CloseNow()
				again = wsTab(t, alice, c.URL(3), "alice on node3, restarted")
			} else {
				time.Sleep(300 * time.Millisecond)
			}
		}
		if again == nil {
			t.Fatal("node3 did not come back")
		}
		for _, w := range []*watcher{a1, a2, again} {
			w.wait(t, 10*time.Second, 3, all, edits)
		}
	})
}

// countOpen is 1 while w's socket is open, else 0.
func countOpen(w *watcher) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.ws.Ping(ctx); err != nil {
		return 0
	}
	return 1
}
