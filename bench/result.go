package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

type nodeMem struct {
	Node           string  `json:"node"`
	Conns          float64 `json:"conns"`
	Tabs           float64 `json:"tabs"` // that the connections carry (notesync)
	RSSPerConn     float64 `json:"rss_bytes_per_conn"`
	HeapStackConn  float64 `json:"heap_stack_bytes_per_conn"`
	GoroutinesConn float64 `json:"goroutines_per_conn"`
	IdleRSS        float64 `json:"idle_rss_bytes"`
	LoadedRSS      float64 `json:"loaded_rss_bytes"`
	CPUSeconds     float64 `json:"write_phase_cpu_seconds"`
}

type pct struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type result struct {
	Target        string    `json:"target"`
	Engine        string    `json:"engine,omitempty"` // the peer's
	URLs          []string  `json:"urls"`
	Users         int       `json:"users"`
	Clients       int       `json:"clients"`
	TabsPerConn   int       `json:"tabs_per_conn"`
	Workers       int       `json:"workers"`
	Rate          float64   `json:"rate"`
	Duration      string    `json:"duration"`
	Opened        int64     `json:"connections_opened"`
	ConnectFailed int64     `json:"connections_failed"`
	ConnectSecs   float64   `json:"connect_seconds"`
	ConnectRate   float64   `json:"connects_per_second"`
	Memory        []nodeMem `json:"nodes"`

	WritesSent      int            `json:"writes_sent"`
	WritesAcked     int            `json:"writes_acked"`
	WritesSkipped   int            `json:"writes_skipped_in_flight_cap"`
	WriteErrors     map[string]int `json:"write_errors"`
	WriteLatency    pct            `json:"write_latency"`
	WriteThroughput float64        `json:"write_throughput_per_s"`

	Deliveries     int64    `json:"deliveries"` // every phase
	WriteDeliv     int64    `json:"write_phase_deliveries"`
	PushAll        pct      `json:"push_latency"`
	PushSame       pct      `json:"push_latency_same_node"`
	PushCross      pct      `json:"push_latency_cross_node"`
	Missed         int      `json:"missed"`
	MissedSync     int      `json:"missed_by_sync"`
	Duplicated     int      `json:"duplicated"`
	OutOfOrder     int      `json:"out_of_order"`
	Unexpected     int      `json:"unexpected_versions"`
	ConnsWithLoss  int      `json:"connections_with_missed"`
	MissedSamples  []string `json:"missed_samples,omitempty"`
	Closes         int64    `json:"closes"`
	Reconnects     int      `json:"reconnects"`
	StaleChecks    int64    `json:"stale_checks"`
	Stale          int64    `json:"stale"`
	StaleErrors    int64    `json:"stale_check_errors"`
	CPUPer1000     float64  `json:"cpu_seconds_per_1000_deliveries"`
	CPUWithLiteFS  float64  `json:"cpu_seconds_per_1000_deliveries_with_litefs,omitempty"` // the same with LiteFS's CPU (notesync's cluster)
	DrainTimedOut  bool     `json:"drain_timed_out"`
	ReconnectStorm string   `json:"reconnect_storm"`
	Storm          *storm   `json:"storm,omitempty"`

	// What the nodes did (notesync's own metrics): idle (-idle), during
	// the writes, during the publishes.
	IdleStats    []nodeStats   `json:"idle_node_stats,omitempty"`
	WriteStats   []nodeStats   `json:"write_phase_node_stats,omitempty"`
	PublishStats []nodeStats   `json:"publish_phase_node_stats,omitempty"`
	IdleCPU      cpuSplit      `json:"idle_cpu"`
	WriteCPU     cpuSplit      `json:"write_phase_cpu"`
	PublishCPU   cpuSplit      `json:"publish_phase_cpu"`
	Eph          *ephResult    `json:"ephemeral,omitempty"`
	Kill         *presenceKill `json:"presence_after_kill,omitempty"`
}

