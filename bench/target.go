package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// target is a server the tool drives: notesync, or the peer it is compared
// with. Everything else (users, tabs, write rate, backoff, checks) is the
// same for both.
type target struct {
	Name string
	// proto is how the workers speak to it (connSpec.Proto).
	proto string
	start func(ctx context.Context, cfg config, logf func(string, ...any)) (*nodes, error)
	// user readies user name to connect and write: signs up on base, or
	// mints a token.
	user func(ctx context.Context, base, name string) (benchUser, error)
	// write is one write of body by u through node base, with an
	// idempotency key.
	write func(base string, u benchUser, body, key string) *http.Request
	// version reads the version a write's 2xx answer reports (0: none).
	version func(io.Reader) int64
	// stale: whether a worker can refetch after a push (GET /api/notes).
	stale bool
	// publish is one ephemeral message (seq, sent at sent) to every tab of
	// u, through the node at base (metrics: its metrics address).
	publish func(base, metrics string, u benchUser, seq, sent int64) *http.Request
	// nodeStats: whether the nodes' /metrics hold notesync's own figures.
	nodeStats bool
}

var notesyncTarget = &target{
	Name:  "notesync",
	proto: protoNotesync,
	start: func(ctx context.Context, cfg config, logf func(string, ...any)) (*nodes, error) {
		return startNodes(ctx, cfg.Start, cfg.NodeExe, cfg.PprofAddr, logf)
	},
	user: signupUser,
	write: func(base string, u benchUser, body, key string) *http.Request {
		b, _ := json.Marshal(map[string]string{"body": body})
		req, _ := http.NewRequest("POST", base+"/api/notes", strings.NewReader(string(b)))
		req.Header.Set("Cookie", u.Cookie)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		return req
	},
	version: func(r io.Reader) int64 {
		var out struct {
			Version int64 `json:"version"`
		}
		if json.NewDecoder(r).Decode(&out) != nil {
			return 0
		}
		return out.Version
	},
	stale:     true,
	publish:   notesyncPublish,
	nodeStats: true,
}

var centrifugoTarget = &target{
	Name:  "centrifugo",
	proto: protoCentrifugo,
	start: func(ctx context.Context, cfg config, logf func(string, ...any)) (*nodes, error) {
		return startPeer(ctx, cfg.Start, cfg.PeerExe, peerRedis(cfg), logf)
	},
	user: func(_ context.Context, _, name string) (benchUser, error) {
		return benchUser{Name: name, Cookie: peerToken(name)}, nil
	},
	write: func(base string, u benchUser, body, _ string) *http.Request {
		return peerPublish(base, u, body)
	},
	version: peerVersion,
	publish: peerEphemeralPublish,
}

// peerRedis reports whether a single Centrifugo node uses the Redis engine.
func peerRedis(cfg config) bool {
	return cfg.PeerEngine == "redis" || cfg.PeerEngine == "auto" && cfg.Storm > 0
}

// runTargets runs cfg against each target it names, one after the other.
func runTargets(ctx context.Context, cfg config) ([]*result, error) {
	var tgts []*target
	switch cfg.Target {
	case "notesync", "":
		tgts = []*target{notesyncTarget}
	case "centrifugo":
		tgts = []*target{centrifugoTarget}
	case "both":
		tgts = []*target{notesyncTarget, centrifugoTarget}
	}
	var out []*result
	for _, t := range tgts {
		res, err := run(ctx, cfg, t)
		if res != nil {
			res.Target = t.Name
			if t == centrifugoTarget {
				res.Engine = "memory"
				if cfg.Start == "cluster" || peerRedis(cfg) {
					res.Engine = "redis"
				}
			}
			out = append(out, res)
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", t.Name, err)
		}
	}
	return out, nil
}

