// Command notesync is a notes web app whose every open tab stays in sync in
// real time, on one node or on a cluster of identical nodes.
//
//	go run .            one node on :8080, data in ./data
//	go run . -h         every flag and its environment variable
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"notesync/app"
	"notesync/cluster"
	"notesync/realtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "notesync:", err)
		}
		os.Exit(2)
	}
}

// config is the node's configuration from flags and environment.
type config struct {
	HTTPAddr      string
	DataDir       string
	DBPath        string
	Node          string
	Region        string
	SessionSecret string
	// PasswordPepper keys the HMAC in front of bcrypt; empty: the session
	// secret does.
	PasswordPepper string
	LogLevel       string

	// Cluster.
	LiteFSDir      string
	LiteFSURL      string
	LiteFSHostname string
	GossipBind     string
	GossipAdvert   string
	Peers          []string
	GossipKey      []byte
	GossipWAN      bool
	HTTPURL        string
	PublicURL      string
	FlyMachineID   string
	PprofAddr      string
	MetricsAddr    string

	// Limits (docs/PROTOCOL.md §8).
	MaxConnsPerUser int
	MaxConns        int
	SignupLimit     int
	// ClientIPHeader names the header in which a reverse proxy in front
	// of the node gives the client's address; empty: none is trusted.
	ClientIPHeader string

	// Assistant (issue 5): an OpenAI-compatible chat-completions server;
	// empty base URL: the built-in planner. The key is never logged.
	AssistantBaseURL string
	AssistantModel   string
	AssistantAPIKey  string

	// Benchmark lowers the floor of BcryptCost below bcryptFloor: password
	// hashes made then are cheap to crack, so only a load test may ask.
	Benchmark  bool
	BcryptCost int // 0: app.Store's default

	// Test hooks.
	refuseWebSocket bool
	bodyTimeout     time.Duration // default app.BodyTimeout
	ready           chan<- string // receives the listening address
}

// bcryptFloor is the lowest bcrypt cost a node accepts outside -benchmark.
const bcryptFloor = 10

