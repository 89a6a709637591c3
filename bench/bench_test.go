package main

import (
	"context"
	"os"
	"testing"
	"time"

	"notesync/cluster"
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
	if err := cluster.CheckFUSE(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
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
	res, err := run(context.Background(), cfg)
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