// printComparison prints every figure of two runs side by side, with the
// ratio a/b (below 1: a is smaller, for latencies and costs better).
func printComparison(w io.Writer, a, b *result) {
	fmt.Fprintf(w, "\n%-44s %14s %14s %8s\n", "figure", a.Target, b.Target+"("+b.Engine+")", "ratio")
	row := func(name string, x, y float64, format string) {
		ratio := "-"
		if y != 0 {
			ratio = fmt.Sprintf("%.2f", x/y)
		}
		fmt.Fprintf(w, "%-44s %14s %14s %8s\n", name, fmt.Sprintf(format, x), fmt.Sprintf(format, y), ratio)
	}
	mem := func(r *result, f func(nodeMem) float64) float64 {
		var sum float64
		for _, m := range r.Memory {
			sum += f(m)
		}
		if len(r.Memory) == 0 {
			return 0
		}
		return sum / float64(len(r.Memory))
	}
	row("connections opened per second", a.ConnectRate, b.ConnectRate, "%.0f")
	row("RSS per connection, KiB", mem(a, func(m nodeMem) float64 { return m.RSSPerConn / 1024 }), mem(b, func(m nodeMem) float64 { return m.RSSPerConn / 1024 }), "%.1f")
	row("heap+stack per connection, KiB", mem(a, func(m nodeMem) float64 { return m.HeapStackConn / 1024 }), mem(b, func(m nodeMem) float64 { return m.HeapStackConn / 1024 }), "%.1f")
	row("goroutines per connection", mem(a, func(m nodeMem) float64 { return m.GoroutinesConn }), mem(b, func(m nodeMem) float64 { return m.GoroutinesConn }), "%.2f")
	row("write p50, ms", a.WriteLatency.P50, b.WriteLatency.P50, "%.2f")
	row("write p99, ms", a.WriteLatency.P99, b.WriteLatency.P99, "%.2f")
	row("push p50, ms", a.PushAll.P50, b.PushAll.P50, "%.2f")
	row("push p99, ms", a.PushAll.P99, b.PushAll.P99, "%.2f")
	if a.PushCross.N > 0 || b.PushCross.N > 0 {
		row("push same node p50, ms", a.PushSame.P50, b.PushSame.P50, "%.2f")
		row("push same node p99, ms", a.PushSame.P99, b.PushSame.P99, "%.2f")
		row("push cross node p50, ms", a.PushCross.P50, b.PushCross.P50, "%.2f")
		row("push cross node p99, ms", a.PushCross.P99, b.PushCross.P99, "%.2f")
	}
	if a.Eph != nil && b.Eph != nil {
		row("ephemeral cross node p50, ms", a.Eph.CallCross.P50, b.Eph.CallCross.P50, "%.2f")
		row("ephemeral cross node p99, ms", a.Eph.CallCross.P99, b.Eph.CallCross.P99, "%.2f")
		row("ephemeral cross node from request p50, ms", a.Eph.ReqCross.P50, b.Eph.ReqCross.P50, "%.2f")
		row("ephemeral cross node from request p99, ms", a.Eph.ReqCross.P99, b.Eph.ReqCross.P99, "%.2f")
		row("ephemeral missed", float64(a.Eph.Missed), float64(b.Eph.Missed), "%.0f")
	}
	row("server CPU s per 1,000 deliveries", a.CPUPer1000, b.CPUPer1000, "%.3f")
	if a.CPUWithLiteFS > 0 {
		// The peer's storage (Redis) is not measured: its figure is the
		// same as the row above.
		row("  with LiteFS's (the peer: without Redis's)", a.CPUWithLiteFS, b.CPUPer1000, "%.3f")
	}
	row("missed+duplicated+out-of-order", float64(a.Missed+a.Duplicated+a.OutOfOrder), float64(b.Missed+b.Duplicated+b.OutOfOrder), "%.0f")
	if a.Storm != nil && b.Storm != nil {
		row("storm: SIGTERM to ready, s", a.Storm.DownSecs, b.Storm.DownSecs, "%.2f")
		row("storm: all caught up after ready, s", a.Storm.CatchUpSecs, b.Storm.CatchUpSecs, "%.2f")
		row("storm: first reconnect after SIGTERM, s", a.Storm.FirstReconnectSecs, b.Storm.FirstReconnectSecs, "%.2f")
		row("storm: all caught up after SIGTERM, s", a.Storm.CatchUpSinceDown, b.Storm.CatchUpSinceDown, "%.2f")
		row("storm: clients not caught up", float64(a.Storm.NotCaughtUp), float64(b.Storm.NotCaughtUp), "%.0f")
		row("storm: writes failed after ready", float64(a.Storm.FailedAfterReady), float64(b.Storm.FailedAfterReady), "%.0f")
	}
}
