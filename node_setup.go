package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"notesync/app/web"
	"notesync/cluster"
	"notesync/internal/fileperm"
)

// serveAsides starts the servers beside the public port that cfg asks
// for: metrics (and, on a benchmark node only, the load tool's publish)
// and pprof.
func serveAsides(cfg *config, metrics *web.Metrics, srv *web.Server) (stop func(), err error) {
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

// sessionSecret returns SESSION_SECRET, or a secret generated once and kept
// in the data dir so sessions survive restarts. The file is this user's
// only (0600), narrowed before it is read: it signs cookies, peppers
// passwords and signs forwarded writes. A node that cannot narrow it does
// not start.
func sessionSecret(cfg *config) ([]byte, error) {
	if cfg.SessionSecret != "" {
		return []byte(cfg.SessionSecret), nil
	}
	path := filepath.Join(cfg.DataDir, "session_secret")
	if err := fileperm.Restrict(path); err != nil {
		return nil, fmt.Errorf("narrow session secret to 0600 (chmod 600 it, or set SESSION_SECRET): %w", err)
	}
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
