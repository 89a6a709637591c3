package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"sync"
	"time"

	"notesync/app"
	"notesync/app/feed"
	"notesync/app/journal"
	"notesync/app/sqlite"
	"notesync/app/web"
	"notesync/cluster"
	"notesync/realtime"
)

// Node is one notesync node. Open builds it in the order its parts depend
// on each other, Run serves until its context ends, and Close takes it
// apart in reverse, each step named.
//
//	n := &Node{cfg: cfg, stdout: os.Stdout, logger: logger}
//	if err := n.Open(ctx); err != nil { ... }
//	defer n.Close()
//	return n.Run(ctx)
type Node struct {
	cfg    *config
	stdout io.Writer // the start-up line
	logger *slog.Logger

	secret    []byte
	lfs       *cluster.LiteFS
	changes   *cluster.Changes // what LiteFS applied and the primary shared
	acks      *cluster.Acks    // where each node's copy is; nil without LiteFS
	promoted  chan struct{}    // one slot: LiteFS made this node the primary
	db        *sqlite.DB
	hub       *realtime.Hub
	metrics   *web.Metrics
	store     *sqlite.Store
	feed      *feed.Feed
	journal   *journal.Journal // what it takes to apply recent changes again; nil without LiteFS
	sessions  *web.SessionStore
	cluster   *cluster.Node // the cluster view, forwarding and pinning
	listeners []net.Listener
	httpURL   string // where other nodes reach this one
	app       *web.Server
	server    *http.Server

	closers []closer // what Open made, to undo in reverse
}

// The change pipeline's interfaces, each declared where it is used, and
// what the node gives them.
var (
	_ sqlite.Committer    = (*feed.Feed)(nil)
	_ sqlite.Positioner   = (*cluster.LiteFS)(nil)
	_ feed.Replication    = (*cluster.Changes)(nil)
	_ sqlite.Acknowledger = (*cluster.Acks)(nil)
)

// closer is one step of Close.
type closer struct {
	what string
	fn   func() error
}

// sessionCacheTTL is how long a node keeps a session it read. Log-out
// drops it at once here and, through gossip, on every other node; the TTL
// bounds the window on a node whose gossip packet was lost.
const sessionCacheTTL = time.Second

// serve runs the node cfg describes until ctx ends.
func serve(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})).With("node", cfg.Node)
	n := &Node{cfg: cfg, stdout: stdout, logger: logger}
	if err := n.Open(ctx); err != nil {
		return err
	}
	defer n.Close()
	return n.Run(ctx)
}

// Open builds the node: secrets, the hub, the LiteFS mount and role, the
// database, the store and its change feed, the listening sockets, sessions,
// cluster membership, the HTTP server, and the operations servers (metrics,
// pprof). On an error it undoes what it did.
func (n *Node) Open(ctx context.Context) error {
	for _, step := range []func(context.Context) error{
		n.openSecret, n.openHub, n.openLiteFS, n.openDatabase, n.openStore, n.openJournal,
		n.openListeners, n.openSessions, n.openCluster, n.openHTTP, n.openOpsServers,
	} {
		if err := step(ctx); err != nil {
			n.Close()
			return err
		}
	}
	return nil
}

// onClose registers what Close undoes, named for its log line.
func (n *Node) onClose(what string, fn func() error) {
	n.closers = append(n.closers, closer{what, fn})
}

// Close undoes Open in reverse and logs what fails. Calling it again does
// nothing.
func (n *Node) Close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		c := n.closers[i]
		if err := c.fn(); err != nil {
			n.logger.Warn("close "+c.what, "err", err)
		}
	}
	n.closers = nil
}

func (n *Node) openSecret(context.Context) error {
	var err error
	n.secret, err = sessionSecret(n.cfg)
	return err
}

