package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func run(ctx context.Context, cfg config, tgt *target) (*result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	logf := func(format string, args ...any) {
		if !cfg.Quiet {
			fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}
	}
	urls, murls := cfg.URLs, cfg.MetricsURLs
	var restart func(int) error
	var kill func(int, time.Duration) error
	readyPath := "/readyz"
	if cfg.Start != "" {
		n, err := tgt.start(ctx, cfg, logf)
		if err != nil {
			return nil, err
		}
		defer func() { logf("stopping nodes"); n.stop() }()
		urls, murls = n.URLs, n.MetricsURLs
		restart, kill = n.restart, n.kill
		readyPath = n.Ready
	}
	if cfg.Storm < 0 || cfg.Storm > len(urls) || cfg.Storm > 0 && restart == nil {
		return nil, fmt.Errorf("-storm needs -start and a node from 1 to %d", len(urls))
	}
	if cfg.Kill != 0 && (cfg.Kill < 0 || cfg.Kill > len(urls) || kill == nil || !tgt.nodeStats) {
		cfg.Kill = 0 // only notesync's cluster has presence to time
	}
	writeNodes := cfg.WriteNodes
	if len(writeNodes) == 0 {
		for i := range urls {
			writeNodes = append(writeNodes, i)
		}
	}
	for _, i := range writeNodes {
		if i >= len(urls) {
			return nil, fmt.Errorf("-write-nodes: node %d of %d", i+1, len(urls))
		}
	}
	workers := max(cfg.Workers, (cfg.Clients+maxSocketsPerWorker-1)/maxSocketsPerWorker)
	res := &result{URLs: urls, Users: cfg.Users, Clients: cfg.Clients, Workers: workers, Rate: cfg.Rate,
		Duration: cfg.Duration.String(), WriteErrors: map[string]int{},
		ReconnectStorm: "not measured (no -storm)"}

	// Phase 1: sign up.
	logf("signing up %d users", cfg.Users)
	users := make([]benchUser, cfg.Users)
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	{
		var wg sync.WaitGroup
		var firstErr error
		var mu sync.Mutex
		sem := make(chan struct{}, 8)
		for i := range users {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				u, err := tgt.user(ctx, urls[0], fmt.Sprintf("ld%s-%d", runID, i))
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				users[i] = u
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return nil, firstErr
		}
	}

	// Idle baseline.
	idle := make([]map[string]float64, len(urls))
	for i, u := range murls {
		m, err := metrics(u)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", u, err)
		}
		idle[i] = m
	}

	// Phase 2: connect.
	var wps []*workerProc
	defer func() {
		for _, w := range wps {
			w.stop()
		}
	}()
	spread := loopbackV4(urls)
	for i := range workers {
		source := ""
		if spread {
			source = workerSource(i)
		}
		w, err := startWorker(cfg.Exe, source)
		if err != nil {
			return nil, fmt.Errorf("starting a worker: %w", err)
		}
		wps = append(wps, w)
	}
	specs := make([][]connSpec, workers)
	connNode := make([]int, cfg.Clients)
	connUser := make([]int, cfg.Clients)
	for i := range cfg.Clients {
		u := i % cfg.Users
		tab := i / cfg.Users
		n := (u + tab) % len(urls) // each user's tabs spread over the nodes
		connNode[i], connUser[i] = n, u
		specs[i%workers] = append(specs[i%workers], connSpec{ID: i, User: u, Node: n, URL: urls[n], Cookie: users[u].Cookie,
			Proto: tgt.proto, Channel: peerChannel(users[u].Name)})
	}
	var phase atomic.Value
	phase.Store("connect")
	var sent, acked, failedW atomic.Int64
	progDone := make(chan struct{})
	progStop := make(chan struct{})
	go func() {
		defer close(progDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-progStop:
				return
			case <-t.C:
				var opened, open, deliv, closes, fail int64
				for _, w := range wps {
					p := w.progress()
					opened += p.Opened
					open += p.Open
					deliv += p.Deliveries
					closes += p.Closes
					fail += p.Failed
				}
				logf("[%s] conns opened %d/%d (open %d, failed %d, closes %d) writes sent %d acked %d failed %d deliveries %d",
					phase.Load(), opened, cfg.Clients, open, fail, closes, sent.Load(), acked.Load(), failedW.Load(), deliv)
			}
		}
	}()
	defer func() {
		select {
		case <-progStop:
		default:
			close(progStop)
		}
		<-progDone
	}()

	staleEvery := cfg.StaleEvery
	if !tgt.stale {
		staleEvery = 0
	}
	logf("opening %d WebSockets over %d worker(s) and %d node(s)", cfg.Clients, workers, len(urls))
	t0 := time.Now()
	{
		var wg sync.WaitGroup
		errs := make([]error, workers)
		reps := make([]reply, workers)
		for i, w := range wps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reps[i], errs[i] = w.call(ctx, command{Cmd: "dial", Conns: specs[i], Concurrency: 64, StaleEvery: staleEvery})
			}()
		}
		wg.Wait()
		for i := range wps {
			if errs[i] != nil {
				return res, errs[i]
			}
			res.Opened += reps[i].Opened
			res.ConnectFailed += reps[i].Failed
			if reps[i].Err != "" {
				logf("dial error: %s", reps[i].Err)
			}
		}
	}
	res.ConnectSecs = time.Since(t0).Seconds()
	if res.ConnectSecs > 0 {
		res.ConnectRate = float64(res.Opened) / res.ConnectSecs
	}
	logf("opened %d connections in %.2fs (%.0f/s), %d failed", res.Opened, res.ConnectSecs, res.ConnectRate, res.ConnectFailed)

	// Memory once the nodes count every connection and settle a moment.
	waitUntil(ctx, 30*time.Second, func() bool {
		var total float64
		for _, u := range murls {
			if m, err := metrics(u); err == nil {
				total += m["connections"]
			}
		}
		var base float64
		for _, m := range idle {
			base += m["connections"]
		}
		return total-base >= float64(res.Opened)
	})
	sleepCtx(ctx, time.Second)
	loaded := make([]map[string]float64, len(urls))
	for i, u := range urls {
		m, err := metrics(murls[i])
		if err != nil {
			return res, err
		}
		loaded[i] = m
		d := m["connections"] - idle[i]["connections"]
		nm := nodeMem{Node: u, Conns: d, IdleRSS: idle[i]["process_resident_memory_bytes"], LoadedRSS: m["process_resident_memory_bytes"]}
		if d > 0 {
			nm.RSSPerConn = (m["process_resident_memory_bytes"] - idle[i]["process_resident_memory_bytes"]) / d
			nm.HeapStackConn = (m["go_memstats_heap_inuse_bytes"] + m["go_memstats_stack_inuse_bytes"] -
				idle[i]["go_memstats_heap_inuse_bytes"] - idle[i]["go_memstats_stack_inuse_bytes"]) / d
			nm.GoroutinesConn = (m["go_goroutines"] - idle[i]["go_goroutines"]) / d
		}
		res.Memory = append(res.Memory, nm)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	nodeNames := make([]string, len(urls))
	for i := range urls {
		nodeNames[i] = fmt.Sprintf("node%d", i+1)
	}
	var lfsURLs []string
	if cfg.Start == "cluster" && tgt.nodeStats {
		lfsURLs = litefsURLs(urls)
	}
	tool := map[string]int{"tool": os.Getpid()}
	for i, w := range wps {
		tool[fmt.Sprintf("tool worker %d", i+1)] = w.cmd.Process.Pid
	}
	type snapshot struct {
		m   []series
		cpu cpuSample
	}
	snap := func() snapshot { return snapshot{scrapeAll(murls), sampleCPU(lfsURLs, tool)} }
	// between describes what the nodes did, and how busy the machine
	// was, between two snapshots.
	between := func(a, b snapshot) ([]nodeStats, cpuSplit) {
		split := splitCPU(a.cpu, b.cpu)
		for i := range a.m {
			if d := b.m[i].at.Sub(a.m[i].at).Seconds(); d > 0 {
				split.Cores[nodeNames[i]+" app"] = sum(a.m[i], b.m[i], "process_cpu_seconds_total") / d
			}
		}
		if !tgt.nodeStats {
			return nil, split
		}
		return stats(nodeNames, a.m, b.m), split
	}
	before := snap()
	if cfg.Idle > 0 {
		phase.Store("idle")
		sleepCtx(ctx, cfg.Idle)
		after := snap()
		res.IdleStats, res.IdleCPU = between(before, after)
		before = after
		for i := range loaded { // CPU per delivery counts the writes only
			loaded[i]["process_cpu_seconds_total"] = after.m[i].v["process_cpu_seconds_total"]
		}
	}

	// Phase 3: open-loop writes.
	phase.Store("write")
	total := int(cfg.Rate * cfg.Duration.Seconds())
	wr := &writer{
		// As many idle connections as writes may be in flight: past that
		// each answer closed its connection and the next write dialled a
		// new one, which cost the tool more CPU than the server's answer
		// once a slow target let writes pile up.
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: maxInFlight, IdleConnTimeout: time.Minute}},
		tgt: tgt, urls: urls, users: users, nodes: writeNodes, rate: cfg.Rate, runID: runID,
		sent: &sent, acked: &acked, failed: &failedW,
	}
	logf("writing %d notes at %.0f/s through node(s) %v", total, cfg.Rate, plus1(writeNodes))
	recs, skipped := wr.loop(ctx, 0, total, nil)
	res.WritesSkipped = skipped

	// Drain: wait until every expected delivery arrived (or 10 s pass).
	phase.Store("drain")
	expected := expectedDeliveries(recs, connUser)
	var deliveredNow int64
	drained := waitUntil(ctx, 10*time.Second, func() bool {
		deliveredNow = 0
		for _, w := range wps {
			deliveredNow += w.progress().Deliveries
		}
		return deliveredNow >= expected
	})
	res.DrainTimedOut = !drained
	sleepCtx(ctx, 600*time.Millisecond) // duplicates, stale checks, last progress
	var cpu float64
	for i, u := range murls {
		m, err := metrics(u)
		if err != nil {
			return res, err
		}
		res.Memory[i].CPUSeconds = m["process_cpu_seconds_total"] - loaded[i]["process_cpu_seconds_total"]
		cpu += res.Memory[i].CPUSeconds
	}
	after := snap()
	res.WriteStats, res.WriteCPU = between(before, after)
	before = after

	// The ephemeral scenario.
	var pubs []publishRec
	if cfg.PublishRate > 0 && ctx.Err() == nil {
		phase.Store("publish")
		logf("publishing %d ephemeral messages at %.0f/s through node 1", int(cfg.PublishRate*cfg.Duration.Seconds()), cfg.PublishRate)
		pubs = publishPhase(ctx, tgt, urls[0], murls[0], users, cfg.PublishRate, cfg.Duration)
		sleepCtx(ctx, 2*time.Second) // the last deliveries
		res.PublishStats, res.PublishCPU = between(before, snap())
	}

	// Phase 4: the reconnect storm.
	var st *storm
	if cfg.Storm > 0 && ctx.Err() == nil {
		phase.Store("storm")
		st = &storm{Node: urls[cfg.Storm-1], node: cfg.Storm - 1, ErrorsBefore: map[string]int{}}
		stopW := make(chan struct{})
		wdone := make(chan struct{})
		var srecs []writeRec
		go func() {
			defer close(wdone)
			srecs, _ = wr.loop(ctx, total, int(cfg.Rate*600), stopW)
		}()
		sleepCtx(ctx, time.Second)
		logf("restarting %s", st.Node)
		st.downNs = time.Now().UnixNano()
		err := restart(st.node)
		if err == nil {
			err = waitReady(ctx, st.Node+readyPath, 120*time.Second)
		}
		st.readyNs = time.Now().UnixNano()
		st.DownSecs = float64(st.readyNs-st.downNs) / 1e9
		logf("%s ready again after %.2fs", st.Node, st.DownSecs)
		if err == nil {
			waitUntil(ctx, 60*time.Second, func() bool {
				var open int64
				for _, w := range wps {
					open += w.progress().Open
				}
				return open >= res.Opened
			})
			sleepCtx(ctx, 3*time.Second) // writes after ready must all succeed
		}
		close(stopW)
		<-wdone
		sleepCtx(ctx, 2*time.Second) // the last pushes
		recs = append(recs, srecs...)
		st.Writes = len(srecs)
		res.Storm = st
		if err != nil {
			return res, fmt.Errorf("storm: %w", err)
		}
	}

	// Presence after a node dies.
	if cfg.Kill > 0 && ctx.Err() == nil {
		phase.Store("kill")
		pk, err := killPhase(ctx, kill, cfg.Kill-1, cfg.KillHold, wps, res.Opened, logf)
		res.Kill = pk
		if err != nil {
			return res, fmt.Errorf("kill: %w", err)
		}
	}

	// Collect and analyse.
	phase.Store("collect")
	var evs []event
	for _, w := range wps {
		r, err := w.call(ctx, command{Cmd: "dump"})
		if err != nil {
			return res, err
		}
		evs = append(evs, r.Events...)
		res.Closes += r.Closes
		res.StaleChecks += r.StaleChecks
		res.Stale += r.Stale
		res.StaleErrors += r.StaleErrors
	}
	analyse(res, recs, total, evs, connUser, connNode)
	if st != nil {
		analyseStorm(res, st, recs, evs, connUser, connNode)
	}
	if pubs != nil {
		res.Eph = analyseEph(pubs, evs, connUser, connNode)
	}
	if res.Kill != nil {
		analysePresence(res.Kill, evs, connUser, connNode)
	}
	res.WriteDeliv = deliveredNow
	if deliveredNow > 0 {
		res.CPUPer1000 = cpu / float64(deliveredNow) * 1000
	}
	return res, ctx.Err()
}

func plus1(xs []int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = x + 1
	}
	return out
}

func waitUntil(ctx context.Context, d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 200*time.Millisecond) {
			return false
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
