package e2e

// Network faults on one machine (docs/PROTOCOL.md §10): every node in a
// network namespace of its own, links between nodes cut by nftables on the
// bridge that joins them, while the test, like a browser, keeps reaching
// every node through the launcher's forwards. One cluster serves every
// property in turn; each heals what it cut. A property that needs a
// feature elsewhere (presence across a partition, for one) is one more
// subtest of TestNetnsFaults built from the same pieces: liveTab,
// Partition/Heal, waitTXID.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/cluster"
	"notesync/cluster/local"
	"notesync/internal/testenv"
)

// netnsCluster is a cluster started with -netns, with each node's mount
// open for reading its replication position.
type netnsCluster struct {
	*localCluster
	lfs []*cluster.LiteFS // node i at lfs[i-1]
}

// startNetnsCluster starts n nodes, each in a network namespace of its own,
// under a static lease: §10's faults are tested with node1 primary
// whatever is cut, as a primary cut off from both replicas that keeps
// taking writes. It checks when the test ends that every namespace is gone.
func startNetnsCluster(t *testing.T, n int) *netnsCluster {
	t.Helper()
	return startNetnsClusterLease(t, n, local.LeaseStatic)
}

// startNetnsClusterLease is startNetnsCluster under the lease kind given.
func startNetnsClusterLease(t *testing.T, n int, kind string) *netnsCluster {
	t.Helper()
	testenv.NeedNetns(t)
	l := newLauncher(t, n)
	l.Netns = true
	l.Lease = kind
	var names []string
	t.Cleanup(func() { // runs after the launcher has stopped
		for _, name := range names {
			if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
				t.Errorf("network namespace %s is left behind", name)
			}
		}
	})
	nc := &netnsCluster{localCluster: runLauncher(t, l)}
	names = l.Namespaces()
	for i := 1; i <= n; i++ {
		nc.lfs = append(nc.lfs, &cluster.LiteFS{Dir: filepath.Join(l.Dir, "node"+strconv.Itoa(i), "fuse"), DB: "notesync.db"})
	}
	t.Cleanup(func() { // before the launcher stops: an open file holds a mount
		for _, f := range nc.lfs {
			f.Close()
		}
	})
	return nc
}

// txid is node i's replication position.
func (c *netnsCluster) txid(t testing.TB, i int) uint64 {
	t.Helper()
	v, err := c.lfs[i-1].TXID()
	if err != nil {
		t.Fatalf("node%d position: %v", i, err)
	}
	return v
}