// openLiteFS waits for the mount and for LiteFS's event stream, which
// cluster.Changes follows, to say whether this node is the primary. The
// stream also tells a replica when the change feed has something to read.
func (n *Node) openLiteFS(ctx context.Context) error {
	n.lfs = &cluster.LiteFS{Dir: n.cfg.LiteFSDir, DB: filepath.Base(n.cfg.DBPath), API: n.cfg.LiteFSURL}
	n.onClose("LiteFS position file", n.lfs.Close)
	if err := n.lfs.WaitMount(ctx); err != nil {
		return err
	}
	n.promoted = make(chan struct{}, 1)
	n.lfs.OnPromoted = func() {
		select {
		case n.promoted <- struct{}{}:
		default:
		}
	}
	if n.lfs.Enabled() {
		n.acks = &cluster.Acks{Node: n.cfg.Node, LiteFS: n.lfs, Logger: n.logger,
			Observe: func(d time.Duration) { n.metrics.AckWait.Observe(d.Seconds()) }}
	}
	n.changes = &cluster.Changes{Node: n.cfg.Node, LiteFS: n.lfs, Logger: n.logger, Acks: n.acks,
		ObserveLag: func(d time.Duration) { n.metrics.ReplicationLag.Observe(d.Seconds()) }}
	n.changes.Open()
	n.onClose("LiteFS event stream", n.changes.Close)
	return n.lfs.WaitRole(ctx)
}

// openDatabase opens the database; only the primary migrates it, and a
// replica receives the schema by replication (reporting on /readyz until
// it has it).
func (n *Node) openDatabase(ctx context.Context) error {
	db, err := sqlite.OpenDB(ctx, n.cfg.DBPath, n.lfs.IsPrimary())
	if err != nil {
		return err
	}
	n.db = db
	n.onClose("database", db.Close)
	return nil
}

func (n *Node) openHub(context.Context) error {
	n.hub = realtime.NewHub()
	n.hub.Logger = n.logger
	n.hub.Node = n.cfg.Node
	n.hub.PresenceMessage = web.PresenceMessage
	n.hub.MaxConnsPerUser = n.cfg.MaxConnsPerUser
	n.hub.MaxConns = n.cfg.MaxConns
	n.metrics = web.NewMetrics(n.hub)
	return nil
}

// openStore opens the store and the change feed over it, to which the
// store's writer hands what it commits.
func (n *Node) openStore(ctx context.Context) error {
	n.store = sqlite.NewStore(n.db, n.cfg.Node)
	n.store.ObserveBatch = func(writes int, took time.Duration) {
		n.metrics.WriteBatch.Observe(float64(writes))
		n.metrics.CommitTime.Observe(took.Seconds())
	}
	n.store.Quota = app.Quota{Notes: int64(n.cfg.MaxNotesPerUser), Bytes: int64(n.cfg.MaxBytesPerUser)}
	if n.cfg.BcryptCost != 0 {
		n.store.BcryptCost = n.cfg.BcryptCost
	}
	if n.cfg.Benchmark {
		n.logger.Warn("benchmark mode: password hashes may be weak", "bcrypt_cost", n.store.BcryptCost)
	}
	n.store.PasswordPepper = passwordPepper(n.cfg, n.secret)
	// The feed reads the store, pushes to the hub, and announces to and
	// hears from the other nodes through the Changes.
	f, err := feed.NewFeed(ctx, n.store, n.hub, n.changes, n.logger)
	if err != nil {
		return err
	}
	f.ObserveDelay = func(d time.Duration) { n.metrics.PushDelay.Observe(d.Seconds()) }
	f.ObserveRead = n.metrics.ObserveFeedRead
	f.ObservePushed = n.metrics.ObserveFeedPushed
	// When the change log went back under the node, its tabs may show
	// changes that are gone: they come back, name what they have seen,
	// and are told to start again (docs/PROTOCOL.md §11).
	f.Diverged = func() { n.hub.CloseAll(realtime.StatusServiceRestart, "history changed") }
	n.feed = f
	n.store.Position = n.lfs
	if n.acks != nil && n.cfg.WriteAck {
		n.store.Held = n.acks
	}
	// The writer hands each commit's changes to the feed.
	n.store.Open(f)
	n.onClose("store writer", func() error { n.store.Close(); return nil })
	return nil
}

