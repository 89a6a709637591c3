package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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
	smoke(t, "single")
}

// TestSmokeCluster is the same against three LiteFS nodes: writes through
// every node, tabs of each user on every node.
func TestSmokeCluster(t *testing.T) {
	testenv.NeedFUSE(t)
	smoke(t, "cluster")
}

func smoke(t *testing.T, mode string) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	t.Parallel()
	cfg := config{
		Start: mode, Users: 3, Clients: 12, Rate: 20, Duration: 2 * time.Second,
		Workers: 2, Timeout: 90 * time.Second, StaleEvery: 2, Quiet: !testing.Verbose(),
		Exe: os.Args[0], NodeExe: os.Getenv("NOTESYNC_LOAD_EXE"),
	}
	res, err := run(context.Background(), cfg, notesyncTarget)
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 12 || res.ConnectFailed != 0 {
		t.Errorf("opened %d, failed %d; want 12, 0", res.Opened, res.ConnectFailed)
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