// waitTXID waits until node i holds target and returns when it did.
func (c *netnsCluster) waitTXID(t testing.TB, i int, target uint64, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if v, err := c.lfs[i-1].TXID(); err == nil && v >= target {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("node%d did not reach txid %d within %v (at %d)", i, target, within, c.txid(t, i))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// caughtUp waits until every replica holds what the primary holds now.
func (c *netnsCluster) caughtUp(t testing.TB) {
	t.Helper()
	target := c.txid(t, 1)
	for i := 2; i <= c.N; i++ {
		c.waitTXID(t, i, target, 30*time.Second)
	}
}

// liveTab is a WebSocket tab whose messages a goroutine reads as they
// arrive, stamped with their arrival: a quiet spell never closes it (a
// read deadline would), as in a browser.
type liveTab struct {
	name   string
	base   string
	hello  event
	events chan stamped
	ended  chan error
}

type stamped struct {
	event
	at time.Time
}

func openLiveTab(t testing.TB, u *user, base, name string) *liveTab {
	t.Helper()
	ws, err := u.Dial(base, "")
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	hello, err := read(ws, 10*time.Second)
	if err != nil || hello.Type != "hello" {
		t.Fatalf("%s: hello: %+v %v", name, hello, err)
	}
	tb := &liveTab{name: name, base: base, hello: hello, events: make(chan stamped, 4096), ended: make(chan error, 1)}
	go func() {
		for {
			_, p, err := ws.Read(context.Background())
			if err != nil {
				tb.ended <- err
				return
			}
			var e event
			if json.Unmarshal(p, &e) == nil && e.Type == "note_changed" {
				tb.events <- stamped{e, time.Now()}
			}
		}
	}()
	return tb
}

// expectChanges checks that the tab received every change after its hello
// up to version to, once and in order, by deadline, on the socket it
// opened; and that the refetch after each shows at least that version.
func (tb *liveTab) expectChanges(t testing.TB, u *user, to int64, deadline time.Time) {
	t.Helper()
	for want := tb.hello.Version + 1; want <= to; want++ {
		var e stamped
		select {
		case e = <-tb.events:
		case err := <-tb.ended:
			t.Fatalf("%s: the socket ended (%v) while waiting for v%d of v%d", tb.name, err, want, to)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("%s: no v%d of v%d by the deadline", tb.name, want, to)
		}
		if e.Version != want || e.Op != "created" {
			t.Fatalf("%s: got %+v, want created v%d (missed, duplicated or out of order)", tb.name, e.event, want)
		}
		if e.at.After(deadline) {
			t.Fatalf("%s: v%d arrived %v after the deadline", tb.name, want, e.at.Sub(deadline))
		}
		if v, err := u.notesVersion(tb.base); err != nil || v < want {
			t.Fatalf("%s: stale refetch: pushed v%d, GET answered v%d (%v)", tb.name, want, v, err)
		}
	}
	tb.hello.Version = to
	select {
	case e := <-tb.events:
		t.Fatalf("%s: extra change after v%d: %+v", tb.name, to, e.event)
	case err := <-tb.ended:
		t.Fatalf("%s: the socket ended: %v", tb.name, err)
	default:
	}
}

// create writes a note and returns the status, the version it made and
// how long the answer took.
func (u *user) create(base, body, key string) (int, int64, http.Header, time.Duration, error) {
	start := time.Now()
	status, resp, hdr, err := u.Try("POST", base+"/api/notes", fmt.Sprintf(`{"body":%q}`, body), "Idempotency-Key", key)
	var r struct{ Version int64 }
	if status == http.StatusCreated {
		err = json.Unmarshal([]byte(resp), &r)
	} else if err == nil {
		err = fmt.Errorf("%d %s", status, strings.TrimSpace(resp))
	}
	return status, r.Version, hdr, time.Since(start), err
}

// mustCreate writes a note that must be acknowledged.
func (u *user) mustCreate(t testing.TB, base, body, key string) int64 {
	t.Helper()
	status, v, _, _, err := u.create(base, body, key)
	if status != http.StatusCreated {
		t.Fatalf("write %q on %s: %v", key, base, err)
	}
	return v
}

// refusedWrite sends a write that cannot reach the primary: it must be
// answered 503 or 504 with Retry-After within 5 s.
func (u *user) refusedWrite(t testing.TB, base, body, key string) {
	t.Helper()
	status, _, hdr, took, err := u.create(base, body, key)
	if (status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout) || hdr.Get("Retry-After") == "" || took > 5*time.Second {
		t.Fatalf("write %q on %s with no primary reachable: %d (Retry-After %q) after %v: %v, want 503 or 504 with Retry-After within 5 s",
			key, base, status, hdr.Get("Retry-After"), took, err)
	}
	t.Logf("write %q on %s: %d after %v", key, base, status, took.Round(time.Millisecond))
}

// retryWrite repeats a write with its key, as the page does, until it is
// acknowledged, and returns the version it made.
func (u *user) retryWrite(t testing.TB, base, body, key string) int64 {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		status, v, _, _, err := u.create(base, body, key)
		if status == http.StatusCreated {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry of %q on %s after the heal: %v", key, base, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// countNotes counts the user's notes with body on a node.
func (u *user) countNotes(t testing.TB, base, body string) int {
	t.Helper()
	status, resp, _, err := u.Try("GET", base+"/api/notes", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /api/notes on %s: %d %v", base, status, err)
	}
	var list struct{ Notes []struct{ Body string } }
	if err := json.Unmarshal([]byte(resp), &list); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, note := range list.Notes {
		if note.Body == body {
			n++
		}
	}
	return n
}

// refused is a write sent to a node cut off from the primary.
type refused struct {
	base, key string
}

// writeThroughCut writes on the primary every 400 ms for d, all of which
// must be acknowledged, and sends a write to each node of cutOff twice:
// early, and again once gossip has given the primary up; each must be
// refused (see refusedWrite). It returns the last version written and the
// refused writes, whose key is also their body.
func writeThroughCut(t testing.TB, u *user, c *netnsCluster, d time.Duration, name string, cutOff ...int) (int64, []refused) {
	t.Helper()
	var last int64
	var out []refused
	start := time.Now()
	late := false
	for i := 0; time.Since(start) < d; i++ {
		if i == 2 || !late && time.Since(start) > d/2 {
			late = i != 2
			for _, node := range cutOff {
				r := refused{base: c.URL(node), key: fmt.Sprintf("%s-on-node%d-%d", name, node, i)}
				u.refusedWrite(t, r.base, r.key, r.key)
				out = append(out, r)
			}
		}
		last = u.mustCreate(t, c.URL(1), "written during "+name, name+"-"+strconv.Itoa(i))
		time.Sleep(400 * time.Millisecond)
	}
	return last, out
}

// retryRefused retries each refused write on its node, as the page does,
// and returns the last version they made.
func retryRefused(t testing.TB, u *user, writes []refused) int64 {
	t.Helper()
	var last int64
	for _, w := range writes {
		last = max(last, u.retryWrite(t, w.base, w.key, w.key))
	}
	return last
}

// checkAppliedOnce checks that each retried write is there once.
func checkAppliedOnce(t testing.TB, u *user, base string, writes []refused) {
	t.Helper()
	for _, w := range writes {
		if n := u.countNotes(t, base, w.key); n != 1 {
			t.Errorf("the write %q retried after the heal appears %d times, want once", w.key, n)
		}
	}
}

// replicationOf reads what a node says of its replication on /api/cluster
// and /readyz.
func (u *user) replicationOf(t testing.TB, base string) (fromCluster, fromReadyz cluster.Replication) {
	t.Helper()
	var st struct{ Replication cluster.Replication }
	if status, body, _, err := u.Try("GET", base+"/api/cluster", ""); err != nil || status != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("GET /api/cluster on %s: %d %s %v", base, status, body, err)
	}
	var rd struct{ Replication cluster.Replication }
	if status, body, _, err := u.Try("GET", base+"/readyz", ""); err != nil || status != http.StatusOK || json.Unmarshal([]byte(body), &rd) != nil {
		t.Fatalf("GET /readyz on %s: %d %s %v", base, status, body, err)
	}
	return st.Replication, rd.Replication
}

func TestNetnsFaults(t *testing.T) {
	c := startNetnsCluster(t, 3)

	t.Run("each node has an address of its own and the machine has none of theirs", func(t *testing.T) {
		u := signup(t, c.URL(1), "addresses")
		var st struct {
			Members []struct{ Name, State string }
		}
		_, body, _, _ := u.Try("GET", c.URL(1)+"/api/cluster", "")
		if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Members) != 3 {
			t.Fatalf("/api/cluster: %s %v", body, err)
		}
		for _, m := range st.Members {
			if m.State != "alive" {
				t.Errorf("%s is %s", m.Name, m.State)
			}
		}
		// /api/cluster shows no addresses (docs/PROTOCOL.md §8): ask each
		// node's namespace for its own.
		for i, ns := range c.Namespaces()[1:] {
			out, err := exec.Command("ip", "-n", ns, "-4", "-o", "addr", "show").CombinedOutput()
			if want := " 10.77.0." + strconv.Itoa(i+1) + "/"; err != nil || !strings.Contains(string(out), want) {
				t.Errorf("namespace %s: %v, want an address%s: %s", ns, err, want, out)
			}
		}
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if strings.HasPrefix(a.String(), "10.77.0.") {
				t.Errorf("the machine has the cluster's address %s: packets could leave the namespaces", a)
			}
		}
	})

	t.Run("a replica cut off for 20 s keeps its tabs, refuses writes fast and catches up in order", func(t *testing.T) {
		u := signup(t, c.URL(1), "cutoff")
		c.caughtUp(t)
		tabs := []*liveTab{openLiveTab(t, u, c.URL(3), "node3 tab A"), openLiveTab(t, u, c.URL(3), "node3 tab B")}
		primaryTab := openLiveTab(t, u, c.URL(1), "node1 tab")
		if err := c.Partition("node3"); err != nil {
			t.Fatal(err)
		}
		defer c.Heal()
		last, refused := writeThroughCut(t, u, c, 20*time.Second, "cutoff", 3)
		if r, rd := u.replicationOf(t, c.URL(3)); r.State != "stale" || rd.State != "stale" {
			t.Errorf("cut off for 20 s, node3 says %+v on /api/cluster and %+v on /readyz, want stale", r, rd)
		}
		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		last = max(last, retryRefused(t, u, refused))
		caught := c.waitTXID(t, 3, c.txid(t, 1), 60*time.Second)
		t.Logf("node3 caught up %v after the heal", caught.Sub(healed).Round(time.Millisecond))
		for _, tb := range tabs {
			tb.expectChanges(t, u, last, caught.Add(2*time.Second))
		}
		primaryTab.expectChanges(t, u, last, time.Now().Add(5*time.Second))
		checkAppliedOnce(t, u, c.URL(1), refused)
	})

	t.Run("a primary cut off from both replicas takes writes; the replicas refuse theirs, then converge", func(t *testing.T) {
		u := signup(t, c.URL(1), "headless")
		c.caughtUp(t)
		tabs := map[int]*liveTab{2: openLiveTab(t, u, c.URL(2), "node2 tab"), 3: openLiveTab(t, u, c.URL(3), "node3 tab")}
		if err := c.Partition("node1"); err != nil {
			t.Fatal(err)
		}
		defer c.Heal()
		last, refused := writeThroughCut(t, u, c, 12*time.Second, "headless", 2, 3)
		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		last = max(last, retryRefused(t, u, refused))
		target := c.txid(t, 1)
		for node, tb := range tabs {
			caught := c.waitTXID(t, node, target, 60*time.Second)
			tb.expectChanges(t, u, last, caught.Add(2*time.Second))
		}
		checkAppliedOnce(t, u, c.URL(1), refused)
	})

	t.Run("a one-way cut from the primary to a replica loses nothing, and the replica says what it sees", func(t *testing.T) {
		u := signup(t, c.URL(1), "oneway")
		c.caughtUp(t)
		tab := openLiveTab(t, u, c.URL(3), "node3 tab")
		if err := c.OneWay("node1", "node3"); err != nil {
			t.Fatal(err)
		}
		defer c.Heal()
		var last int64
		var bodies []string
		var seen cluster.Replication
		cut := time.Now()
		for i := 0; ; i++ {
			body := "one way " + strconv.Itoa(i)
			last = u.mustCreate(t, c.URL(1), body, "oneway-"+strconv.Itoa(i))
			bodies = append(bodies, body)
			r, rd := u.replicationOf(t, c.URL(3))
			if r.State == "stale" && rd.State == "stale" {
				seen = r
				break
			}
			if time.Since(cut) > 20*time.Second {
				t.Fatalf("node3 has not said it is stale 20 s into the cut: /api/cluster %+v, /readyz %+v", r, rd)
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Logf("node3 after %v: %s", time.Since(cut).Round(time.Millisecond), seen.Reason)
		if seen.Primary != "node1" || !strings.Contains(seen.Reason, "node1") || seen.LagMS < cluster.StaleAfter.Milliseconds() {
			t.Errorf("node3's report does not say it cannot hear node1: %+v", seen)
		}
		if r, _ := u.replicationOf(t, c.URL(2)); r.State != "current" {
			t.Errorf("node2, whose links are whole, says %+v", r)
		}
		u.refusedWrite(t, c.URL(3), "written on node3 during the one-way cut", "oneway-on-node3")
		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		last = max(last, u.retryWrite(t, c.URL(3), "written on node3 during the one-way cut", "oneway-on-node3"))
		caught := c.waitTXID(t, 3, c.txid(t, 1), 60*time.Second)
		tab.expectChanges(t, u, last, caught.Add(2*time.Second))
		for _, body := range append(bodies, "written on node3 during the one-way cut") {
			if n := u.countNotes(t, c.URL(3), body); n != 1 {
				t.Errorf("node3 after the heal has %q %d times, want once", body, n)
			}
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			r, rd := u.replicationOf(t, c.URL(3))
			if r.State == "current" && rd.State == "current" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node3 still says %+v 10 s after the heal", r)
			}
		}
	})

	t.Run("a cut-off node's tabs leave the count on the other side, and come back after the heal without ghosts", func(t *testing.T) {
		u := signup(t, c.URL(1), "presence")
		none := map[string]int{}
		w1 := wsTab(t, u, c.URL(1), "node1 tab")
		w3 := wsTab(t, u, c.URL(3), "node3 tab")
		both := map[string]int{"node1": 1, "node3": 1}
		w1.wait(t, 2*time.Second, 2, both, none)
		w3.wait(t, 2*time.Second, 2, both, none)
		if err := w3.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"editing","note_id":3}`)); err != nil {
			t.Fatal(err)
		}
		w1.wait(t, 2*time.Second, 2, both, map[string]int{"3": 1})

		cut := time.Now()
		if err := c.Partition("node3"); err != nil {
			t.Fatal(err)
		}
		defer c.Heal()
		// Each side declares the other dead, and counts only its own.
		at := w1.wait(t, 30*time.Second, 1, map[string]int{"node1": 1}, none)
		w3.wait(t, 30*time.Second, 1, map[string]int{"node3": 1}, map[string]int{"3": 1})
		t.Logf("node3's tab left node1's count %v after the cut", at.Sub(cut).Round(10*time.Millisecond))
		// node3's tab, still connected, closes its editor meanwhile: node1
		// must not be left with a ghost editor after the heal.
		if err := w3.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"editing","note_id":null}`)); err != nil {
			t.Fatal(err)
		}

		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		at = w1.wait(t, 45*time.Second, 2, both, none)
		w3.wait(t, 10*time.Second, 2, both, none)
		t.Logf("the counts agreed again %v after the heal", at.Sub(healed).Round(10*time.Millisecond))
	})

	t.Run("ten cuts and heals leave no goroutines, sockets or namespaces behind", func(t *testing.T) {
		u := signup(t, c.URL(1), "cycles")
		c.caughtUp(t)
		before := c.measure(t)
		for i := 0; i < 10; i++ {
			node := "node" + strconv.Itoa(2+i%2)
			if err := c.Partition(node); err != nil {
				t.Fatal(err)
			}
			u.mustCreate(t, c.URL(1), "cycle "+strconv.Itoa(i), "cycle-"+strconv.Itoa(i))
			time.Sleep(time.Second)
			if err := c.Heal(); err != nil {
				t.Fatal(err)
			}
		}
		c.caughtUp(t)
		// Healed for real: a replica's write reaches the primary again.
		last := u.retryWrite(t, c.URL(3), "after ten cuts", "cycle-after")
		for i := 1; i <= 3; i++ {
			if status, body, _, err := u.Try("GET", c.URL(i)+"/api/notes?min_version="+strconv.FormatInt(last, 10), ""); status != http.StatusOK {
				t.Fatalf("node%d does not reach v%d after the cycles: %d %s %v", i, last, status, body, err)
			}
		}
		if cuts := c.Cuts(); len(cuts) != 0 {
			t.Errorf("cuts after healing: %v", cuts)
		}
		out, err := exec.Command("ip", "netns", "exec", c.Namespaces()[0], "nft", "list", "table", "bridge", "notesync").CombinedOutput()
		if err != nil || strings.Contains(string(out), "drop") {
			t.Errorf("the bridge still drops after healing: %v\n%s", err, out)
		}
		var after leakCounts
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			after = c.measure(t)
			if after.within(before) || time.Now().After(deadline) {
				break
			}
		}
		if !after.within(before) {
			t.Errorf("after ten cycles: %+v, before: %+v", after, before)
		}
		t.Logf("before the cycles: %+v; after: %+v", before, after)
	})
}

