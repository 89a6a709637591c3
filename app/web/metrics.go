package web

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"notesync/realtime"
)

// Metrics are the Prometheus metrics of a node.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	PushLatency prometheus.Histogram
	// PushDelay is how long after its commit a change was pushed from this
	// node: the wait for this node's replica to hold it.
	PushDelay prometheus.Histogram
	// WriteBatch and CommitTime describe group commits.
	WriteBatch prometheus.Histogram
	CommitTime prometheus.Histogram
	// ReplicationLag is, on a replica, the time from a transaction's
	// commit on the primary to LiteFS's word that it was applied here.
	ReplicationLag prometheus.Histogram
	// AckWait is, on the primary, how long a write's answer waited for
	// another candidate to hold it.
	AckWait prometheus.Histogram
	// Reapplied counts the changes this node applied again through a new
	// primary whose history lacked them.
	Reapplied    prometheus.Counter
	feedReads    *prometheus.CounterVec
	feedReadTime prometheus.Histogram
	feedPushed   *prometheus.CounterVec
}

// fineBuckets go from 100 µs to 6.5 s: latencies whose target is a
// millisecond or two.
var fineBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// requestBuckets go from 500 µs to 16 s: requests, pushes and commits.
var requestBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// histogram is a histogram of one series.
func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
}

// NewMetrics registers the node's metrics, reading connection counters from
// hub, and hooks the push-latency histogram into it.
func NewMetrics(hub *realtime.Hub) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notesync_http_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "notesync_http_request_duration_seconds", Help: "HTTP request duration by route (real-time streams excluded).",
			Buckets: requestBuckets,
		}, []string{"route"}),
		PushLatency: histogram("notesync_push_latency_seconds",
			"Time from a change's commit to its note_changed written to a client.", requestBuckets),
		PushDelay: histogram("notesync_push_wait_seconds",
			"Time from a change's commit on the primary until this node's replica held it and pushed it.", requestBuckets),
		WriteBatch: histogram("notesync_write_batch_size",
			"Writes carried by one group commit.", prometheus.ExponentialBuckets(1, 2, 10)),
		CommitTime: histogram("notesync_write_batch_seconds",
			"Time one group commit's transaction took, begin to commit.", requestBuckets),
		ReplicationLag: histogram("notesync_replication_lag_seconds",
			"On a replica: time from a transaction's commit on the primary (its clock) to LiteFS's event that it was applied here (this node's clock).", fineBuckets),
		AckWait: histogram("notesync_write_ack_wait_seconds",
			"On the primary: time a write's answer waited, after its commit, until another lease candidate held it (0 while none is alive).", fineBuckets),
		Reapplied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "notesync_changes_reapplied_total",
			Help: "Changes this node held that a new primary's history lacked, applied again through it (docs/PROTOCOL.md §11), whether they landed or were there already.",
		}),
		feedReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notesync_feed_reads_total",
			Help: "Reads of the change log by the change feed, by what started them (wake: a replicated transaction; poll: the safety net) and whether they found changes (found: yes or no). Changes this node commits are handed to the feed without a read.",
		}, []string{"reason", "found"}),
		feedReadTime: histogram("notesync_feed_read_seconds",
			"Time one read of the change log by the change feed took.", fineBuckets),
		feedPushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notesync_feed_pushed_total",
			Help: "Changes pushed by the change feed, by how it had them: commit (this node's writer handed them over), shared (another node shared them, and this node's database holds them) or read (from the change log).",
		}, []string{"source"}),
	}
	reg.MustRegister(m.requests, m.duration, m.PushLatency, m.PushDelay, m.WriteBatch, m.CommitTime,
		m.ReplicationLag, m.AckWait, m.Reapplied, m.feedReads, m.feedReadTime, m.feedPushed)
	registerHubStats(reg, hub)
	hub.ObserveLatency = func(d time.Duration) { m.PushLatency.Observe(d.Seconds()) }
	return m
}

