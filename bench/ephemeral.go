package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The ephemeral scenario: messages published on the first node
// (realtime.Hub.Publish for notesync, through the node's benchmark-only
// POST /debug/publish; an HTTP API publish without history for the peer)
// to every tab of a user, on every node, at -publish-rate for -duration.
// Each message carries when it was published; the workers record when it
// arrived. Nothing is stored: a message that does not arrive is missed.

// publishRec is one publish.
type publishRec struct {
	Seq    int64
	User   int
	SendNs int64 // request sent, the tool's clock
	DoneNs int64
	Status int
}

// publishPhase publishes through node 0 (base, and metrics for notesync's
// endpoint) at rate for d, open loop, and returns every publish once
// answered.
func publishPhase(ctx context.Context, tgt *target, base, metrics string, users []benchUser, rate float64, d time.Duration) []publishRec {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}}
	n := int(rate * d.Seconds())
	recs := make([]publishRec, n)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range recs {
		if !sleepCtx(ctx, time.Until(start.Add(time.Duration(i)*interval))) {
			recs = recs[:i]
			break
		}
		r := &recs[i]
		r.Seq, r.User = int64(i+1), i%len(users)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.SendNs = time.Now().UnixNano()
			resp, err := hc.Do(tgt.publish(base, metrics, users[r.User], r.Seq, r.SendNs))
			r.DoneNs = time.Now().UnixNano()
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			r.Status = resp.StatusCode
		}()
	}
	wg.Wait()
	return recs
}