// leakCounts is what a cut and its heal must give back.
type leakCounts struct {
	LauncherGoroutines int   // goroutines running cluster code in this process
	FDs                int   // this process's open files
	NodeSockets        []int // sockets of each node's LiteFS and app
	Namespaces         int   // the cluster's network namespaces
}

// nodeSocketSlack allows for connections that come and go on their own
// (gossip's push-pull, LiteFS's stream) at the moment of measuring.
const nodeSocketSlack = 4

func (a leakCounts) within(b leakCounts) bool {
	if a.LauncherGoroutines > b.LauncherGoroutines || a.FDs > b.FDs || a.Namespaces != b.Namespaces {
		return false
	}
	for i := range a.NodeSockets {
		if a.NodeSockets[i] > b.NodeSockets[i]+nodeSocketSlack {
			return false
		}
	}
	return true
}

func (c *netnsCluster) measure(t testing.TB) leakCounts {
	t.Helper()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	var m leakCounts
	buf := make([]byte, 1<<22)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "notesync/cluster.") {
			m.LauncherGoroutines++
		}
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	m.FDs = len(fds)
	for i := 1; i <= c.N; i++ {
		pid, _ := c.Node(i)
		n := 0
		for _, p := range append([]int{pid}, childPids(pid)...) {
			n += countSockets(p)
		}
		m.NodeSockets = append(m.NodeSockets, n)
	}
	names, _ := os.ReadDir("/run/netns")
	prefix := strings.TrimSuffix(c.Namespaces()[0], "bridge")
	for _, e := range names {
		if strings.HasPrefix(e.Name(), prefix) {
			m.Namespaces++
		}
	}
	return m
}

func childPids(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func countSockets(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(dir)
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}
