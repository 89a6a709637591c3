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
