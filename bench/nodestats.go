package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A node's own figures, read from its /metrics at two moments: what
// happened inside the node between them (replication lag, the change
// feed's reads, group commits, gossip). Only notesync has them.

// series is every sample of one /metrics answer, by series name with its
// labels as written (`name{a="b"}`), and when it was read.
type series struct {
	at time.Time
	v  map[string]float64
}

// scrape reads every sample of url's /metrics.
func scrape(url string) (series, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url + "/metrics")
	if err != nil {
		return series{}, err
	}
	defer resp.Body.Close()
	s := series{at: time.Now(), v: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			s.v[line[:i]] = v
		}
	}
	return s, sc.Err()
}

// scrapeAll reads every node's /metrics; a node that does not answer has
// an empty series.
func scrapeAll(urls []string) []series {
	out := make([]series, len(urls))
	for i, u := range urls {
		out[i], _ = scrape(u)
		if out[i].v == nil {
			out[i] = series{at: time.Now(), v: map[string]float64{}}
		}
	}
	return out
}

// sum adds the samples of name over its label sets, at b minus at a.
func sum(a, b series, name string) float64 {
	var d float64
	for k, v := range b.v {
		if k == name || strings.HasPrefix(k, name+"{") {
			d += v - a.v[k]
		}
	}
	return d
}