func (n *Node) openListeners(context.Context) error {
	lns, err := listen(n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.HTTPAddr, err)
	}
	n.listeners = lns
	n.onClose("listeners", func() error {
		var errs []error
		for _, l := range lns {
			if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	n.httpURL = n.cfg.HTTPURL
	if n.httpURL == "" {
		n.httpURL = "http://" + displayAddr(lns[0].Addr())
	}
	return nil
}

func (n *Node) openSessions(context.Context) error {
	n.sessions = web.NewSessionStore(n.store, n.secret)
	n.sessions.IsPrimary = n.lfs.IsPrimary
	n.sessions.ReplicaWait = 3 * time.Second
	n.sessions.CacheFor(sessionCacheTTL)
	return nil
}

// openCluster joins the other nodes, when there are any, and makes the
// cluster view that /api/cluster, /readyz and write forwarding use.
func (n *Node) openCluster(context.Context) error {
	gossip, err := n.openMembership()
	if err != nil {
		return err
	}
	n.cluster = &cluster.Node{
		Name: n.cfg.Node, Region: n.cfg.Region, Machine: n.cfg.FlyMachineID,
		Secret: n.secret, LiteFS: n.lfs, Changes: n.changes, Acks: n.acks, Gossip: gossip,
		Self: n.meta, NodeLocal: nodeLocal, Logger: n.logger, HoldWrites: n.db.HoldWrites,
	}
	return nil
}

func (n *Node) openHTTP(context.Context) error {
	srv, err := web.NewServer(web.Config{
		Store:       n.store,
		Sessions:    n.sessions,
		Feed:        n.feed,
		Hub:         n.hub,
		Metrics:     n.metrics,
		Logger:      n.logger,
		Node:        n.cfg.Node,
		Region:      n.cfg.Region,
		Ready:       n.cluster.Ready,
		Cluster:     n.cluster,
		Fly:         n.cfg.FlyMachineID != "",
		EndSession:  n.endSession,
		SignupLimit: n.cfg.SignupLimit,
		WriteBudget: &web.WriteBudget{Rate: float64(n.cfg.WriteRate), Burst: n.cfg.WriteBurst},
		HSTS:        n.cfg.FlyMachineID != "", // fly.toml: force_https

		AssistantBaseURL: n.cfg.AssistantBaseURL,
		AssistantModel:   n.cfg.AssistantModel,
		AssistantAPIKey:  n.cfg.AssistantAPIKey,
	})
	if err != nil {
		return err
	}
	n.app = srv
	n.server = &http.Server{
		Handler:           n.publicHandler(srv),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn),
	}
	return nil
}

// publicHandler is what serves the public port: the app behind the write
// and body deadlines, Fly's pinning, the trusted client-address header and
// write forwarding, outermost first.
func (n *Node) publicHandler(srv http.Handler) http.Handler {
	h := n.cluster.Forward(n.reapplyRoute(srv))
	if n.cfg.ClientIPHeader != "" {
		// Outside the forwarder, so that a forwarded write carries the
		// client's address; inside the pinner, so that it wins over
		// Fly-Client-IP when another proxy stands in front of Fly's.
		h = web.TrustClientHeader(n.cfg.ClientIPHeader, h)
	}
	h = n.cluster.Pin(h)
	bodyTimeout := web.BodyTimeout
	if n.cfg.bodyTimeout != 0 {
		bodyTimeout = n.cfg.bodyTimeout
	}
	writeTimeout := web.WriteTimeout
	if n.cfg.writeTimeout != 0 {
		writeTimeout = n.cfg.writeTimeout
	}
	return web.WriteWithin(writeTimeout, web.ReadBodyWithin(bodyTimeout, h))
}

// openOpsServers starts the operations servers beside the public port
// that the configuration asks for: metrics (and, on a benchmark node
// only, the load tool's publish and CPU profile; with a handoff token,
// the launcher's handoff) and pprof.
func (n *Node) openOpsServers(context.Context) error {
	if addr := n.cfg.MetricsAddr; addr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", n.metrics.Handler())
		if n.cfg.Benchmark {
			mux.Handle("POST /debug/publish", n.app.BenchPublishHandler())
			// The load tool's -profile: a node of a local cluster has no
			// -pprof-addr of its own.
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		}
		if n.cfg.HandoffToken != "" {
			mux.Handle("POST /handoff", n.handOffHandler(n.cfg.HandoffToken))
		}
		if err := n.serveOps(addr, "-metrics-addr", "metrics server", mux); err != nil {
			return err
		}
	}
	if addr := n.cfg.PprofAddr; addr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if err := n.serveOps(addr, "-pprof-addr", "pprof server", mux); err != nil {
			return err
		}
	}
	return nil
}

