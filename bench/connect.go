package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The connect phase: the worker processes, and every tab they open.

// startWorkers starts r.workers worker processes. When every node is on an
// IPv4 loopback address, each dials from a source address of its own
// (workerSource). The caller stops them with stopWorkers, also on an
// error.
func (r *loadRun) startWorkers() error {
	spread := loopbackV4(r.urls)
	for i := range r.workers {
		source := ""
		if spread {
			source = workerSource(i)
		}
		w, err := startWorker(r.cfg.Exe, source)
		if err != nil {
			return fmt.Errorf("starting a worker: %w", err)
		}
		r.wps = append(r.wps, w)
	}
	return nil
}

// stopWorkers stops every worker started, closing their tabs.
func (r *loadRun) stopWorkers() {
	for _, w := range r.wps {
		w.stop()
	}
}

// connect opens cfg.Clients tabs over the workers and times it (connect
// figures, from the first dial command to the last worker's answer).
// Client i is a tab of user i mod U on node (user + i div U) mod nodes,
// so each user's tabs spread over the nodes; r.connUser and r.connNode
// record it. A tab that failed to open is counted, not an error.
func (r *loadRun) connect(ctx context.Context) error {
	cfg, res := r.cfg, r.res
	specs := make([][]connSpec, r.workers)
	r.connNode = make([]int, cfg.Clients)
	r.connUser = make([]int, cfg.Clients)
	for i := range cfg.Clients {
		u := i % cfg.Users
		tab := i / cfg.Users
		n := (u + tab) % len(r.urls) // each user's tabs spread over the nodes
		r.connNode[i], r.connUser[i] = n, u
		specs[i%r.workers] = append(specs[i%r.workers], connSpec{ID: i, User: u, Node: n, URL: r.urls[n], Cookie: r.users[u].Cookie,
			Proto: r.tgt.proto, Channel: peerChannel(r.users[u].Name), Tabs: cfg.TabsPerConn})
	}
	staleEvery := cfg.StaleEvery
	if !r.tgt.stale {
		staleEvery = 0
	}
	r.logf("opening %d WebSockets over %d worker(s) and %d node(s)", cfg.Clients, r.workers, len(r.urls))
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, r.workers)
	reps := make([]reply, r.workers)
	for i, w := range r.wps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = w.call(ctx, command{Cmd: "dial", Conns: specs[i], Concurrency: 64, StaleEvery: staleEvery})
		}()
	}
	wg.Wait()
	for i := range r.wps {
		if errs[i] != nil {
			return errs[i]
		}
		res.Opened += reps[i].Opened
		res.ConnectFailed += reps[i].Failed
		if reps[i].Err != "" {
			r.logf("dial error: %s", reps[i].Err)
		}
	}
	res.ConnectSecs = time.Since(t0).Seconds()
	if res.ConnectSecs > 0 {
		res.ConnectRate = float64(res.Opened) / res.ConnectSecs
	}
	r.logf("opened %d connections in %.2fs (%.0f/s), %d failed", res.Opened, res.ConnectSecs, res.ConnectRate, res.ConnectFailed)
	return nil
}
