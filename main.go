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
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"notesync/app"
	"notesync/cluster"
	"notesync/realtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp): // the usage, as asked for
	case err != nil:
		fmt.Fprintln(os.Stderr, "notesync:", err)
		os.Exit(2)
	}
}

// run starts one node and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "cluster" {
		return runCluster(ctx, args[1:], os.Stdin, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stdout)
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
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})).With("node", cfg.Node)

	secret, err := sessionSecret(cfg)
	if err != nil {
		return err
	}
	lfs := &cluster.LiteFS{Dir: cfg.LiteFSDir, DB: filepath.Base(cfg.DBPath), API: cfg.LiteFSURL}
	defer lfs.Close()
	if err := waitMount(ctx, lfs); err != nil {
		return err
	}
	// LiteFS's event stream tells the role; until it has, the node waits.
	lfsCtx, stopLFS := context.WithCancel(context.Background())
	defer stopLFS()
	poke := make(chan struct{}, 1)
	go lfs.FollowEvents(lfsCtx, func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}, logger)
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

	hub := realtime.NewHub()
	hub.Logger = logger
	hub.Node = cfg.Node
	hub.PresenceMessage = app.PresenceMessage
	hub.MaxConnsPerUser = cfg.MaxConnsPerUser
	hub.MaxConns = cfg.MaxConns
	metrics := app.NewMetrics(hub)

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

	nodes := &clusterWiring{cfg: cfg, lfs: lfs, hub: hub, feed: feed, sessions: sessions, logger: logger, httpURL: httpURL, signal: make(chan struct{}, 1)}
	if err := nodes.open(); err != nil {
		return err
	}
	defer nodes.close()
	store.OnCommit = nodes.committed
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

	stopAside, err := serveAsides(cfg, metrics)
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
	// A replica learns that changes arrived from LiteFS's tx events, and,
	// as a safety net, from its position moving.
	bg.Go(func() {
		for {
			select {
			case <-bgCtx.Done():
				return
			case <-poke:
				feed.Poke()
			}
		}
	})
	bg.Go(func() { lfs.Watch(bgCtx, 50*time.Millisecond, func(uint64) { feed.Poke() }) })
	bg.Go(func() { nodes.refreshMeta(bgCtx) })
	bg.Go(func() { nodes.signalChanges(bgCtx) })
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
// for: metrics and pprof.
func serveAsides(cfg *config, metrics *app.Metrics) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	if cfg.MetricsAddr != "" {
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", metrics.Handler())
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
	fs.SetOutput(io.Discard) // errors are returned, -h is answered by parseFlags
	n := fs.Int("n", 3, "number of nodes")
	basePort := fs.Int("base-port", 8081, "HTTP port of node1; node i uses base-port+i-1 (LiteFS +100, gossip +200, metrics +300)")
	dir := fs.String("dir", filepath.Join("data", "cluster"), "state of every node")
	config := fs.String("config", "litefs.yml", "LiteFS configuration")
	host := fs.String("host", "127.0.0.1", "loopback address the nodes are reached at")
	netns := fs.Bool("netns", false, "run each node in a network namespace of its own (10.77.0.i; Linux, root); stdin then takes fault commands: "+cluster.FaultCommands)
	const head = "Usage: notesync cluster [flags]\n\nRuns a local cluster under real LiteFS mounts (node1 primary). Flags:\n"
	if err := parseFlags(fs, args, stdout, head); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (notesync cluster -h lists the flags)", fs.Arg(0))
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
