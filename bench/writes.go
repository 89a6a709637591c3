package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type writeRec struct {
	Storm   bool // sent during the reconnect storm
	User    int
	Node    int
	SendNs  int64
	DoneNs  int64
	Status  int // 0: transport error
	Version int64
}

// writer sends notes at a fixed rate, open loop: each write is sent by its
// own goroutine at its scheduled time, whatever the earlier ones became.
type writer struct {
	hc                  *http.Client
	tgt                 *target
	urls                []string
	users               []benchUser
	nodes               []int
	rate                float64
	runID               string
	sent, acked, failed *atomic.Int64
}

const maxInFlight = 4000

// loop sends up to n writes numbered base.. until stop is closed, and
// returns their records once every one has been answered.
func (w *writer) loop(ctx context.Context, base, n int, stop <-chan struct{}) ([]writeRec, int) {
	recs := make([]writeRec, n)
	interval := time.Duration(float64(time.Second) / w.rate)
	var inFlight atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	skipped, i := 0, 0
	for ; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
			case <-stop:
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil || stopped(stop) {
			break
		}
		r := &recs[i]
		k := base + i
		u := k % len(w.users)
		node := w.nodes[(k+k/len(w.users))%len(w.nodes)]
		r.User, r.Node = u, node
		if inFlight.Load() >= maxInFlight {
			skipped++
			r.Status = -1
			continue
		}
		inFlight.Add(1)
		wg.Add(1)
		w.sent.Add(1)
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			req := w.tgt.write(w.urls[node], w.users[u], fmt.Sprintf("load note %d of run %s", k, w.runID), w.runID+"-"+strconv.Itoa(k))
			r.SendNs = time.Now().UnixNano()
			resp, err := w.hc.Do(req)
			r.DoneNs = time.Now().UnixNano()
			if err != nil {
				w.failed.Add(1)
				return
			}
			defer resp.Body.Close()
			r.Status = resp.StatusCode
			if resp.StatusCode/100 == 2 {
				r.Version = w.tgt.version(resp.Body)
			}
			if r.Version > 0 {
				w.acked.Add(1)
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				w.failed.Add(1)
			}
		}()
	}
	wg.Wait()
	return recs[:i], skipped
}

func stopped(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// expectedDeliveries counts the pushes every open connection should get:
// one per acknowledged version of its user above its hello version. The
// hello versions come from the workers' progress; before the write phase
// every user is at version 0, so it is acked writes × tabs of the user.
func expectedDeliveries(recs []writeRec, connUser []int) int64 {
	perUser := map[int]int64{}
	for _, r := range recs {
		if r.Version > 0 {
			perUser[r.User]++
		}
	}
	var n int64
	for _, u := range connUser {
		n += perUser[u]
	}
	return n
}

// newWriter is the writer of the run's notes: through the write nodes at
// cfg.Rate, counted in the progress line.
func (r *loadRun) newWriter() *writer {
	return &writer{
		// As many idle connections as writes may be in flight: past that
		// each answer closed its connection and the next write dialled a
		// new one, which cost the tool more CPU than the server's answer
		// once a slow target let writes pile up.
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: maxInFlight, IdleConnTimeout: time.Minute}},
		tgt: r.tgt, urls: r.urls, users: r.users, nodes: r.writeNodes, rate: r.cfg.Rate, runID: r.runID,
		sent: &r.sent, acked: &r.acked, failed: &r.failedW,
	}
}

// writeNotes is the write phase: total writes (numbered from 0) at
// cfg.Rate, open loop, then the drain: it waits until the tabs have had
// as many pushes as they should (expectedDeliveries; at most 10 s) and
// 600 ms more for duplicates, stale checks and the last progress. It
// sets each node's CPU seconds from the loaded reading to the end of the
// drain, and what the nodes did over the phase. It returns the writes'
// records.
func (r *loadRun) writeNotes(ctx context.Context, wr *writer, total int) ([]writeRec, error) {
	res := r.res
	r.phase.Store("write")
	r.logf("writing %d notes at %.0f/s through node(s) %v", total, r.cfg.Rate, plus1(r.writeNodes))
	recs, skipped := wr.loop(ctx, 0, total, nil)
	res.WritesSkipped = skipped

	r.phase.Store("drain")
	expected := expectedDeliveries(recs, r.connUser)
	drained := waitUntil(ctx, 10*time.Second, func() bool {
		r.writeDeliv = 0
		for _, w := range r.wps {
			r.writeDeliv += w.progress().Deliveries
		}
		return r.writeDeliv >= expected
	})
	res.DrainTimedOut = !drained
	sleepCtx(ctx, 600*time.Millisecond) // duplicates, stale checks, last progress
	for i, u := range r.murls {
		m, err := metrics(u)
		if err != nil {
			return recs, err
		}
		res.Memory[i].CPUSeconds = m["process_cpu_seconds_total"] - r.loaded[i]["process_cpu_seconds_total"]
		r.writeCPU += res.Memory[i].CPUSeconds
	}
	res.WriteStats, res.WriteCPU = r.endPhase()
	return recs, nil
}

// plus1 turns 0-based node indexes into the 1-based ones users give.
func plus1(xs []int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = x + 1
	}
	return out
}
