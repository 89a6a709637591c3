package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/internal/testenv"
)

// TestMain lets the test binary serve as the tool's worker process: run
// re-executes os.Args[0] with NOTESYNC_LOAD_WORKER set.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		if err := runWorker(os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmokeSingle runs the tool's core against a node it starts, with tiny
// numbers, and checks that every write was acknowledged and delivered to
// every tab once and in order, with no stale refetch.
func TestSmokeSingle(t *testing.T) {
	smoke(t, "single", 1)
}

// TestSmokeSingleShared is TestSmokeSingle with each client a browser
// whose three tabs share its connection.
func TestSmokeSingleShared(t *testing.T) {
	smoke(t, "single", 3)
}

// TestSmokeCluster is the same against three LiteFS nodes: writes through
// every node, tabs of each user on every node.
func TestSmokeCluster(t *testing.T) {
	testenv.NeedFUSE(t)
	smoke(t, "cluster", 1)
}

func smoke(t *testing.T, mode string, tabsPerConn int) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	t.Parallel()
	cfg := config{
		Start: mode, Users: 3, Clients: 12, TabsPerConn: tabsPerConn, Rate: 20, Duration: 2 * time.Second, PublishRate: 10,
		Workers: 2, Timeout: 90 * time.Second, StaleEvery: 2, Quiet: !testing.Verbose(),
		Exe: os.Args[0], NodeExe: os.Getenv("NOTESYNC_LOAD_EXE"),
	}
	if mode == "cluster" {
		cfg.Profile = t.TempDir()
	}
	res, err := run(context.Background(), cfg, notesyncTarget)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Profile != "" {
		// -profile: a CPU profile of every node and of its LiteFS.
		for _, name := range []string{"node1-app", "node2-app", "node3-app", "node1-litefs", "node2-litefs", "node3-litefs"} {
			b, err := os.ReadFile(filepath.Join(cfg.Profile, name+".pprof"))
			if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("-profile: %s.pprof is no gzipped profile (%d bytes, %v)", name, len(b), err)
			}
		}
	}
	if res.Opened != 12 || res.ConnectFailed != 0 {
		t.Errorf("opened %d, failed %d; want 12, 0", res.Opened, res.ConnectFailed)
	}
	var tabs float64
	for _, m := range res.Memory {
		tabs += m.Tabs
	}
	if want := float64(12 * tabsPerConn); tabs != want {
		t.Errorf("the nodes count %.0f tabs, want %.0f", tabs, want)
	}
	if res.WritesSent != 40 || res.WritesAcked != res.WritesSent {
		t.Errorf("writes sent %d, acked %d; want 40 all acked (errors %v)", res.WritesSent, res.WritesAcked, res.WriteErrors)
	}
	if res.Missed != 0 || res.Duplicated != 0 || res.OutOfOrder != 0 || res.Unexpected != 0 || res.Stale != 0 {
		t.Errorf("missed %d, duplicated %d, out of order %d, unexpected %d, stale %d; want all 0",
			res.Missed, res.Duplicated, res.OutOfOrder, res.Unexpected, res.Stale)
	}
	// 40 writes over 3 users, 4 tabs each: every write reaches 4 tabs.
	if res.Deliveries != 160 {
		t.Errorf("deliveries %d, want 160", res.Deliveries)
	}
	if res.StaleChecks == 0 {
		t.Error("no stale check ran")
	}
	if res.PushAll.N != 160 || res.WriteLatency.N != 40 {
		t.Errorf("push latency samples %d, write latency samples %d", res.PushAll.N, res.WriteLatency.N)
	}
	// 20 ephemeral publishes through node 1, each to the 4 tabs of its
	// user: on one machine's loopback none is lost.
	if e := res.Eph; e == nil || e.Publishes != 20 || e.Failed != 0 || e.Received != 80 || e.Duplicated != 0 {
		t.Errorf("ephemeral: %+v, want 20 publishes delivered to 4 tabs each", e)
	} else if mode == "cluster" && (e.CallCross.N != 53 || e.CallSame.N != 27 || e.CallCross.P50 <= 0) {
		// Publish k goes to user k mod 3, whose tabs t are on node
		// (user+t) mod 3: user 0 has two tabs on node 1, the others one.
		t.Errorf("ephemeral across nodes: %d same-node and %d cross-node samples, want 27 and 53", e.CallSame.N, e.CallCross.N)
	}
	if len(res.WriteStats) == 0 || res.WriteStats[0].Batches == 0 {
		t.Errorf("no group commit seen in node1's metrics during the writes: %+v", res.WriteStats)
	}
	if mode == "cluster" && !(res.CPUWithLiteFS > res.CPUPer1000 && res.CPUPer1000 > 0) {
		t.Errorf("CPU per 1,000 deliveries %.3f s, with LiteFS's %.3f s: want more with LiteFS's", res.CPUPer1000, res.CPUWithLiteFS)
	}
	if mode == "cluster" && res.WriteStats[1].LagSecs.N == 0 {
		t.Errorf("node2 timed no replication lag during the writes: %+v", res.WriteStats[1])
	}
}

