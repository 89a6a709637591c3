// Command bench is notesync's load tool: it signs up users, opens many
// authenticated WebSockets across worker processes, writes notes at a fixed
// open-loop rate, and measures connect rate, memory and goroutines per
// connection, push latency, delivery correctness, stale refetches, write
// latency and CPU per delivery. See `go run ./bench -h`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// config is every flag of the tool.
type config struct {
	URLs        []string
	MetricsURLs []string // where each node serves /metrics (-metrics-addr)
	Start       string
	Users       int
	Clients     int
	Rate        float64
	Duration    time.Duration
	WriteNodes  []int // 0-based indexes into URLs
	Workers     int
	JSON        string
	Timeout     time.Duration
	StaleEvery  int
	PprofAddr   string
	NodeExe     string // with -start: a prebuilt notesync binary instead of go build
	Storm       int    // 1-based node to restart after the write phase; 0: none
	Target      string // notesync, centrifugo or both
	PeerExe     string // the Centrifugo binary ("": where bench/centrifugo.sh puts it)
	PeerEngine  string // auto, memory or redis
	// Idle, when set, is a pause after connecting, for the nodes' idle
	// figures (gossip at steady state).
	Idle time.Duration
	// PublishRate, when set, runs the ephemeral scenario after the writes.
	PublishRate float64
	Kill        int // 1-based node to SIGKILL at the end (presence); 0: none
	KillHold    time.Duration
	Quiet       bool
	// Exe is the program re-executed as a worker (os.Args[0]).
	Exe string
}

const maxSocketsPerWorker = 9000

