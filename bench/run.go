package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// loadRun is one run of the tool against one target. Its phases are
// methods that run calls in order; each reads what the ones before it
// set and adds its figures to res.
type loadRun struct {
	cfg  config
	tgt  *target
	logf func(format string, args ...any)
	res  *result

	// The nodes: base and metrics URLs; with -start, how to restart or
	// kill one (0-based) and the path that answers 200 once it is ready.
	urls, murls []string
	restart     func(int) error
	kill        func(int, time.Duration) error
	readyPath   string
	writeNodes  []int // 0-based, the nodes that take writes
	workers     int   // worker processes

	runID    string // names the users and keys the writes of this run
	users    []benchUser
	wps      []*workerProc
	connUser []int // client i is a tab of user connUser[i]
	connNode []int // on node connNode[i] (0-based)

	// What the progress line shows: the phase, and the writes so far.
	phase                atomic.Value
	sent, acked, failedW atomic.Int64

	// Each node's /metrics before the tabs connected, and once they had
	// (its CPU moved to the end of -idle, so that CPU per delivery counts
	// the writes only).
	idle, loaded []map[string]float64
	// The write phase's deliveries once drained, and the nodes' CPU
	// seconds over it.
	writeDeliv int64
	writeCPU   float64
	// meter reads what the nodes and the machine did in a phase; mark is
	// its reading at the end of the last one (see endPhase).
	meter *phaseMeter
	mark  snapshot
}

// run drives tgt through every phase cfg asks for, in order, within
// cfg.Timeout, and stops what it started. On an error it returns what it
// measured so far once the tabs are being opened (nil before).
func run(ctx context.Context, cfg config, tgt *target) (*result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := &loadRun{cfg: cfg, tgt: tgt, logf: stderrLogf(cfg.Quiet), urls: cfg.URLs, murls: cfg.MetricsURLs, readyPath: "/readyz"}
	if cfg.Start != "" {
		n, err := tgt.start(ctx, cfg, r.logf)
		if err != nil {
			return nil, err
		}
		defer func() { r.logf("stopping nodes"); n.stop() }()
		r.urls, r.murls = n.URLs, n.MetricsURLs
		r.restart, r.kill = n.restart, n.kill
		r.readyPath = n.Ready
	}
	if err := r.plan(); err != nil {
		return nil, err
	}
	if err := r.signUp(ctx); err != nil {
		return nil, err
	}
	if err := r.readIdle(); err != nil {
		return nil, err
	}
	defer r.stopWorkers()
	if err := r.startWorkers(); err != nil {
		return nil, err
	}
	r.phase.Store("connect")
	stopProgress := r.startProgress()
	defer stopProgress()
	if err := r.connect(ctx); err != nil {
		return r.res, err
	}
	if err := r.measureMemory(ctx); err != nil {
		return r.res, err
	}
	if ctx.Err() != nil {
		return r.res, ctx.Err()
	}
	r.meter = r.newMeter()
	r.mark = r.meter.snap()
	if r.cfg.Idle > 0 {
		r.stayIdle(ctx)
	}
	total := int(r.cfg.Rate * r.cfg.Duration.Seconds())
	wr := r.newWriter()
	profiled := r.profileWrites(ctx)
	recs, err := r.writeNotes(ctx, wr, total)
	profiled()
	if err != nil {
		return r.res, err
	}
	var pubs []publishRec
	if r.cfg.PublishRate > 0 && ctx.Err() == nil {
		pubs = r.publishEphemeral(ctx)
	}
	if r.cfg.Storm > 0 && ctx.Err() == nil {
		srecs, err := r.reconnectStorm(ctx, wr, total)
		recs = append(recs, srecs...)
		if err != nil {
			return r.res, fmt.Errorf("storm: %w", err)
		}
	}
	if r.cfg.Kill > 0 && ctx.Err() == nil { // plan may have dropped it
		if err := r.killNode(ctx); err != nil {
			return r.res, fmt.Errorf("kill: %w", err)
		}
	}
	if err := r.collect(ctx, recs, total, pubs); err != nil {
		return r.res, err
	}
	return r.res, ctx.Err()
}

// stderrLogf logs a line with the time of day to stderr, unless quiet.
func stderrLogf(quiet bool) func(format string, args ...any) {
	return func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}
	}
}

// plan checks the flags that depend on the nodes, picks the write nodes
// and the number of workers, and starts the result. -kill is dropped
// where there is no presence to time (not notesync's cluster).
func (r *loadRun) plan() error {
	cfg := &r.cfg
	if cfg.Storm < 0 || cfg.Storm > len(r.urls) || cfg.Storm > 0 && r.restart == nil {
		return fmt.Errorf("-storm needs -start and a node from 1 to %d", len(r.urls))
	}
	if cfg.Kill != 0 && (cfg.Kill < 0 || cfg.Kill > len(r.urls) || r.kill == nil || !r.tgt.nodeStats) {
		cfg.Kill = 0 // only notesync's cluster has presence to time
	}
	r.writeNodes = cfg.WriteNodes
	if len(r.writeNodes) == 0 {
		for i := range r.urls {
			r.writeNodes = append(r.writeNodes, i)
		}
	}
	for _, i := range r.writeNodes {
		if i >= len(r.urls) {
			return fmt.Errorf("-write-nodes: node %d of %d", i+1, len(r.urls))
		}
	}
	r.workers = max(cfg.Workers, (cfg.Clients+maxSocketsPerWorker-1)/maxSocketsPerWorker)
	r.res = &result{URLs: r.urls, Users: cfg.Users, Clients: cfg.Clients, TabsPerConn: cfg.TabsPerConn, Workers: r.workers, Rate: cfg.Rate,
		Duration: cfg.Duration.String(), WriteErrors: map[string]int{},
		ReconnectStorm: "not measured (no -storm)"}
	return nil
}

// startProgress logs, each second until the returned stop is called, the
// phase and the counts so far of tabs, writes and deliveries.
func (r *loadRun) startProgress() (stop func()) {
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
				for _, w := range r.wps {
					p := w.progress()
					opened += p.Opened
					open += p.Open
					deliv += p.Deliveries
					closes += p.Closes
					fail += p.Failed
				}
				r.logf("[%s] conns opened %d/%d (open %d, failed %d, closes %d) writes sent %d acked %d failed %d deliveries %d",
					r.phase.Load(), opened, r.cfg.Clients, open, fail, closes, r.sent.Load(), r.acked.Load(), r.failedW.Load(), deliv)
			}
		}
	}()
	return func() {
		select {
		case <-progStop:
		default:
			close(progStop)
		}
		<-progDone
	}
}

// waitUntil calls f until it reports true (true), every 200 ms for at
// most d (false, as when ctx ends first).
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

// sleepCtx sleeps for d; false if ctx ended first.
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