// TestAnalysePresence times the presence told to other tabs after a node
// dies, from the events the workers record.
func TestAnalysePresence(t *testing.T) {
	// Two users with a tab on each of three nodes; node3 is killed at 1 s.
	connUser := []int{0, 1, 0, 1, 0, 1}
	connNode := []int{0, 0, 1, 1, 2, 2}
	pk := &presenceKill{Node: "node3", node: 2, killNs: 1e9}
	all := map[string]int{"node1": 1, "node2": 1, "node3": 1}
	without := map[string]int{"node1": 1, "node2": 1}
	evs := []event{
		{Conn: 0, Kind: "presence", Nodes: all, At: 5e8},              // before the kill
		{Conn: 0, Kind: "presence", Nodes: without, At: 3e9},          // told after 2 s
		{Conn: 0, Kind: "presence", Nodes: all, At: 9e9},              // back after 8 s
		{Conn: 1, Kind: "presence", Nodes: without, At: 4e9},          // 3 s
		{Conn: 1, Kind: "changed", Version: 3, At: 4.5e9},             // not presence
		{Conn: 2, Kind: "presence", Nodes: without, At: 2e9},          // 1 s
		{Conn: 2, Kind: "presence", Nodes: all, At: 7e9},              // 6 s
		{Conn: 4, Kind: "presence", Nodes: map[string]int{}, At: 2e9}, // on the killed node: not counted
	}
	analysePresence(pk, evs, connUser, connNode)
	if pk.Conns != 4 || pk.Told != 3 || pk.Back != 2 {
		t.Fatalf("%d tabs, %d told, %d back; want 4, 3, 2", pk.Conns, pk.Told, pk.Back)
	}
	if pk.ToldP50 != 2 || pk.ToldMax != 3 || pk.BackMax != 8 {
		t.Fatalf("told p50 %.1f s, last %.1f s, back last %.1f s; want 2, 3, 8", pk.ToldP50, pk.ToldMax, pk.BackMax)
	}
}

// TestAnalyseEph matches publishes with their deliveries.
func TestAnalyseEph(t *testing.T) {
	connUser := []int{0, 0, 1}
	connNode := []int{0, 1, 1}
	recs := []publishRec{
		{Seq: 1, User: 0, SendNs: 100e6, DoneNs: 101e6, Status: 200},
		{Seq: 2, User: 1, SendNs: 200e6, DoneNs: 201e6, Status: 200},
		{Seq: 3, User: 1, SendNs: 300e6, Status: 503},
	}
	evs := []event{
		{Conn: 0, Kind: "eph", Version: 1, Sent: 100.5e6, At: 101e6},
		{Conn: 1, Kind: "eph", Version: 1, Sent: 100.5e6, At: 102.5e6},
		{Conn: 1, Kind: "eph", Version: 1, Sent: 100.5e6, At: 103e6}, // twice
		// conn 2 missed seq 2
	}
	e := analyseEph(recs, evs, connUser, connNode)
	if e.Publishes != 3 || e.Failed != 1 || e.Expected != 3 || e.Received != 2 || e.Missed != 1 || e.Duplicated != 1 {
		t.Fatalf("%+v", e)
	}
	if e.CallSame.P50 != 0.5 || e.CallCross.P50 != 2 || e.ReqCross.P50 != 2.5 {
		t.Fatalf("same %.2f ms, cross %.2f ms, cross from request %.2f ms; want 0.5, 2, 2.5", e.CallSame.P50, e.CallCross.P50, e.ReqCross.P50)
	}
}

