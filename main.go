// Command notesync is a notes web app whose every open tab stays in sync in
// real time, on one node or on a cluster of identical nodes.
//
//	go run .            one node on :8080, data in ./data
//	go run . -h         every flag and its environment variable
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"notesync/app"
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
	LogLevel      string

	// Test hooks.
	refuseWebSocket bool
	bcryptCost      int
	ready           chan<- string // receives the listening address
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

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

	fs := flag.NewFlagSet("notesync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.HTTPAddr, "http-addr", env("HTTP_ADDR", addrDef), "HTTP listen address (env HTTP_ADDR; PORT=n gives :n)")
	fs.StringVar(&c.DataDir, "data-dir", env("DATA_DIR", "data"), "directory for the database and generated secrets (env DATA_DIR)")
	fs.StringVar(&c.DBPath, "db", env("DATABASE_PATH", ""), "SQLite database path (env DATABASE_PATH; default <data-dir>/notesync.db)")
	fs.StringVar(&c.Node, "node", env("NODE_NAME", "node1"), "this node's name (env NODE_NAME)")
	fs.StringVar(&c.Region, "region", regionDef, "this node's region (env FLY_REGION, else REGION)")
	fs.StringVar(&c.SessionSecret, "session-secret", env("SESSION_SECRET", ""), "secret that signs session cookies (env SESSION_SECRET; default: generated once into <data-dir>/session_secret)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
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
	if c.SessionSecret != "" && len(c.SessionSecret) < 16 {
		return nil, errors.New("invalid -session-secret (SESSION_SECRET): use at least 16 characters (32 random bytes advised)")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return nil, err
	}
	return c, nil
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
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}

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
	db, err := app.OpenDB(ctx, cfg.DBPath, true)
	if err != nil {
		return err
	}
	defer db.Close()

	hub := realtime.NewHub()
	hub.Logger = logger
	metrics := app.NewMetrics(hub)

	store := app.NewStore(db, cfg.Node)
	if cfg.bcryptCost != 0 {
		store.BcryptCost = cfg.bcryptCost
	}
	feed, err := app.NewFeed(ctx, store, hub, logger)
	if err != nil {
		return err
	}
	store.OnCommit = feed.Poke

	srv, err := app.NewServer(app.Config{
		Store:           store,
		Sessions:        app.NewSessionStore(store, secret),
		Feed:            feed,
		Hub:             hub,
		Metrics:         metrics,
		Logger:          logger,
		Node:            cfg.Node,
		Region:          cfg.Region,
		RefuseWebSocket: cfg.refuseWebSocket,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	feedCtx, stopFeed := context.WithCancel(context.Background())
	feedDone := make(chan struct{})
	go func() { defer close(feedDone); feed.Run(feedCtx) }()
	pruneDone := make(chan struct{})
	go func() { defer close(pruneDone); prune(feedCtx, store, logger) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "db", cfg.DBPath, "region", cfg.Region)
	fmt.Fprintf(stdout, "notesync %s (%s) on http://%s\n", cfg.Node, cfg.Region, displayAddr(ln.Addr()))
	if cfg.ready != nil {
		cfg.ready <- ln.Addr().String()
	}

	select {
	case err := <-serveErr:
		stopFeed()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Close real-time connections first (1001), so SSE handlers return and
	// Shutdown does not wait on them.
	hub.Close(3 * time.Second)
	err = httpSrv.Shutdown(shutdownCtx)
	stopFeed()
	<-feedDone
	<-pruneDone
	return err
}

// prune deletes stale change-log rows, idempotency keys and sessions every
// ten minutes.
func prune(ctx context.Context, store *app.Store, logger *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := store.Prune(ctx, time.Hour); err != nil && ctx.Err() == nil {
				logger.Warn("prune", "err", err)
			}
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
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
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