func main() {
	if os.Getenv(workerEnv) != "" || (len(os.Args) > 1 && os.Args[1] == "-worker") {
		if err := runWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := runTargets(ctx, cfg)
	for _, res := range results {
		printTable(os.Stdout, res)
	}
	if len(results) == 2 {
		printComparison(os.Stdout, results[0], results[1])
	}
	if cfg.JSON != "" && len(results) > 0 {
		var b []byte
		if len(results) == 1 {
			b, _ = json.MarshalIndent(results[0], "", "  ")
		} else {
			b, _ = json.MarshalIndent(results, "", "  ")
		}
		if werr := os.WriteFile(cfg.JSON, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "bench:", werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	urls := fs.String("urls", "", "comma-separated base URLs of running nodes (loopback only)")
	murls := fs.String("metrics-urls", "", "with -urls: each node's metrics base URL (its -metrics-addr; `go run . cluster` serves them at the HTTP port +300)")
	fs.StringVar(&c.Start, "start", "", "start the nodes: single or cluster (instead of -urls)")
	fs.IntVar(&c.Users, "users", 10, "users to sign up")
	fs.IntVar(&c.Clients, "clients", 100, "WebSocket clients (tabs), spread over users and nodes")
	fs.Float64Var(&c.Rate, "rate", 50, "writes per second, open loop")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "length of the write phase")
	wn := fs.String("write-nodes", "all", "nodes that take writes: all, or 1-based indexes like 1,3")
	fs.IntVar(&c.Workers, "workers", 1, "client worker processes (each holds at most 9,000 sockets)")
	fs.StringVar(&c.JSON, "json", "", "write every figure to this JSON file")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "overall bound")
	fs.IntVar(&c.StaleEvery, "stale-every", 10, "refetch after 1 in this many pushes to check for stale reads (0: never)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "with -start single: serve the node's pprof here")
	fs.IntVar(&c.Storm, "storm", 0, "with -start: after the write phase, restart this node (1-based) while writing on, and time the reconnect storm")
	fs.StringVar(&c.NodeExe, "exe", "", "with -start: run this prebuilt notesync binary instead of building one")
	fs.StringVar(&c.Target, "target", "notesync", "server under test: notesync, centrifugo (the peer, with -start), or both one after the other with a side-by-side table")
	fs.StringVar(&c.PeerExe, "peer-exe", "", "the Centrifugo binary (default: where bench/centrifugo.sh installs it)")
	fs.StringVar(&c.PeerEngine, "peer-engine", "auto", "Centrifugo's engine on one node: memory, redis, or auto (redis with -storm, so that history outlives the restart; a cluster always uses redis)")
	fs.DurationVar(&c.Idle, "idle", 0, "after connecting, wait this long and report what the nodes did idle (gossip at steady state)")
	fs.Float64Var(&c.PublishRate, "publish-rate", 0, "after the writes, publish this many ephemeral messages a second for -duration through node 1 to every tab of a user (notesync: its -benchmark POST /debug/publish; the peer: a publish without history)")
	fs.IntVar(&c.Kill, "kill", 0, "with -start cluster: at the end, kill this node (1-based) with SIGKILL and time the presence its users' other tabs are told")
	fs.DurationVar(&c.KillHold, "kill-hold", 15*time.Second, "with -kill: how long the node stays down before it is started again")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if (*urls == "") == (c.Start == "") {
		return c, fmt.Errorf("give either -urls or -start")
	}
	if *urls != "" {
		for _, u := range strings.Split(*urls, ",") {
			u = strings.TrimRight(strings.TrimSpace(u), "/")
			pu, err := url.Parse(u)
			if err != nil || pu.Hostname() == "" || !strings.HasPrefix(pu.Hostname(), "127.") && pu.Hostname() != "localhost" {
				return c, fmt.Errorf("-urls: %q is not a loopback URL", u)
			}
			c.URLs = append(c.URLs, u)
		}
		for _, u := range strings.Split(*murls, ",") {
			if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
				c.MetricsURLs = append(c.MetricsURLs, u)
			}
		}
		if len(c.MetricsURLs) != len(c.URLs) {
			return c, fmt.Errorf("-metrics-urls: give one per -urls node (/metrics is not on the public port)")
		}
	}
	if *wn != "all" && *wn != "" {
		for _, s := range strings.Split(*wn, ",") {
			i, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || i < 1 {
				return c, fmt.Errorf("-write-nodes: %q", s)
			}
			c.WriteNodes = append(c.WriteNodes, i-1)
		}
	}
	switch c.Target {
	case "notesync":
	case "centrifugo", "both":
		if c.Start == "" {
			return c, fmt.Errorf("-target %s needs -start", c.Target)
		}
	default:
		return c, fmt.Errorf("-target must be notesync, centrifugo or both, not %q", c.Target)
	}
	if c.PeerEngine != "auto" && c.PeerEngine != "memory" && c.PeerEngine != "redis" {
		return c, fmt.Errorf("-peer-engine must be auto, memory or redis, not %q", c.PeerEngine)
	}
	if c.Users < 1 || c.Clients < 0 || c.Rate <= 0 || c.Workers < 1 {
		return c, fmt.Errorf("need -users ≥ 1, -clients ≥ 0, -rate > 0, -workers ≥ 1")
	}
	c.Exe = os.Args[0]
	return c, nil
}

// ---- results ----

type nodeMem struct {
	Node           string  `json:"node"`
	Conns          float64 `json:"conns"`
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

// storm is the reconnect storm after one node's restart.
type storm struct {
	Node          string  `json:"node"`
	DownSecs      float64 `json:"down_seconds"` // SIGTERM to /readyz 200
	Conns         int     `json:"conns_on_node"`
	Closed        int     `json:"conns_closed"`
	Reconnected   int     `json:"conns_reconnected"`
	NotCaughtUp   int     `json:"conns_not_caught_up"`
	ReconnectSecs float64 `json:"last_reconnect_after_ready_seconds"`
	CatchUpSecs   float64 `json:"all_caught_up_after_ready_seconds"`
	// The same from SIGTERM, and the first reconnect: under a storm the
	// tool's own /readyz poll waits in the node's accept queue with the
	// clients, so "ready" as the tool sees it can come after the node is
	// already taking them back.
	FirstReconnectSecs float64        `json:"first_reconnect_after_sigterm_seconds"`
	CatchUpSinceDown   float64        `json:"all_caught_up_after_sigterm_seconds"`
	Writes             int            `json:"writes"`
	ErrorsBefore       map[string]int `json:"errors_before_ready"`
	FailedAfterReady   int            `json:"failed_after_ready"`
	downNs, readyNs    int64
	node               int
}

// ---- workers ----

type workerProc struct {
	cmd     *exec.Cmd
	enc     *json.Encoder
	replies chan reply
	last    atomic.Pointer[reply]
	done    chan struct{}
}

// loopbackV4 reports whether every URL names an IPv4 loopback address, so
// that workers can dial from loopback addresses of their own.
func loopbackV4(urls []string) bool {
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			return false
		}
		ip := net.ParseIP(pu.Hostname())
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// workerSource is the address worker i dials from: 127.0.1.(i+1). A socket
// is one (source, port, node) tuple, so each worker has the whole ephemeral
// port range (about 28,000 here) to every node, whatever the other
// workers and the sockets of a previous run in TIME_WAIT hold.
func workerSource(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/254, 1+i%254)
}

func startWorker(exe, source string) (*workerProc, error) {
	cmd := exec.Command(exe, "-worker")
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	if source != "" {
		cmd.Env = append(cmd.Env, sourceEnv+"="+source)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{cmd: cmd, enc: json.NewEncoder(in), replies: make(chan reply, 4), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		dec := json.NewDecoder(out)
		for {
			var r reply
			if err := dec.Decode(&r); err != nil {
				close(w.replies)
				_ = cmd.Wait()
				return
			}
			rr := r
			rr.Events = nil
			w.last.Store(&rr)
			if r.Type != "progress" {
				w.replies <- r
			}
		}
	}()
	return w, nil
}

func (w *workerProc) call(ctx context.Context, c command) (reply, error) {
	if err := w.enc.Encode(c); err != nil {
		return reply{}, fmt.Errorf("worker %d: %w", w.cmd.Process.Pid, err)
	}
	select {
	case r, ok := <-w.replies:
		if !ok {
			return reply{}, fmt.Errorf("worker %d exited", w.cmd.Process.Pid)
		}
		if r.Type == "error" {
			return r, fmt.Errorf("worker: %s", r.Err)
		}
		return r, nil
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

func (w *workerProc) stop() {
	_ = w.enc.Encode(command{Cmd: "quit"})
	if c, ok := w.cmd.Stdin.(io.Closer); ok {
		c.Close()
	}
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

func (w *workerProc) progress() reply {
	if p := w.last.Load(); p != nil {
		return *p
	}
	return reply{}
}

// ---- users and writes ----

type benchUser struct {
	Name   string
	Cookie string
}

func signupUser(ctx context.Context, base, name string) (benchUser, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/signup",
		strings.NewReader(url.Values{"username": {name}, "password": {"load-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return benchUser{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return benchUser{}, fmt.Errorf("signup %s on %s: status %d", name, base, resp.StatusCode)
	}
	u, _ := url.Parse(base)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return benchUser{Name: name, Cookie: strings.Join(parts, "; ")}, nil
}

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

// ---- the run ----

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

// ---- analysis ----

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

// analyse computes the write figures from the write phase's records
// (recs[:mainN]) and the delivery figures from every record.
func analyse(res *result, recs []writeRec, mainN int, evs []event, connUser, connNode []int) {
	type key struct {
		user int
		v    int64
	}
	byVersion := map[key]*writeRec{}
	acked := map[int][]int64{}
	var wl []float64
	var firstSend, lastDone int64
	for i := range recs {
		r := &recs[i]
		if r.Status == -1 {
			continue
		}
		if r.Version > 0 {
			byVersion[key{r.User, r.Version}] = r
			acked[r.User] = append(acked[r.User], r.Version)
		}
		if i >= mainN {
			r.Storm = true
			continue
		}
		res.WritesSent++
		if r.Version > 0 {
			res.WritesAcked++
			wl = append(wl, float64(r.DoneNs-r.SendNs)/1e6)
			if firstSend == 0 || r.SendNs < firstSend {
				firstSend = r.SendNs
			}
			lastDone = max(lastDone, r.DoneNs)
		} else {
			res.WriteErrors[strconv.Itoa(r.Status)]++
		}
	}
	res.WriteLatency = percentiles(wl)
	if lastDone > firstSend {
		res.WriteThroughput = float64(res.WritesAcked) / (float64(lastDone-firstSend) / 1e9)
	}

	byConn := map[int][]event{}
	for _, e := range evs {
		if streamEvent(e) {
			byConn[e.Conn] = append(byConn[e.Conn], e)
		}
	}
	var all, same, cross []float64
	for c, list := range byConn {
		sort.SliceStable(list, func(i, j int) bool { return list[i].At < list[j].At })
		u := connUser[c]
		var hello int64 = -1
		seen := map[int64]int{}
		covered := map[int64]bool{}
		var maxV int64
		justReconnected := false
		for _, e := range list {
			switch e.Kind {
			case "hello":
				hello = e.Version
				maxV = e.Version
			case "reconnect":
				res.Reconnects++
				justReconnected = true
				continue
			case "close":
				continue
			case "sync":
				if justReconnected {
					for _, v := range acked[u] {
						if v <= e.Version {
							covered[v] = true
						}
					}
					maxV = max(maxV, e.Version)
				} else {
					res.MissedSync++
				}
			case "changed":
				res.Deliveries++
				seen[e.Version]++
				if seen[e.Version] > 1 {
					res.Duplicated++
				} else if e.Version < maxV {
					res.OutOfOrder++
				}
				maxV = max(maxV, e.Version)
				r := byVersion[key{u, e.Version}]
				if r == nil {
					res.Unexpected++
					break
				}
				if r.Storm {
					break // push latency is the write phase's
				}
				lat := float64(e.At-r.SendNs) / 1e6
				all = append(all, lat)
				if r.Node == connNode[c] {
					same = append(same, lat)
				} else {
					cross = append(cross, lat)
				}
			}
			justReconnected = false
		}
		missed := 0
		for _, v := range acked[u] {
			if v > hello && seen[v] == 0 && !covered[v] {
				missed++
				if len(res.MissedSamples) < 20 {
					r := byVersion[key{u, v}]
					var trail []string
					for _, e := range list {
						trail = append(trail, fmt.Sprintf("%s v%d @%+.3fs", e.Kind, e.Version, float64(e.At-r.SendNs)/1e9))
					}
					res.MissedSamples = append(res.MissedSamples, fmt.Sprintf(
						"conn %d (node %d) user %d missed v%d (write to node %d, storm %v, answered after %.3fs); events relative to its send: %s",
						c, connNode[c]+1, u, v, r.Node+1, r.Storm, float64(r.DoneNs-r.SendNs)/1e9, strings.Join(trail, ", ")))
				}
			}
		}
		res.Missed += missed
		if missed > 0 {
			res.ConnsWithLoss++
		}
	}
	res.Missed += res.MissedSync
	res.PushAll, res.PushSame, res.PushCross = percentiles(all), percentiles(same), percentiles(cross)
}

// streamEvent reports whether e belongs to the versioned stream (hello,
// pushes, syncs, closes and reconnects), not to the ephemeral publishes or
// presence.
func streamEvent(e event) bool { return e.Kind != "eph" && e.Kind != "presence" }

// analyseStorm times the reconnect storm: for each connection of the
// restarted node, when it reconnected and when it had caught up with its
// user's version as of the node's return (seen in hello, sync or a push).
func analyseStorm(res *result, st *storm, recs []writeRec, evs []event, connUser, connNode []int) {
	res.ReconnectStorm = "measured"
	target := map[int]int64{} // user → last version acknowledged before ready
	for _, r := range recs {
		if r.Version > 0 && r.DoneNs <= st.readyNs {
			target[r.User] = max(target[r.User], r.Version)
		}
		if r.SendNs >= st.downNs && r.Version == 0 && r.Status != -1 {
			if r.SendNs < st.readyNs {
				st.ErrorsBefore[strconv.Itoa(r.Status)]++
			} else {
				st.FailedAfterReady++
			}
		}
	}
	byConn := map[int][]event{}
	for _, e := range evs {
		if streamEvent(e) && connNode[e.Conn] == st.node {
			byConn[e.Conn] = append(byConn[e.Conn], e)
		}
	}
	for c, n := range connNode {
		if n == st.node {
			st.Conns++
		} else {
			continue
		}
		list := byConn[c]
		sort.SliceStable(list, func(i, j int) bool { return list[i].At < list[j].At })
		closed, reconnected := false, int64(0)
		var caught int64
		for _, e := range list {
			if e.At < st.downNs {
				continue
			}
			switch {
			case e.Kind == "close":
				closed = true
			case e.Kind == "reconnect" && closed && reconnected == 0:
				reconnected = e.At
			}
			if reconnected != 0 && caught == 0 && e.Kind != "close" && e.Version >= target[connUser[c]] {
				caught = e.At
			}
		}
		if closed {
			st.Closed++
		}
		if reconnected != 0 {
			st.Reconnected++
			st.ReconnectSecs = max(st.ReconnectSecs, float64(reconnected-st.readyNs)/1e9)
			first := float64(reconnected-st.downNs) / 1e9
			if st.Reconnected == 1 || first < st.FirstReconnectSecs {
				st.FirstReconnectSecs = first
			}
		}
		if caught == 0 {
			st.NotCaughtUp++
		} else {
			st.CatchUpSecs = max(st.CatchUpSecs, float64(caught-st.readyNs)/1e9)
			st.CatchUpSinceDown = max(st.CatchUpSinceDown, float64(caught-st.downNs)/1e9)
		}
	}
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
	f("connections opened / failed", "%d / %d in %.2fs (%.0f/s)", r.Opened, r.ConnectFailed, r.ConnectSecs, r.ConnectRate)
	for _, m := range r.Memory {
		f("  "+m.Node, "conns=%.0f rss/conn=%.1fKiB heap+stack/conn=%.1fKiB goroutines/conn=%.2f cpu=%.2fs",
			m.Conns, m.RSSPerConn/1024, m.HeapStackConn/1024, m.GoroutinesConn, m.CPUSeconds)
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