// TestWorkerDialsFromItsSource checks that a worker's sockets and stale-check
// requests leave from the loopback address it was given.
func TestWorkerDialsFromItsSource(t *testing.T) {
	seen := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seen <- host
		if r.URL.Path == "/api/notes" {
			io.WriteString(w, `{"version":1}`)
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.Write(r.Context(), websocket.MessageText, []byte(`{"type":"hello","version":1}`))
	}))
	defer srv.Close()

	src := workerSource(6)
	if src != "127.0.1.7" {
		t.Fatalf("workerSource(6) = %s", src)
	}
	if !loopbackV4([]string{srv.URL}) || loopbackV4([]string{"http://localhost:8080"}) {
		t.Fatal("loopbackV4 misjudges its URLs")
	}
	w := &worker{}
	if err := w.useSource(src); err != nil {
		t.Fatal(err)
	}
	ws, g, err := w.dialOnce(connSpec{URL: srv.URL}, -1, "")
	if err != nil || g.Version != 1 {
		t.Fatalf("dial: v%d %v", g.Version, err)
	}
	ws.CloseNow()
	w.checkStale(connSpec{URL: srv.URL}, 1)
	for i := 0; i < 2; i++ {
		if got := <-seen; got != src {
			t.Errorf("request %d came from %s, want %s", i, got, src)
		}
	}
	if err := w.useSource("10.1.2.3"); err == nil {
		t.Error("a non-loopback source was accepted")
	}
}

// TestBackoffLikeThePage checks the reconnect waits: full jitter under a cap
// that doubles from 500 ms to 10 s, never below 250 ms.
func TestBackoffLikeThePage(t *testing.T) {
	for n, limit := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		var most time.Duration
		for range 2000 {
			d := backoff(n)
			if d < 250*time.Millisecond || d >= limit {
				t.Fatalf("backoff(%d) = %v, want in [250ms, %v)", n, d, limit)
			}
			most = max(most, d)
		}
		if most < limit*9/10 {
			t.Errorf("backoff(%d) never went past %v of [250ms, %v): not spread", n, most, limit)
		}
	}
	if d := backoff(60); d >= 10*time.Second {
		t.Errorf("backoff(60) = %v, over the cap", d)
	}
}

// TestFlagsRefuseWhatCannotRun checks that a scenario the tool cannot run
// with the nodes it was given is refused before anything is built or
// started, with the flag named.
func TestFlagsRefuseWhatCannotRun(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-start", "three"}, "-start must be single or cluster"},
		{[]string{"-start", "single", "-kill", "1"}, "-kill 1"},
		{[]string{"-urls", "http://127.0.0.1:8081", "-metrics-urls", "http://127.0.0.1:8381", "-kill", "1"}, "-kill 1"},
		{[]string{"-start", "cluster", "-kill", "4"}, "-kill 4"},
		{[]string{"-start", "single", "-storm", "2"}, "-storm 2"},
		{[]string{"-start", "single", "-tabs-per-conn", "0"}, "-tabs-per-conn"},
		{[]string{"-start", "single", "-target", "both", "-tabs-per-conn", "3"}, "-tabs-per-conn"},
		{[]string{"-urls", "http://127.0.0.1:8081", "-metrics-urls", "http://127.0.0.1:8381", "-storm", "1"}, "-storm 1"},
	} {
		_, err := parseFlags(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %q", c.args, err, c.want)
		}
	}
	for _, args := range [][]string{
		{"-start", "cluster", "-kill", "3", "-storm", "1"},
		{"-start", "single", "-storm", "1"},
	} {
		if _, err := parseFlags(args); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}