// histDelta is a histogram's samples between two readings.
type histDelta struct {
	N     float64 `json:"n"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	le    []float64
	count []float64
}

// hist reads histogram name between a and b. Quantiles are interpolated
// within their bucket (the buckets double, so they are within a factor
// of two).
func hist(a, b series, name string) histDelta {
	var h histDelta
	prefix := name + `_bucket{le="`
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range b.v {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		les := strings.TrimSuffix(strings.TrimPrefix(k, prefix), `"}`)
		le := math.Inf(1)
		if les != "+Inf" {
			le, _ = strconv.ParseFloat(les, 64)
		}
		bs = append(bs, bucket{le, v - a.v[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	h.N = sum(a, b, name+"_count")
	if h.N > 0 {
		h.Mean = sum(a, b, name+"_sum") / h.N
	}
	for _, bk := range bs {
		h.le = append(h.le, bk.le)
		h.count = append(h.count, bk.n)
	}
	h.P50, h.P90, h.P99 = h.quantile(0.5), h.quantile(0.9), h.quantile(0.99)
	return h
}

func (h histDelta) quantile(q float64) float64 {
	if h.N == 0 || len(h.le) == 0 {
		return 0
	}
	want := q * h.N
	lo, prev := 0.0, 0.0
	for i, le := range h.le {
		if h.count[i] >= want {
			if math.IsInf(le, 1) {
				return lo
			}
			if h.count[i] == prev {
				return le
			}
			return lo + (le-lo)*(want-prev)/(h.count[i]-prev)
		}
		lo, prev = le, h.count[i]
	}
	return lo
}

// nodeStats is what one node did between two readings.
type nodeStats struct {
	Node    string  `json:"node"`
	Seconds float64 `json:"seconds"`
	// Group commits (the primary).
	Batches     float64   `json:"batches"`
	BatchWrites histDelta `json:"batch_writes"`
	BatchSecs   histDelta `json:"batch_seconds"`
	// How long writes' answers waited for the other candidates to hold
	// them (the primary).
	AckWaitSecs histDelta `json:"write_ack_wait_seconds"`
	// A replica's lag behind the primary's commits, and its feed's reads.
	LagSecs       histDelta          `json:"replication_lag_seconds"`
	FeedReads     map[string]float64 `json:"feed_reads"`
	FeedPushed    map[string]float64 `json:"feed_pushed"` // changes, by how the feed had them
	FeedReadSecs  histDelta          `json:"feed_read_seconds"`
	PushWaitSecs  histDelta          `json:"push_wait_seconds"`
	PushFrameSecs histDelta          `json:"push_latency_seconds"`
	// What it sent to the other nodes, per second.
	GossipPackets  float64 `json:"gossip_packets_per_s"`
	GossipBytes    float64 `json:"gossip_packet_bytes_per_s"`
	GossipStreamB  float64 `json:"gossip_stream_bytes_per_s"`
	PeerMessages   float64 `json:"ephemeral_messages_per_s"`
	PeerBytes      float64 `json:"ephemeral_bytes_per_s"`
	GossipStreams  float64 `json:"gossip_streams"`
	GossipMeasured bool    `json:"gossip_measured"`
}

// stats describes each node between readings a and b.
func stats(names []string, a, b []series) []nodeStats {
	var out []nodeStats
	for i := range a {
		s := nodeStats{Node: names[i], Seconds: b[i].at.Sub(a[i].at).Seconds(), FeedReads: map[string]float64{}, FeedPushed: map[string]float64{}}
		x, y := a[i], b[i]
		s.Batches = sum(x, y, "notesync_write_batch_size_count")
		s.BatchWrites = hist(x, y, "notesync_write_batch_size")
		s.BatchSecs = hist(x, y, "notesync_write_batch_seconds")
		s.AckWaitSecs = hist(x, y, "notesync_write_ack_wait_seconds")
		s.LagSecs = hist(x, y, "notesync_replication_lag_seconds")
		s.FeedReadSecs = hist(x, y, "notesync_feed_read_seconds")
		s.PushWaitSecs = hist(x, y, "notesync_push_wait_seconds")
		s.PushFrameSecs = hist(x, y, "notesync_push_latency_seconds")
		for _, reason := range []string{"wake", "poll"} {
			for _, found := range []string{"yes", "no"} {
				k := `notesync_feed_reads_total{found="` + found + `",reason="` + reason + `"}`
				if d := y.v[k] - x.v[k]; d > 0 {
					s.FeedReads[reason+"/"+found] = d
				}
			}
		}
		for _, source := range []string{"commit", "shared", "read"} {
			k := `notesync_feed_pushed_total{source="` + source + `"}`
			if d := y.v[k] - x.v[k]; d > 0 {
				s.FeedPushed[source] = d
			}
		}
		if _, ok := y.v["notesync_gossip_packets_sent_total"]; ok && s.Seconds > 0 {
			s.GossipMeasured = true
			s.GossipPackets = sum(x, y, "notesync_gossip_packets_sent_total") / s.Seconds
			s.GossipBytes = sum(x, y, "notesync_gossip_packet_bytes_sent_total") / s.Seconds
			s.GossipStreamB = sum(x, y, "notesync_gossip_stream_bytes_sent_total") / s.Seconds
			s.GossipStreams = sum(x, y, "notesync_gossip_streams_total")
			s.PeerMessages = sum(x, y, "notesync_peer_messages_sent_total") / s.Seconds
			s.PeerBytes = sum(x, y, "notesync_peer_message_bytes_sent_total") / s.Seconds
		}
		out = append(out, s)
	}
	return out
}

// cpuSample is the CPU time (seconds) of the processes that share the
// machine in a run, read at one moment: each node's LiteFS (its metrics, at
// the node's HTTP port +100), the tool's own processes, and the machine.
type cpuSample struct {
	at    time.Time
	procs map[string]float64
	busy  float64 // the machine's busy seconds, all cores
}

// clockTick is Linux's USER_HZ, the unit of /proc's CPU times.
const clockTick = 100.0

// procCPU returns the user and system seconds of process pid.
func procCPU(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// Fields after the command (which may hold spaces) start at ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTick, true
}

// machineBusy returns the machine's busy CPU seconds so far.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy / clockTick
}

// sampleCPU reads the CPU times of the LiteFS processes behind litefs
// (metrics base URLs, none without LiteFS) and of the tool's processes.
func sampleCPU(litefs []string, tool map[string]int) cpuSample {
	s := cpuSample{at: time.Now(), procs: map[string]float64{}, busy: machineBusy()}
	for i, u := range litefs {
		if m, err := scrape(u); err == nil {
			s.procs[fmt.Sprintf("node%d litefs", i+1)] = m.v["process_cpu_seconds_total"]
		}
	}
	for name, pid := range tool {
		if v, ok := procCPU(pid); ok {
			s.procs[name] = v
		}
	}
	return s
}

// cpuSplit is how many cores each process used between two samples.
type cpuSplit struct {
	Seconds float64            `json:"seconds"`
	Cores   map[string]float64 `json:"cores"` // by process
	Machine float64            `json:"machine_cores_busy"`
}

func splitCPU(a, b cpuSample) cpuSplit {
	d := b.at.Sub(a.at).Seconds()
	out := cpuSplit{Seconds: d, Cores: map[string]float64{}}
	if d <= 0 {
		return out
	}
	for k, v := range b.procs {
		if v0, ok := a.procs[k]; ok {
			out.Cores[k] = (v - v0) / d
		}
	}
	out.Machine = (b.busy - a.busy) / d
	return out
}

// litefsSeconds is the CPU time the LiteFS processes used in the phase.
func (c cpuSplit) litefsSeconds() float64 {
	var cores float64
	for name, v := range c.Cores {
		if strings.HasSuffix(name, " litefs") {
			cores += v
		}
	}
	return cores * c.Seconds
}

// litefsURLs are the metrics URLs of the LiteFS processes of a cluster
// the tool started: each node's HTTP port +100.
func litefsURLs(urls []string) []string {
	var out []string
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			return nil
		}
		p, err := strconv.Atoi(pu.Port())
		if err != nil {
			return nil
		}
		out = append(out, "http://"+net.JoinHostPort(pu.Hostname(), strconv.Itoa(p+100)))
	}
	return out
}

// phaseMeter reads what the nodes and the machine did over a phase, from a
// snapshot at each end.
type phaseMeter struct {
	names     []string       // node1, node2, …
	murls     []string       // each node's metrics base URL
	litefs    []string       // each node's LiteFS metrics base URL (none without LiteFS)
	tool      map[string]int // the tool's processes, by name
	nodeStats bool           // whether the nodes' /metrics hold notesync's own figures
}

// snapshot is every node's /metrics and the processes' CPU at one moment.
type snapshot struct {
	m   []series
	cpu cpuSample
}

// snap reads every node's /metrics and the processes' CPU now.
func (pm *phaseMeter) snap() snapshot {
	return snapshot{scrapeAll(pm.murls), sampleCPU(pm.litefs, pm.tool)}
}

// between describes what the nodes did, and how busy the machine was,
// between two snapshots: the cores each process used (each node's app
// among them), and with notesync's figures each node's stats.
func (pm *phaseMeter) between(a, b snapshot) ([]nodeStats, cpuSplit) {
	split := splitCPU(a.cpu, b.cpu)
	for i := range a.m {
		if d := b.m[i].at.Sub(a.m[i].at).Seconds(); d > 0 {
			split.Cores[pm.names[i]+" app"] = sum(a.m[i], b.m[i], "process_cpu_seconds_total") / d
		}
	}
	if !pm.nodeStats {
		return nil, split
	}
	return stats(pm.names, a.m, b.m), split
}

// newMeter is the meter of the phases with the tabs open: each node's
// own figures (notesync's), its LiteFS's CPU (notesync's cluster) and
// the CPU of the tool's processes.
func (r *loadRun) newMeter() *phaseMeter {
	m := &phaseMeter{murls: r.murls, nodeStats: r.tgt.nodeStats, tool: map[string]int{"tool": os.Getpid()}}
	for i := range r.urls {
		m.names = append(m.names, fmt.Sprintf("node%d", i+1))
	}
	if r.cfg.Start == "cluster" && r.tgt.nodeStats {
		m.litefs = litefsURLs(r.urls)
	}
	for i, w := range r.wps {
		m.tool[fmt.Sprintf("tool worker %d", i+1)] = w.cmd.Process.Pid
	}
	return m
}

// endPhase reads what the nodes and the machine did since the last
// phase ended (or the meter started), and marks the next one's start.
func (r *loadRun) endPhase() ([]nodeStats, cpuSplit) {
	now := r.meter.snap()
	ns, cpu := r.meter.between(r.mark, now)
	r.mark = now
	return ns, cpu
}

// stayIdle waits cfg.Idle with the tabs open and nothing written, and
// reports what the nodes did meanwhile (gossip at steady state). The
// loaded CPU reading moves to its end, so that CPU per delivery counts
// the writes only.
func (r *loadRun) stayIdle(ctx context.Context) {
	r.phase.Store("idle")
	sleepCtx(ctx, r.cfg.Idle)
	r.res.IdleStats, r.res.IdleCPU = r.endPhase()
	for i := range r.loaded {
		r.loaded[i]["process_cpu_seconds_total"] = r.mark.m[i].v["process_cpu_seconds_total"]
	}
}
