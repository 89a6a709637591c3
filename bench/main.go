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
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
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
	// TabsPerConn is how many tabs each client is: a browser whose tabs
	// share its connection reports them after every hello.
	TabsPerConn int
	Rate        float64
	Duration    time.Duration
	WriteNodes  []int // 0-based indexes into URLs
	Workers     int
	JSON        string
	Timeout     time.Duration
	StaleEvery  int
	PprofAddr   string
	Profile     string // a directory for the CPU profiles of the write phase
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
	fs.IntVar(&c.TabsPerConn, "tabs-per-conn", 1, "notesync: each client is a browser whose this many tabs share its connection, and says so after every hello (docs/PROTOCOL.md §13)")
	fs.Float64Var(&c.Rate, "rate", 50, "writes per second, open loop")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "length of the write phase")
	wn := fs.String("write-nodes", "all", "nodes that take writes: all, or 1-based indexes like 1,3")
	fs.IntVar(&c.Workers, "workers", 1, "client worker processes (each holds at most 9,000 sockets)")
	fs.StringVar(&c.JSON, "json", "", "write every figure to this JSON file")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "overall bound")
	fs.IntVar(&c.StaleEvery, "stale-every", 10, "refetch after 1 in this many pushes to check for stale reads (0: never)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "with -start single: serve the node's pprof here")
	fs.StringVar(&c.Profile, "profile", "", "notesync: save CPU profiles of every node (the app, and its LiteFS with -start cluster) over the write phase into this directory")
	fs.IntVar(&c.Storm, "storm", 0, "with -start: after the write phase, restart this node (1-based) while writing on, and time the reconnect storm")
	fs.StringVar(&c.NodeExe, "exe", "", "with -start: run this prebuilt notesync binary instead of building one")
	fs.StringVar(&c.Target, "target", "notesync", "server under test: notesync, centrifugo (the peer, with -start), or both one after the other with a side-by-side table")
	fs.StringVar(&c.PeerExe, "peer-exe", "", "the Centrifugo binary (default: where bench/centrifugo.sh installs it)")
	fs.StringVar(&c.PeerEngine, "peer-engine", "auto", "Centrifugo's engine on one node: memory, redis, or auto (redis with -storm, so that history outlives the restart; a cluster always uses redis)")
	fs.DurationVar(&c.Idle, "idle", 0, "after connecting, wait this long and report what the nodes did idle (gossip at steady state)")
	fs.Float64Var(&c.PublishRate, "publish-rate", 0, "after the writes, publish this many ephemeral messages a second for -duration through node 1 to every tab of a user (notesync: its -benchmark POST /debug/publish; the peer: a publish without history)")
	fs.IntVar(&c.Kill, "kill", 0, "with -start cluster: at the end, kill this node (1-based) with SIGKILL and time the presence its users' other tabs are told (notesync only: the peer's run skips it)")
	fs.DurationVar(&c.KillHold, "kill-hold", 15*time.Second, "with -kill: how long the node stays down before it is started again")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if (*urls == "") == (c.Start == "") {
		return c, fmt.Errorf("give either -urls or -start")
	}
	nodes := 0 // that the tool starts
	switch c.Start {
	case "":
	case "single":
		nodes = 1
	case "cluster":
		nodes = 3
	default:
		return c, fmt.Errorf("-start must be single or cluster, not %q", c.Start)
	}
	if c.Storm != 0 && (c.Storm < 1 || c.Storm > nodes) {
		return c, fmt.Errorf("-storm %d: give a node the tool starts (1 with -start single, 1 to 3 with -start cluster)", c.Storm)
	}
	if c.Kill != 0 && (c.Start != "cluster" || c.Kill < 1 || c.Kill > nodes) {
		return c, fmt.Errorf("-kill %d: give a node from 1 to 3 with -start cluster (the other nodes' tabs are told)", c.Kill)
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
	if c.TabsPerConn < 1 || c.TabsPerConn > 100 || c.TabsPerConn > 1 && c.Target != "notesync" {
		return c, fmt.Errorf("-tabs-per-conn: 1 to 100, and more than 1 only with -target notesync")
	}
	c.Exe = os.Args[0]
	return c, nil
}