var (
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// parseConfig reads flags, with environment variables as defaults. A flag
// given on the command line wins over its variable.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	addrDef := ":8080"
	if p := getenv("PORT"); p != "" {
		addrDef = ":" + p
	}
	regionDef := env("FLY_REGION", env("REGION", "local"))
	// On Fly.io (FLY_MACHINE_ID set) the cluster settings default to the
	// platform's: gossip on the private IPv6 network, peers found through
	// <app>.internal, WAN timings between regions.
	fly := getenv("FLY_MACHINE_ID") != ""
	nodeDef, bindDef, advertDef, peersDef, wanDef, urlDef := "node1", "", "", "", "", ""
	if fly {
		nodeDef = getenv("FLY_MACHINE_ID")
		bindDef = "[::]:7946"
		if ip := getenv("FLY_PRIVATE_IP"); ip != "" {
			advertDef = net.JoinHostPort(ip, "7946")
			port := getenv("PORT")
			if port == "" {
				port = "8080"
			}
			urlDef = "http://" + net.JoinHostPort(ip, port)
		}
		if app := getenv("FLY_APP_NAME"); app != "" {
			peersDef = app + ".internal:7946"
		}
		wanDef = "true"
	}

	fs := flag.NewFlagSet("notesync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.HTTPAddr, "http-addr", env("HTTP_ADDR", addrDef), "HTTP listen address (env HTTP_ADDR; PORT=n gives :n)")
	fs.StringVar(&c.DataDir, "data-dir", env("DATA_DIR", "data"), "directory for the database and generated secrets (env DATA_DIR)")
	fs.StringVar(&c.DBPath, "db", env("DATABASE_PATH", ""), "SQLite database path (env DATABASE_PATH; default <data-dir>/notesync.db)")
	fs.StringVar(&c.Node, "node", env("NODE_NAME", nodeDef), "this node's name (env NODE_NAME)")
	fs.StringVar(&c.Region, "region", regionDef, "this node's region (env FLY_REGION, else REGION)")
	fs.StringVar(&c.SessionSecret, "session-secret", env("SESSION_SECRET", ""), "secret that signs session cookies (env SESSION_SECRET; default: generated once into <data-dir>/session_secret)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&c.LiteFSDir, "litefs-dir", env("LITEFS_DIR", ""), "LiteFS FUSE mount dir holding the database (env LITEFS_DIR; empty: no LiteFS)")
	fs.StringVar(&c.LiteFSURL, "litefs-url", env("LITEFS_URL", ""), "LiteFS HTTP API, whose events tell this node's role (env LITEFS_URL; default http://127.0.0.1:20202 with -litefs-dir)")
	fs.StringVar(&c.LiteFSHostname, "litefs-hostname", env("LITEFS_HOSTNAME", ""), "this node's LiteFS lease hostname, as .primary names it (env LITEFS_HOSTNAME; default: the node name)")
	fs.StringVar(&c.GossipBind, "gossip-bind", env("GOSSIP_BIND", bindDef), "memberlist bind address host:port (env GOSSIP_BIND; empty: no cluster)")
	fs.StringVar(&c.GossipAdvert, "gossip-advertise", env("GOSSIP_ADVERTISE", advertDef), "memberlist address other nodes use (env GOSSIP_ADVERTISE; default: the bind address)")
	peers := fs.String("peers", env("PEERS", peersDef), "comma-separated peer gossip addresses or a DNS name resolving to all peers (env PEERS)")
	key := fs.String("gossip-key", env("GOSSIP_KEY", ""), "base64 gossip encryption key of 16, 24 or 32 bytes (env GOSSIP_KEY)")
	fs.BoolVar(&c.GossipWAN, "gossip-wan", env("GOSSIP_WAN", wanDef) == "true", "gossip timings for links between regions (env GOSSIP_WAN=true)")
	fs.StringVar(&c.HTTPURL, "http-url", env("HTTP_URL", urlDef), "URL other nodes reach this node's HTTP server at (env HTTP_URL; default: from -http-addr)")
	fs.StringVar(&c.PublicURL, "public-url", env("PUBLIC_URL", ""), "URL browsers reach this node at, for the cluster panel's links, when not -http-url (env PUBLIC_URL)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", env("PPROF_ADDR", ""), "serve net/http/pprof on this address, for profiling (env PPROF_ADDR; keep it on loopback)")
	fs.StringVar(&c.AssistantBaseURL, "assistant-base-url", env("ASSISTANT_BASE_URL", ""), "OpenAI-compatible chat-completions base URL for the Assistant, e.g. https://api.openai.com/v1 (env ASSISTANT_BASE_URL; empty: the built-in planner)")
	fs.StringVar(&c.AssistantModel, "assistant-model", env("ASSISTANT_MODEL", ""), "model name sent to the Assistant's server (env ASSISTANT_MODEL)")
	fs.StringVar(&c.AssistantAPIKey, "assistant-api-key", env("ASSISTANT_API_KEY", ""), "API key of the Assistant's server (env ASSISTANT_API_KEY; never logged)")
	limits := c.limitFlags(fs, env)
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", envInt(getenv, "BCRYPT_COST"), "bcrypt cost of new password hashes (env BCRYPT_COST; default 10; below 10 only with -benchmark)")
	fs.BoolVar(&c.Benchmark, "benchmark", env("BENCHMARK", "") == "true", "this node serves a load test: allows -bcrypt-cost below 10 and serves POST /debug/publish on -metrics-addr (env BENCHMARK=true; never in production)")
	c.FlyMachineID = getenv("FLY_MACHINE_ID")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: notesync [flags]\n\nRuns one notesync node. Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
		return nil, fmt.Errorf("invalid -http-addr (HTTP_ADDR/PORT) %q: want host:port or :port", c.HTTPAddr)
	}
	if !nameRE.MatchString(c.Node) {
		return nil, fmt.Errorf("invalid -node (NODE_NAME) %q: letters, digits, '.', '_' and '-', up to 63", c.Node)
	}
	if !nameRE.MatchString(c.Region) {
		return nil, fmt.Errorf("invalid -region (FLY_REGION/REGION) %q", c.Region)
	}
	if c.DataDir == "" {
		return nil, errors.New("invalid -data-dir (DATA_DIR): must not be empty")
	}
	if c.DBPath == "" {
		c.DBPath = filepath.Join(c.DataDir, "notesync.db")
	}
	if fly && (c.SessionSecret == "" || *key == "") {
		return nil, errors.New("missing SESSION_SECRET or GOSSIP_KEY on Fly.io: fly secrets set SESSION_SECRET=$(openssl rand -hex 32) GOSSIP_KEY=$(openssl rand -base64 32)")
	}
	if c.GossipBind != "" && c.SessionSecret == "" {
		return nil, errors.New("missing -session-secret (SESSION_SECRET): every node of a cluster must share one (openssl rand -hex 32)")
	}
	if c.SessionSecret != "" && len(c.SessionSecret) < 16 {
		return nil, errors.New("invalid -session-secret (SESSION_SECRET): use at least 16 characters (32 random bytes advised)")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return nil, err
	}
	if err := limits(); err != nil {
		return nil, err
	}
	if err := checkBcryptCost(c.BcryptCost, c.Benchmark); err != nil {
		return nil, err
	}
	if c.LiteFSDir != "" && c.DBPath == filepath.Join(c.DataDir, "notesync.db") {
		c.DBPath = filepath.Join(c.LiteFSDir, "notesync.db")
	}
	if c.LiteFSHostname == "" {
		c.LiteFSHostname = c.Node
	}
	if c.LiteFSDir != "" && c.LiteFSURL == "" {
		c.LiteFSURL = "http://127.0.0.1:20202"
	}
	for _, p := range strings.Split(*peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.Peers = append(c.Peers, p)
		}
	}
	if len(c.Peers) > 0 && c.GossipBind == "" {
		return nil, errors.New("invalid -peers (PEERS): set -gossip-bind (GOSSIP_BIND) too")
	}
	if c.GossipBind != "" {
		if _, _, err := net.SplitHostPort(c.GossipBind); err != nil {
			return nil, fmt.Errorf("invalid -gossip-bind (GOSSIP_BIND) %q: want host:port", c.GossipBind)
		}
	}
	if c.GossipAdvert != "" {
		if _, _, err := net.SplitHostPort(c.GossipAdvert); err != nil {
			return nil, fmt.Errorf("invalid -gossip-advertise (GOSSIP_ADVERTISE) %q: want host:port", c.GossipAdvert)
		}
	}
	if *key != "" {
		k, err := base64.StdEncoding.DecodeString(*key)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, errors.New("invalid -gossip-key (GOSSIP_KEY): want base64 of 16, 24 or 32 bytes (openssl rand -base64 32)")
		}
		c.GossipKey = k
	}
	if c.HTTPURL != "" {
		if u, err := url.Parse(c.HTTPURL); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("invalid -http-url (HTTP_URL) %q: want http://host:port", c.HTTPURL)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid -public-url (PUBLIC_URL) %q: want http(s)://host[:port]", c.PublicURL)
		}
	}
	if c.AssistantBaseURL != "" {
		if u, err := url.Parse(c.AssistantBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid -assistant-base-url (ASSISTANT_BASE_URL) %q: want http(s)://host[:port]/path", c.AssistantBaseURL)
		}
	}
	return c, nil
}