// serveOps serves h on addr, an address of its own beside the public port
// (named by flag in errors), until Close.
func (n *Node) serveOps(addr, flag, what string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s %s: %w", flag, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	n.onClose(what, func() error { _ = srv.Close(); return nil })
	return nil
}

// Run starts the background jobs, serves until ctx ends, and shuts down in
// order: stop accepting, close sockets with 1001, finish requests in
// flight, stop the jobs.
func (n *Node) Run(ctx context.Context) error {
	jobs, stopJobs := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	for _, job := range n.jobs() {
		bg.Go(func() { job(jobs) })
	}
	defer func() {
		stopJobs()
		bg.Wait()
	}()

	serveErr := make(chan error, len(n.listeners))
	for _, l := range n.listeners {
		go func() { serveErr <- n.server.Serve(l) }()
	}
	addr := n.listeners[0].Addr()
	n.logger.Info("listening", "addr", addr.String(), "db", n.cfg.DBPath, "region", n.cfg.Region, "primary", n.lfs.IsPrimary(),
		"max_conns", n.cfg.MaxConns, "max_conns_per_user", n.cfg.MaxConnsPerUser)
	fmt.Fprintf(n.stdout, "notesync %s (%s) on http://%s\n", n.cfg.Node, n.cfg.Region, displayAddr(addr))
	if n.cfg.ready != nil {
		n.cfg.ready <- addr.String()
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		return n.shutdown()
	}
}

// shutdown hands the lease off first, when this node is the primary, while
// it still serves: writes that arrive meanwhile wait, then go to the new
// primary. Then it stops accepting: Shutdown closes the listeners at once,
// so a tab reconnecting during the shutdown is refused at once and backs
// off, instead of waiting in the dying process's accept queue for SYN
// retransmits. Meanwhile the real-time connections close with 1001, which
// ends the SSE handlers Shutdown waits for.
func (n *Node) shutdown() error {
	n.logger.Info("shutting down")
	n.handOff()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- n.server.Shutdown(ctx) }()
	conns := n.hub.Stats().Connections
	n.hub.Close(3 * time.Second)
	closed := time.Since(start)
	err := <-shut
	n.logger.Info("stopped serving", "connections", conns, "sockets_closed_in", closed, "requests_finished_in", time.Since(start))
	return err
}

// handOff moves the lease to a caught-up candidate when this node is the
// primary of a cluster (docs/PROTOCOL.md §11). LiteFS stops the app before
// it stops itself, so its API still answers. When no candidate holds every
// change, the node stops as it would without: LiteFS releases the lease
// as it exits, and writes get 503 until a candidate takes it.
func (n *Node) handOff() {
	if !n.lfs.IsPrimary() || n.cluster.Gossip == nil {
		return
	}
	start := time.Now()
	to, err := n.cluster.HandOff(context.Background(), "")
	if err != nil {
		n.logger.Warn("stopping without handing the lease off", "err", err, "took", time.Since(start))
		return
	}
	n.logger.Info("handed the lease off", "to", to, "took", time.Since(start))
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
