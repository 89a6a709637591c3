package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"notesync/app/feed"
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
	promoted  chan struct{}    // one slot: LiteFS made this node the primary
	db        *sqlite.DB
	hub       *realtime.Hub
	metrics   *web.Metrics
	store     *sqlite.Store
	feed      *feed.Feed
	sessions  *web.SessionStore
	members   *cluster.Membership // nil without gossip
	listeners []net.Listener
	httpURL   string // where other nodes reach this one
	app       *web.Server
	server    *http.Server

	closers []closer // what Open made, to undo in reverse
}

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
// cluster membership, the HTTP server, and the servers beside it. On an
// error it undoes what it did.
func (n *Node) Open(ctx context.Context) error {
	for _, step := range []func(context.Context) error{
		n.openSecret, n.openHub, n.openLiteFS, n.openDatabase, n.openStore,
		n.openListeners, n.openSessions, n.openCluster, n.openHTTP, n.openAsides,
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

// openLiteFS waits for the mount and for LiteFS's event stream to say
// whether this node is the primary. The stream also tells a replica when
// the change feed has something to read (cluster.Changes).
func (n *Node) openLiteFS(ctx context.Context) error {
	n.lfs = &cluster.LiteFS{Dir: n.cfg.LiteFSDir, DB: filepath.Base(n.cfg.DBPath), API: n.cfg.LiteFSURL}
	n.onClose("LiteFS position file", n.lfs.Close)
	if err := waitMount(ctx, n.lfs); err != nil {
		return err
	}
	events, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.onClose("LiteFS event stream", func() error { stop(); <-done; return nil })
	n.changes = &cluster.Changes{Node: n.cfg.Node, IsPrimary: n.lfs.IsPrimary,
		ObserveLag: func(d time.Duration) { n.metrics.ReplicationLag.Observe(d.Seconds()) }}
	n.promoted = make(chan struct{}, 1)
	n.lfs.OnPromoted = func() {
		select {
		case n.promoted <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(done)
		n.lfs.FollowEvents(events, n.changes.Applied, n.logger)
	}()
	return waitRole(ctx, n.lfs)
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

// openStore opens the store with its hooks, and the change feed over it.
func (n *Node) openStore(ctx context.Context) error {
	n.store = sqlite.NewStore(n.db, n.cfg.Node)
	n.onClose("store writer", func() error { n.store.Close(); return nil })
	n.store.ObserveBatch = func(writes int, took time.Duration) {
		n.metrics.WriteBatch.Observe(float64(writes))
		n.metrics.CommitTime.Observe(took.Seconds())
	}
	if n.cfg.BcryptCost != 0 {
		n.store.BcryptCost = n.cfg.BcryptCost
	}
	if n.cfg.Benchmark {
		n.logger.Warn("benchmark mode: password hashes may be weak", "bcrypt_cost", n.store.BcryptCost)
	}
	n.store.PasswordPepper = passwordPepper(n.cfg, n.secret)
	f, err := feed.NewFeed(ctx, n.store, n.hub, n.logger)
	if err != nil {
		return err
	}
	f.ObserveDelay = func(d time.Duration) { n.metrics.PushDelay.Observe(d.Seconds()) }
	f.ObserveRead = n.metrics.ObserveFeedRead
	f.ObservePushed = n.metrics.ObserveFeedPushed
	// A replica's news comes from LiteFS's events, with what the primary
	// shared of each transaction; the primary's from its own writer.
	f.Wake = n.changes.C()
	f.Share = n.changes.Committed
	n.store.Position = n.lfs.TXID
	n.feed = f
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

// openCluster joins the other nodes, when there are any, and hands the
// store's commits to the feed, which shares them with the other nodes.
func (n *Node) openCluster(context.Context) error {
	if err := n.openMembership(); err != nil {
		return err
	}
	if m := n.members; m != nil {
		n.onClose("cluster membership", m.Close)
		n.metrics.CountGossip(func() (uint64, uint64, uint64, uint64) {
			t := m.Traffic()
			return t.Packets, t.PacketBytes, t.Streams, t.StreamBytes
		})
	}
	n.store.OnCommit = n.feed.Committed
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
		Ready:       n.ready,
		Cluster:     n,
		Fly:         n.cfg.FlyMachineID != "",
		EndSession:  n.endSession,
		SignupLimit: n.cfg.SignupLimit,
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
		Handler:           n.front(srv, n.secret),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn),
	}
	return nil
}

func (n *Node) openAsides(context.Context) error {
	stop, err := serveAsides(n.cfg, n.metrics, n.app)
	if err != nil {
		return err
	}
	n.onClose("metrics and pprof servers", func() error { stop(); return nil })
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

// shutdown stops accepting first: Shutdown closes the listeners at once, so
// a tab reconnecting during the shutdown is refused at once and backs off,
// instead of waiting in the dying process's accept queue for SYN
// retransmits. Meanwhile the real-time connections close with 1001, which
// ends the SSE handlers Shutdown waits for.
func (n *Node) shutdown() error {
	n.logger.Info("shutting down")
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

// jobs are the node's background work, each running until its context
// ends.
func (n *Node) jobs() []func(context.Context) {
	return []func(context.Context){
		n.feed.Run,
		func(ctx context.Context) { prune(ctx, n.store, n.lfs, n.logger) },
		func(ctx context.Context) { checkpoint(ctx, n.db, n.lfs, n.logger) },
		func(ctx context.Context) { purge(ctx, n.store, n.lfs, n.logger) },
		n.refreshMeta,
		n.announceChanges,
		func(ctx context.Context) { n.sessions.SweepEnded(ctx, n.hub, 15*time.Second, n.logger) },
		n.migrateOnPromotion,
	}
}