// notesyncPublish is a publish through the node's benchmark-only endpoint
// on its metrics address (web.Server.BenchPublishHandler): the node stamps the
// message with the time of its Publish call.
func notesyncPublish(_, metrics string, u benchUser, seq, _ int64) *http.Request {
	req, _ := http.NewRequest("POST", metrics+"/debug/publish", strings.NewReader(`{"seq":`+strconv.FormatInt(seq, 10)+`}`))
	req.Header.Set("Cookie", u.Cookie)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// peerEphemeralPublish is a publish to the user's channel that skips the
// channel's history, so it has no offset (Centrifugo's ephemeral
// message); it carries the time the tool sent it.
func peerEphemeralPublish(base, _ string, u benchUser, seq, sent int64) *http.Request {
	data, _ := json.Marshal(map[string]any{
		"channel": peerChannel(u.Name), "skip_history": true,
		"data": map[string]int64{"bench_seq": seq, "sent": sent},
	})
	req, _ := http.NewRequest("POST", base+"/api/publish", strings.NewReader(string(data)))
	req.Header.Set("X-API-Key", peerAPIKey)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// ephResult is the ephemeral scenario's outcome.
type ephResult struct {
	Publishes  int `json:"publishes"`
	Failed     int `json:"failed"`
	Expected   int `json:"expected_deliveries"` // tabs of the users, per publish
	Received   int `json:"received"`
	Missed     int `json:"missed"`
	Duplicated int `json:"duplicated"`
	// From the publish (notesync: its Hub.Publish call, as the node
	// stamped it; the peer: the tool's request, all it can see) to the
	// frame read, on the first node (same) and the others (cross).
	CallSame  pct `json:"call_to_receipt_same_node"`
	CallCross pct `json:"call_to_receipt_cross_node"`
	// From the tool's request to the frame read, for both.
	ReqSame  pct `json:"request_to_receipt_same_node"`
	ReqCross pct `json:"request_to_receipt_cross_node"`
	Answer   pct `json:"publish_answer"`
}

// analyseEph matches each publish with what the tabs of its user read.
func analyseEph(recs []publishRec, evs []event, connUser, connNode []int) *ephResult {
	res := &ephResult{}
	type key struct {
		conn int
		seq  int64
	}
	got := map[key][]event{}
	for _, e := range evs {
		if e.Kind == "eph" {
			got[key{e.Conn, e.Version}] = append(got[key{e.Conn, e.Version}], e)
		}
	}
	tabs := map[int][]int{}
	for c, u := range connUser {
		tabs[u] = append(tabs[u], c)
	}
	var callSame, callCross, reqSame, reqCross, answer []float64
	for _, r := range recs {
		res.Publishes++
		if r.Status != http.StatusOK {
			res.Failed++
			continue
		}
		answer = append(answer, float64(r.DoneNs-r.SendNs)/1e6)
		for _, c := range tabs[r.User] {
			res.Expected++
			es := got[key{c, r.Seq}]
			if len(es) == 0 {
				res.Missed++
				continue
			}
			res.Received++
			res.Duplicated += len(es) - 1
			e := es[0]
			call, req := float64(e.At-e.Sent)/1e6, float64(e.At-r.SendNs)/1e6
			if connNode[c] == 0 {
				callSame, reqSame = append(callSame, call), append(reqSame, req)
			} else {
				callCross, reqCross = append(callCross, call), append(reqCross, req)
			}
		}
	}
	res.CallSame, res.CallCross = percentiles(callSame), percentiles(callCross)
	res.ReqSame, res.ReqCross = percentiles(reqSame), percentiles(reqCross)
	res.Answer = percentiles(answer)
	return res
}

// printExtras prints the ephemeral scenario, the presence after a kill and
// what the nodes did inside, when measured.
func printExtras(w io.Writer, r *result) {
	f := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-34s "+format+"\n", append([]any{name}, args...)...)
	}
	p := func(name string, x pct) {
		f(name, "n=%d p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms", x.N, x.P50, x.P90, x.P99, x.Max)
	}
	if e := r.Eph; e != nil {
		f("ephemeral publishes", "%d (failed %d); deliveries %d of %d (missed %d, duplicated %d)",
			e.Publishes, e.Failed, e.Received, e.Expected, e.Missed, e.Duplicated)
		p("  call → receipt, same node", e.CallSame)
		p("  call → receipt, cross node", e.CallCross)
		p("  request → receipt, same node", e.ReqSame)
		p("  request → receipt, cross node", e.ReqCross)
		p("  publish answered", e.Answer)
	}
	if k := r.Kill; k != nil {
		f("presence after SIGKILL of "+k.Node, "down %.0fs; %d of %d tabs elsewhere told without it: p50 %.2fs, last %.2fs; told with it again: %d, p50 %.2fs, last %.2fs",
			k.Hold, k.Told, k.Conns, k.ToldP50, k.ToldMax, k.Back, k.BackP50, k.BackMax)
	}
	for _, ph := range []struct {
		name string
		cpu  cpuSplit
	}{{"idle", r.IdleCPU}, {"writes", r.WriteCPU}, {"publishes", r.PublishCPU}} {
		if ph.cpu.Seconds == 0 {
			continue
		}
		names := make([]string, 0, len(ph.cpu.Cores))
		for k := range ph.cpu.Cores {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts []string
		for _, k := range names {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, ph.cpu.Cores[k]))
		}
		f(fmt.Sprintf("[%s] CPU, cores", ph.name), "machine %.2f busy over %.0fs: %s", ph.cpu.Machine, ph.cpu.Seconds, strings.Join(parts, ", "))
	}
	for _, ph := range []struct {
		name string
		s    []nodeStats
	}{{"idle", r.IdleStats}, {"writes", r.WriteStats}, {"publishes", r.PublishStats}} {
		for _, n := range ph.s {
			ms := func(h histDelta) string {
				return fmt.Sprintf("n=%.0f mean=%.2f p50=%.2f p99=%.2fms", h.N, h.Mean*1e3, h.P50*1e3, h.P99*1e3)
			}
			f(fmt.Sprintf("[%s] %s over %.0fs", ph.name, n.Node, n.Seconds), "gossip sent %.1f packets/s %.0f B/s + streams %.0f B/s (%0.f); ephemeral %.1f msgs/s %.0f B/s",
				n.GossipPackets, n.GossipBytes, n.GossipStreamB, n.GossipStreams, n.PeerMessages, n.PeerBytes)
			if n.Batches > 0 {
				f("  group commits", "%.0f, writes each mean %.2f, time %s", n.Batches, n.BatchWrites.Mean, ms(n.BatchSecs))
			}
			if n.AckWaitSecs.N > 0 {
				f("  write ack wait", "%s (bucket bounds: 100 µs doubling)", ms(n.AckWaitSecs))
			}
			if n.LagSecs.N > 0 {
				f("  replication lag", "%s", ms(n.LagSecs))
			}
			if len(n.FeedReads) > 0 || len(n.FeedPushed) > 0 {
				f("  feed", "pushed %v; reads %v, time %s", n.FeedPushed, n.FeedReads, ms(n.FeedReadSecs))
			}
			if n.PushFrameSecs.N > 0 {
				f("  commit → frame written", "%s (ms resolution of the commit time)", ms(n.PushFrameSecs))
			}
		}
	}
}

// publishEphemeral is the ephemeral phase: publishPhase through the first
// node at cfg.PublishRate for cfg.Duration, and 2 s more for the last
// deliveries; it sets what the nodes did over both. It returns every
// publish.
func (r *loadRun) publishEphemeral(ctx context.Context) []publishRec {
	r.phase.Store("publish")
	r.logf("publishing %d ephemeral messages at %.0f/s through node 1", int(r.cfg.PublishRate*r.cfg.Duration.Seconds()), r.cfg.PublishRate)
	pubs := publishPhase(ctx, r.tgt, r.urls[0], r.murls[0], r.users, r.cfg.PublishRate, r.cfg.Duration)
	sleepCtx(ctx, 2*time.Second) // the last deliveries
	r.res.PublishStats, r.res.PublishCPU = r.endPhase()
	return pubs
}