func percentiles(ms []float64) pct {
	if len(ms) == 0 {
		return pct{}
	}
	sort.Float64s(ms)
	at := func(p float64) float64 {
		i := int(p*float64(len(ms))+0.999999) - 1
		return ms[max(0, min(i, len(ms)-1))]
	}
	return pct{N: len(ms), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: ms[len(ms)-1]}
}

func printTable(w io.Writer, r *result) {
	f := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-34s "+format+"\n", append([]any{name}, args...)...)
	}
	p := func(name string, x pct) {
		f(name, "n=%d p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms", x.N, x.P50, x.P90, x.P99, x.Max)
	}
	fmt.Fprintf(w, "load run: %s %s\n", r.Target, r.Engine)
	f("nodes", "%s", strings.Join(r.URLs, " "))
	f("users / clients / workers", "%d / %d / %d", r.Users, r.Clients, r.Workers)
	if r.TabsPerConn > 1 {
		f("tabs per client", "%d (one connection that the tabs of a browser share)", r.TabsPerConn)
	}
	f("connections opened / failed", "%d / %d in %.2fs (%.0f/s)", r.Opened, r.ConnectFailed, r.ConnectSecs, r.ConnectRate)
	for _, m := range r.Memory {
		f("  "+m.Node, "conns=%.0f tabs=%.0f rss/conn=%.1fKiB heap+stack/conn=%.1fKiB goroutines/conn=%.2f cpu=%.2fs",
			m.Conns, m.Tabs, m.RSSPerConn/1024, m.HeapStackConn/1024, m.GoroutinesConn, m.CPUSeconds)
	}
	f("writes sent / acked / skipped", "%d / %d / %d at %.0f/s for %s", r.WritesSent, r.WritesAcked, r.WritesSkipped, r.Rate, r.Duration)
	f("write errors by status", "%v", r.WriteErrors)
	p("write latency", r.WriteLatency)
	f("write throughput", "%.1f/s", r.WriteThroughput)
	f("deliveries (write phase / all)", "%d / %d", r.WriteDeliv, r.Deliveries)
	p("push latency (all)", r.PushAll)
	p("push latency (same node)", r.PushSame)
	p("push latency (cross node)", r.PushCross)
	f("missed / duplicated / out-of-order", "%d / %d / %d (sync counted as missed: %d, conns with loss: %d, unexpected versions: %d)",
		r.Missed, r.Duplicated, r.OutOfOrder, r.MissedSync, r.ConnsWithLoss, r.Unexpected)
	f("closes / reconnects", "%d / %d", r.Closes, r.Reconnects)
	f("stale refetches", "%d of %d checks (%d check errors)", r.Stale, r.StaleChecks, r.StaleErrors)
	f("cpu seconds per 1000 deliveries", "%.4f", r.CPUPer1000)
	if r.CPUWithLiteFS > 0 {
		f("  with LiteFS's", "%.4f", r.CPUWithLiteFS)
	}
	if r.DrainTimedOut {
		f("drain", "TIMED OUT waiting for expected deliveries")
	}
	if s := r.Storm; s != nil {
		f("reconnect storm: node", "%s down %.2fs (SIGTERM to /readyz)", s.Node, s.DownSecs)
		f("  conns closed / reconnected", "%d / %d of %d (not caught up: %d)", s.Closed, s.Reconnected, s.Conns, s.NotCaughtUp)
		f("  after ready: last reconnect", "%.2fs, all caught up %.2fs", s.ReconnectSecs, s.CatchUpSecs)
		f("  after SIGTERM: first reconnect", "%.2fs, all caught up %.2fs", s.FirstReconnectSecs, s.CatchUpSinceDown)
		f("  writes during storm", "%d: errors before ready %v, failed after ready %d", s.Writes, s.ErrorsBefore, s.FailedAfterReady)
	} else {
		f("reconnect storm", "%s", r.ReconnectStorm)
	}
	printExtras(w, r)
}