// limitFlags defines on fs the flags of what a node allows its clients
// (docs/PROTOCOL.md §8) and of what it keeps from them: connection caps,
// the sign-up limit, the trusted client-address header, the password
// pepper and the metrics address. The returned func checks their values
// into c once fs is parsed.
func (c *config) limitFlags(fs *flag.FlagSet, env func(name, def string) string) func() error {
	maxUser := fs.String("max-conns-per-user", env("MAX_CONNS_PER_USER", "32"), "real-time connections one user may hold on this node; the next is refused (env MAX_CONNS_PER_USER; 0: no cap)")
	maxConns := fs.String("max-conns", env("MAX_CONNS", strconv.Itoa(defaultMaxConns())), "real-time connections this node holds at most; the next gets 503 (env MAX_CONNS; default: the open-file limit less a tenth; 0: no cap)")
	signups := fs.String("signup-limit", env("SIGNUP_LIMIT", "20"), "sign-ups one client address may make per hour (env SIGNUP_LIMIT; 0: no limit)")
	fs.StringVar(&c.ClientIPHeader, "client-ip-header", env("CLIENT_IP_HEADER", ""), "header in which the reverse proxy in front of every request gives the client's address, e.g. X-Real-IP or X-Forwarded-For (env CLIENT_IP_HEADER; empty: trust none; on Fly.io Fly-Client-IP is used)")
	fs.StringVar(&c.PasswordPepper, "password-pepper", env("PASSWORD_PEPPER", ""), "secret mixed into every password hash; every node must share it, and changing it makes every password fail (env PASSWORD_PEPPER; default: the session secret)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("METRICS_ADDR", ""), "serve Prometheus metrics at /metrics on this address, apart from the public port (env METRICS_ADDR; empty: not served)")
	return func() error {
		var err error
		if c.MaxConnsPerUser, err = parseCount(*maxUser, "-max-conns-per-user (MAX_CONNS_PER_USER)"); err != nil {
			return err
		}
		if c.MaxConns, err = parseCount(*maxConns, "-max-conns (MAX_CONNS)"); err != nil {
			return err
		}
		if c.SignupLimit, err = parseCount(*signups, "-signup-limit (SIGNUP_LIMIT)"); err != nil {
			return err
		}
		if h := c.ClientIPHeader; h != "" && !headerNameRE.MatchString(h) {
			return fmt.Errorf("invalid -client-ip-header (CLIENT_IP_HEADER) %q: want a header name such as X-Real-IP", h)
		}
		if c.PasswordPepper != "" && len(c.PasswordPepper) < 16 {
			return errors.New("invalid -password-pepper (PASSWORD_PEPPER): use at least 16 characters (32 random bytes advised)")
		}
		if c.MetricsAddr != "" {
			if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
				return fmt.Errorf("invalid -metrics-addr (METRICS_ADDR) %q: want host:port or :port", c.MetricsAddr)
			}
		}
		return nil
	}
}