// registerHubStats exports hub's counters of connections and messages.
func registerHubStats(reg *prometheus.Registry, hub *realtime.Hub) {
	stat := func(pick func(realtime.Stats) float64) func() float64 {
		return func() float64 { return pick(hub.Stats()) }
	}
	counter := func(name, help string, pick func(realtime.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, stat(pick))
	}
	refused := func(reason string, pick func(realtime.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "notesync_connections_refused_total",
			Help:        "Real-time connections refused: the user held their per-node cap (user_limit, 1013 or 429), or the node held its cap (node_limit, 503).",
			ConstLabels: prometheus.Labels{"reason": reason}}, stat(pick))
	}
	reg.MustRegister(
		counter("notesync_peer_messages_sent_total", "Ephemeral messages (Publish, presence) sent to other nodes, counted once per node.",
			func(s realtime.Stats) float64 { return float64(s.PeerPackets) }),
		counter("notesync_peer_message_bytes_sent_total", "Bytes of the ephemeral messages sent to other nodes, before gossip's framing and encryption.",
			func(s realtime.Stats) float64 { return float64(s.PeerBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "notesync_connections", Help: "Open real-time connections: the tabs of a browser that share one are one."},
			stat(func(s realtime.Stats) float64 { return float64(s.Connections) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "notesync_tabs", Help: "Tabs that the open real-time connections carry."},
			stat(func(s realtime.Stats) float64 { return float64(s.Tabs) })),
		counter("notesync_messages_sent_total", "Real-time messages written to clients.",
			func(s realtime.Stats) float64 { return float64(s.Sent) }),
		counter("notesync_messages_dropped_total", "Real-time messages discarded (connection closed or too slow).",
			func(s realtime.Stats) float64 { return float64(s.Dropped) }),
		counter("notesync_slow_disconnects_total", "Connections closed for falling behind.",
			func(s realtime.Stats) float64 { return float64(s.SlowClosed) }),
		refused("user_limit", func(s realtime.Stats) float64 { return float64(s.RefusedUserFull) }),
		refused("node_limit", func(s realtime.Stats) float64 { return float64(s.RefusedNodeFull) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "notesync_connections_max", Help: "The node's cap on open real-time connections (0: none)."},
			func() float64 { return float64(hub.MaxConns) }),
	)
}

// ObserveFeedRead records one read of the change log (Feed.ObserveRead).
func (m *Metrics) ObserveFeedRead(reason string, found int, took time.Duration) {
	f := "no"
	if found > 0 {
		f = "yes"
	}
	m.feedReads.WithLabelValues(reason, f).Inc()
	m.feedReadTime.Observe(took.Seconds())
}

// ObserveFeedPushed counts changes pushed (Feed.ObservePushed).
func (m *Metrics) ObserveFeedPushed(source string, n int) {
	m.feedPushed.WithLabelValues(source).Add(float64(n))
}

// CountGossip exports what this node sends to the other nodes over gossip
// (cluster.Membership.Traffic): UDP packets and their bytes, TCP streams
// and their bytes.
func (m *Metrics) CountGossip(sent func() (packets, packetBytes, streams, streamBytes uint64)) {
	counter := func(name, help string, pick func(p, pb, s, sb uint64) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			return float64(pick(sent()))
		})
	}
	m.reg.MustRegister(
		counter("notesync_gossip_packets_sent_total", "UDP packets sent to other nodes: memberlist's own gossip and the messages it carries.",
			func(p, _, _, _ uint64) uint64 { return p }),
		counter("notesync_gossip_packet_bytes_sent_total", "Bytes of the UDP packets sent to other nodes, encrypted.",
			func(_, pb, _, _ uint64) uint64 { return pb }),
		counter("notesync_gossip_streams_total", "TCP connections to or from other nodes (state exchanges, joins).",
			func(_, _, s, _ uint64) uint64 { return s }),
		counter("notesync_gossip_stream_bytes_sent_total", "Bytes sent on those TCP connections.",
			func(_, _, _, sb uint64) uint64 { return sb }),
	)
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// instrument counts requests by route pattern (never by raw path, which
// would let clients create unbounded label values) and status.
func (m *Metrics) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern == "" {
			pattern = "unmatched"
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(sw, r)
		m.requests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Inc()
		if pattern != "GET /ws" && pattern != "GET /events" {
			m.duration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
		}
	})
}

// statusWriter records the status code; it passes Flush and Hijack through
// (SSE and WebSocket need them).
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.status = http.StatusSwitchingProtocols
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