// parseCount reads a non-negative whole number given to flag.
func parseCount(s, flag string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid %s %q: want a whole number, 0 or more", flag, s)
	}
	return n, nil
}

// defaultMaxConns is the node's default cap on real-time connections: the
// process's open-file limit less a tenth (at least 100), which is left to
// the database, the listeners and short requests. Go raises the soft limit
// to the hard one at start, so this is the limit the node runs with.
func defaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	n := min(lim.Cur, 1<<24)
	keep := max(n/10, 100)
	if n <= 2*keep {
		return int(n / 2)
	}
	return int(n - keep)
}

// envInt reads an integer variable; a malformed one reads as -1, which the
// flag's own check then refuses with the flag's name.
func envInt(getenv func(string) string, name string) int {
	v := getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// checkBcryptCost refuses a cost that bcrypt does not take, and one under
// bcryptFloor unless the node is told it serves a benchmark.
func checkBcryptCost(cost int, benchmark bool) error {
	switch {
	case cost == 0:
		return nil
	case cost < bcrypt.MinCost || cost > bcrypt.MaxCost:
		return fmt.Errorf("invalid -bcrypt-cost (BCRYPT_COST) %d: want %d to %d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	case cost < bcryptFloor && !benchmark:
		return fmt.Errorf("refusing -bcrypt-cost (BCRYPT_COST) %d: under %d password hashes are cheap to crack; only a load test may lower it, with -benchmark (BENCHMARK=true)", cost, bcryptFloor)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid -log-level (LOG_LEVEL) %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// run starts one node and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "cluster" {
		return runCluster(ctx, args[1:], os.Stdin, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}

// sessionCacheTTL is how long a node keeps a session it read. Log-out
// drops it at once here and, through gossip, on every other node; the TTL
// bounds the window on a node whose gossip packet was lost.
const sessionCacheTTL = time.Second

// serve wires the packages together and serves until ctx ends, then shuts
// down in order: stop accepting, close sockets with 1001, finish requests in
// flight, close the database.
func serve(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	level, _ := parseLevel(cfg.LogLevel)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("node", cfg.Node)

	secret, err := sessionSecret(cfg)
	if err != nil {
		return err
	}
	hub := realtime.NewHub()
	hub.Logger = logger
	hub.Node = cfg.Node
	hub.PresenceMessage = app.PresenceMessage
	hub.MaxConnsPerUser = cfg.MaxConnsPerUser
	hub.MaxConns = cfg.MaxConns
	metrics := app.NewMetrics(hub)

	lfs := &cluster.LiteFS{Dir: cfg.LiteFSDir, DB: filepath.Base(cfg.DBPath), API: cfg.LiteFSURL}
	defer lfs.Close()
	if err := waitMount(ctx, lfs); err != nil {
		return err
	}
	// LiteFS's event stream tells the role (until it has, the node waits)
	// and, on a replica, when the change feed has something to read.
	changes := &cluster.Changes{Node: cfg.Node, IsPrimary: lfs.IsPrimary,
		ObserveLag: func(d time.Duration) { metrics.ReplicationLag.Observe(d.Seconds()) }}
	lfsCtx, stopLFS := context.WithCancel(context.Background())
	defer stopLFS()
	go lfs.FollowEvents(lfsCtx, changes.Applied, logger)
	if err := waitRole(ctx, lfs); err != nil {
		return err
	}
	// Only the primary migrates; a replica receives the schema by
	// replication and reports on /readyz until it has it.
	db, err := app.OpenDB(ctx, cfg.DBPath, lfs.IsPrimary())
	if err != nil {
		return err
	}
	defer db.Close()

	store := app.NewStore(db, cfg.Node)
	defer store.Close()
	store.ObserveBatch = func(n int, took time.Duration) {
		metrics.WriteBatch.Observe(float64(n))
		metrics.CommitTime.Observe(took.Seconds())
	}
	if cfg.BcryptCost != 0 {
		store.BcryptCost = cfg.BcryptCost
	}
	if cfg.Benchmark {
		logger.Warn("benchmark mode: password hashes may be weak", "bcrypt_cost", store.BcryptCost)
	}
	store.PasswordPepper = passwordPepper(cfg, secret)
	feed, err := app.NewFeed(ctx, store, hub, logger)
	if err != nil {
		return err
	}
	feed.ObserveDelay = func(d time.Duration) { metrics.PushDelay.Observe(d.Seconds()) }
	feed.ObserveRead = metrics.ObserveFeedRead
	feed.ObservePushed = metrics.ObserveFeedPushed
	// A replica's news comes from LiteFS's events, with what the primary
	// shared of each transaction; the primary's from its own writer.
	feed.Wake = changes.C()
	feed.Share = changes.Committed
	store.Position = lfs.TXID

	lns, err := listen(cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	for _, l := range lns {
		defer l.Close()
	}
	ln := lns[0]
	httpURL := cfg.HTTPURL
	if httpURL == "" {
		httpURL = "http://" + displayAddr(ln.Addr())
	}

	sessions := app.NewSessionStore(store, secret)
	sessions.IsPrimary = lfs.IsPrimary
	sessions.ReplicaWait = 3 * time.Second
	sessions.CacheFor(sessionCacheTTL)

	nodes := &clusterWiring{cfg: cfg, lfs: lfs, hub: hub, changes: changes, sessions: sessions, logger: logger, httpURL: httpURL}
	if err := nodes.open(); err != nil {
		return err
	}
	defer nodes.close()
	if m := nodes.members; m != nil {
		metrics.CountGossip(func() (uint64, uint64, uint64, uint64) {
			t := m.Traffic()
			return t.Packets, t.PacketBytes, t.Streams, t.StreamBytes
		})
	}
	// What this node commits goes to its feed straight from the writer.
	store.OnCommit = feed.Committed
	srv, err := app.NewServer(app.Config{
		Store:           store,
		Sessions:        sessions,
		Feed:            feed,
		Hub:             hub,
		Metrics:         metrics,
		Logger:          logger,
		Node:            cfg.Node,
		Region:          cfg.Region,
		Ready:           nodes.ready,
		Replication:     nodes.replicationReport,
		ClusterStatus:   nodes.status,
		EndSession:      nodes.endSession,
		SignupLimit:     cfg.SignupLimit,
		HSTS:            cfg.FlyMachineID != "", // fly.toml: force_https
		RefuseWebSocket: cfg.refuseWebSocket,

		AssistantBaseURL: cfg.AssistantBaseURL,
		AssistantModel:   cfg.AssistantModel,
		AssistantAPIKey:  cfg.AssistantAPIKey,
	})
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		Handler:           nodes.front(srv, secret),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	stopAside, err := serveAsides(cfg, metrics, srv)
	if err != nil {
		return err
	}
	defer stopAside()

	bgCtx, stopBG := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() { feed.Run(bgCtx) })
	bg.Go(func() { prune(bgCtx, store, lfs, logger) })
	bg.Go(func() { checkpoint(bgCtx, db, lfs, logger) })
	bg.Go(func() { purge(bgCtx, store, lfs, logger) })
	bg.Go(func() { nodes.refreshMeta(bgCtx) })
	bg.Go(func() { nodes.announceChanges(bgCtx) })
	bg.Go(func() { nodes.closeEndedSessions(bgCtx, 15*time.Second) })
	bg.Go(func() { nodes.migrateOnPromotion(bgCtx, db) })

	serveErr := make(chan error, len(lns))
	for _, l := range lns {
		go func() { serveErr <- httpSrv.Serve(l) }()
	}
	logger.Info("listening", "addr", ln.Addr().String(), "db", cfg.DBPath, "region", cfg.Region, "primary", lfs.IsPrimary(),
		"max_conns", cfg.MaxConns, "max_conns_per_user", cfg.MaxConnsPerUser)
	fmt.Fprintf(stdout, "notesync %s (%s) on http://%s\n", cfg.Node, cfg.Region, displayAddr(ln.Addr()))
	if cfg.ready != nil {
		cfg.ready <- ln.Addr().String()
	}

	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		logger.Info("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Stop accepting first: Shutdown closes the listener at once, so a
		// tab reconnecting during the shutdown is refused at once and backs
		// off, instead of waiting in the dying process's accept queue for
		// SYN retransmits. Meanwhile the real-time connections close with
		// 1001, which ends the SSE handlers Shutdown waits for.
		start := time.Now()
		shut := make(chan error, 1)
		go func() { shut <- httpSrv.Shutdown(shutdownCtx) }()
		n := hub.Stats().Connections
		hub.Close(3 * time.Second)
		closed := time.Since(start)
		err = <-shut
		logger.Info("stopped serving", "connections", n, "sockets_closed_in", closed, "requests_finished_in", time.Since(start))
	}
	stopBG()
	bg.Wait()
	return err
}

// serveAsides starts the servers beside the public port that cfg asks
// for: metrics (and, on a benchmark node only, the load tool's publish)
// and pprof.
func serveAsides(cfg *config, metrics *app.Metrics, srv *app.Server) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	if cfg.MetricsAddr != "" {
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", metrics.Handler())
		if cfg.Benchmark {
			mmux.Handle("POST /debug/publish", srv.BenchPublishHandler())
		}
		s, err := serveAside(cfg.MetricsAddr, "-metrics-addr", mmux)
		if err != nil {
			return nil, err
		}
		stops = append(stops, s)
	}
	if cfg.PprofAddr != "" {
		pmux := http.NewServeMux()
		pmux.HandleFunc("/debug/pprof/", pprof.Index)
		pmux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pmux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s, err := serveAside(cfg.PprofAddr, "-pprof-addr", pmux)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, s)
	}
	return stop, nil
}

// serveAside serves h on addr, an address of its own beside the public
// HTTP port (named by flag in errors), until stop is called.
func serveAside(addr, flag string, h http.Handler) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", flag, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// waitRole waits until LiteFS has said whether this node is primary.
func waitRole(ctx context.Context, lfs *cluster.LiteFS) error {
	if !lfs.Enabled() || lfs.API == "" {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for !lfs.RoleKnown() {
		if time.Now().After(deadline) {
			return fmt.Errorf("no role from LiteFS at %s within 30 s (check -litefs-url)", lfs.API)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// waitMount waits for the LiteFS mount (LiteFS starts the app only once
// mounted, but a node started by hand may race it).
func waitMount(ctx context.Context, lfs *cluster.LiteFS) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := lfs.Ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runCluster is `notesync cluster`: a local cluster of N nodes, each under
// its own LiteFS mount, until ctx ends. With -netns each node has a network
// of its own, and stdin takes fault commands (docs/PROTOCOL.md §10).
func runCluster(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notesync cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 3, "number of nodes")
	basePort := fs.Int("base-port", 8081, "HTTP port of node1; node i uses base-port+i-1 (LiteFS +100, gossip +200, metrics +300)")
	dir := fs.String("dir", filepath.Join("data", "cluster"), "state of every node")
	config := fs.String("config", "litefs.yml", "LiteFS configuration")
	host := fs.String("host", "127.0.0.1", "loopback address the nodes are reached at")
	netns := fs.Bool("netns", false, "run each node in a network namespace of its own (10.77.0.i; Linux, root); stdin then takes fault commands: "+cluster.FaultCommands)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: notesync cluster [flags]\n\nRuns a local cluster under real LiteFS mounts (node1 primary). Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 50 {
		return fmt.Errorf("invalid -n %d: want 1 to 50", *n)
	}
	if *basePort < 1 || *basePort+300+*n > 65535 {
		return fmt.Errorf("invalid -base-port %d", *basePort)
	}
	if ip := net.ParseIP(*host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("invalid -host %q: want a loopback address such as 127.0.0.1", *host)
	}
	if *netns {
		if err := cluster.CheckNetns(); err != nil {
			return err
		}
	}
	if err := cluster.CheckFUSE(); err != nil {
		return err
	}
	cfgPath, err := filepath.Abs(*config)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfgPath); err != nil {
		return fmt.Errorf("invalid -config: %w (run from the repository root)", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	litefs, err := litefsBinary()
	if err != nil {
		return err
	}
	l := &cluster.Launcher{
		N: *n, BasePort: *basePort, Host: *host, Dir: *dir, Netns: *netns, Exe: exe, LiteFS: litefs, Config: cfgPath,
		Input: stdin, Stdout: stdout, Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	}
	return l.Run(ctx)
}

// litefsBinary builds (or finds, cached) the LiteFS pinned in go.mod's tool
// line, so nothing needs installing. It runs the binary directly rather
// than through `go tool`, whose wrapper would orphan LiteFS on SIGKILL.
func litefsBinary() (string, error) {
	if p := os.Getenv("LITEFS_BIN"); p != "" {
		return p, nil
	}
	out, err := exec.Command("go", "tool", "-n", "litefs").Output()
	if err != nil {
		return "", fmt.Errorf("build litefs with `go tool -n litefs`: %w (set LITEFS_BIN to use another binary)", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// onPrimary runs fn every d while this node is the primary (the node that
// writes), logging what fails as what.
func onPrimary(ctx context.Context, lfs *cluster.LiteFS, logger *slog.Logger, d time.Duration, what string, fn func(context.Context) error) {
	every(ctx, d, func() {
		if !lfs.IsPrimary() {
			return
		}
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			logger.Warn(what, "err", err)
		}
	})
}

// prune deletes stale change-log rows, idempotency keys and sessions every
// ten minutes, on the primary (writes happen there only).
func prune(ctx context.Context, store *app.Store, lfs *cluster.LiteFS, logger *slog.Logger) {
	onPrimary(ctx, lfs, logger, 10*time.Minute, "prune", func(ctx context.Context) error {
		return store.Prune(ctx, time.Hour)
	})
}

// purge forgets deleted notes once their undo window has passed, on the
// primary; a check that finds none costs a read.
func purge(ctx context.Context, store *app.Store, lfs *cluster.LiteFS, logger *slog.Logger) {
	onPrimary(ctx, lfs, logger, app.UndoWindow/3, "purge deleted notes", func(ctx context.Context) error {
		_, err := store.Purge(ctx)
		return err
	})
}

// checkpoint keeps the WAL short on the node that writes, off the commit
// path (see app.DB.Checkpoint).
func checkpoint(ctx context.Context, db *app.DB, lfs *cluster.LiteFS, logger *slog.Logger) {
	onPrimary(ctx, lfs, logger, time.Second, "checkpoint", func(ctx context.Context) error {
		_, _, err := db.Checkpoint(ctx)
		return err
	})
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// sessionSecret returns SESSION_SECRET, or a secret generated once and kept
// in the data dir so sessions survive restarts.
func sessionSecret(cfg *config) ([]byte, error) {
	if cfg.SessionSecret != "" {
		return []byte(cfg.SessionSecret), nil
	}
	path := filepath.Join(cfg.DataDir, "session_secret")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read session secret: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write session secret: %w", err)
	}
	return []byte(secret), nil
}

// passwordPepper is the key of the HMAC that passwords go through before
// bcrypt: derived from -password-pepper, else from the session secret. A
// deployment that changes its session secret (which signs everyone out)
// keeps its passwords working by setting the old one as the pepper.
func passwordPepper(cfg *config, sessionSecret []byte) []byte {
	from := sessionSecret
	if cfg.PasswordPepper != "" {
		from = []byte(cfg.PasswordPepper)
	}
	key := sha256.Sum256(append([]byte("notesync password pepper\x00"), from...))
	return key[:]
}

// displayAddr turns ":8080" into "localhost:8080" for the start-up line.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
