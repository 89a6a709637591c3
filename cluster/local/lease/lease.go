// Package lease serves the part of Consul's HTTP API that LiteFS's Consul
// lease uses (github.com/superfly/litefs/consul, LiteFS v0.5.14), so that a
// local cluster's primary can move as it does on Fly.io: the lease is a key
// that a node's session holds, and a node that dies loses it when its
// session's TTL runs out. No node runs it; the local launcher does, on
// 127.0.0.1, for as long as the cluster runs (docs/PROTOCOL.md §11).
//
// # What it serves
//
//   - PUT /v1/session/create, /v1/session/renew/<id>, /v1/session/destroy/<id>:
//     sessions with a TTL, a lock delay and a behaviour ("release", the
//     default, or "delete", which LiteFS asks for).
//   - GET /v1/kv/<key>, with a blocking query (?index=N&wait=D) that
//     answers once the key changes, or after wait; 404 when it is missing.
//     Every answer carries X-Consul-Index, as Consul's does: the key's
//     ModifyIndex, or the index of the last change to any key when it is
//     missing.
//   - PUT /v1/kv/<key>, plain or with ?acquire=<session>, ?release=<session>
//     or ?cas=<index>: the value is the request body; the answer is "true"
//     or "false".
//   - PUT /v1/catalog/register: LiteFS registers a node when its Consul URL
//     has a path (the key prefix, as FLY_CONSUL_URL has on Fly); a session
//     may then name that node.
//
// Nothing else is served: other paths answer 404 and other methods 405
// (there is no DELETE). ACLs are one token that every request must carry
// (Token), or none; datacenters and consistency modes are ignored, health checks named by a session too; a read this server cannot
// answer the way Consul would (?recurse, ?keys, ?raw) is refused with 400.
//
// # Consul's semantics, and where this server differs
//
// A session ends when it is destroyed or when TTL passes without a renewal.
// Consul itself waits up to twice the TTL before it ends a session; this
// server ends it at the TTL exactly, so that a dead primary is replaced
// within the TTL plus 2 s (docs/PROTOCOL.md §11). LiteFS's primary steps
// down by itself when it has not renewed for about the TTL, so the doubling
// buys nothing on one machine whose processes share a clock.
//
// When a session ends while it holds keys, each key is released (or, with
// the "delete" behaviour, deleted) and none of them can be acquired again
// until the session's lock delay has passed: a holder that has not yet
// noticed its loss gets that long to stop. A key released on purpose (with
// ?release=, as LiteFS does when it shuts down cleanly) has no lock delay,
// so a stopped primary is replaced at once. A session that acquires a key it
// already holds keeps it and updates its value: that is how LiteFS hands the
// lease to another node (below). Consul's minimum TTL is 10 s; this server's
// is MinTTL, 1 s by default, so that a local cluster can ask for less.
//
// # The local cluster's lease
//
// The TTL and the lock delay are chosen by the client (litefs.yml's
// lease.consul.ttl and lock-delay), not by this server. The local cluster
// asks for DefaultTTL (5 s) and DefaultLockDelay (500 ms):
//
//   - A SIGKILLed primary's session ends at most TTL after the kill; a
//     candidate then takes the lease after the lock delay, at its next try.
//     LiteFS tries once a second (its reconnect delay), so the new primary
//     comes within TTL + lock delay + 1 s. The lock delay must stay well
//     under 1 s for that to fit within TTL + 2 s: LiteFS's default of 1 s
//     would sit right on the bound.
//   - 5 s rather than LiteFS's (and Fly's) 10 s halves the wait for writes
//     after a crash, which the local cluster's failover tests go through
//     again and again, while a renewal (every TTL/2 = 2.5 s, a request over
//     loopback) still has seconds to spare on a loaded machine.
//   - The lock delay covers a primary that is alive but cannot renew: LiteFS
//     steps down about TTL after its last renewal, up to a second later than
//     the session ends here. Half a second covers part of that; locally such
//     a primary is only one cut off from this server by a partition.
//
// # Moving the lease on purpose
//
// LiteFS v0.5.14 moves its lease itself, so this package offers no way to
// take a key from its holder. POST /promote to a candidate's LiteFS HTTP
// API (or `litefs run -promote -url <its API>`) makes that node ask the
// current primary for the lease (POST /handoff?nodeID=<id> on the
// primary's API); the primary, if the node is connected to it as a replica,
// renews its session one last time and sends the session id down the
// replication stream; the node renews that same session and acquires the
// key with it (consul.Leaser.AcquireExisting), and the old primary becomes
// a replica without destroying the session: about a second in all, and no
// lock delay, since no session ends. /promote answers 409 on a node that is
// not a candidate, and 500 while the node is not connected to a primary
// (an election in progress): the caller tries again. A static lease cannot
// be handed off. A primary told to stop (SIGTERM) does not hand off in
// v0.5.14: it releases the key and destroys its session, and a candidate
// acquires the key at its next try, within about a second. A node started
// with lease.promote true asks for the lease as soon as it has caught up,
// so a restarted node takes the primary back.
package lease

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of Server and of the local cluster's lease.
const (
	// DefaultAddr is where Open listens: a free port on 127.0.0.1.
	DefaultAddr = "127.0.0.1:0"
	// DefaultMinTTL is the shortest session TTL a client may ask for.
	DefaultMinTTL = 1 * time.Second

	// DefaultTTL and DefaultLockDelay are what the local cluster's LiteFS
	// asks for (lease.consul.ttl and lock-delay); see the package doc.
	DefaultTTL       = 5 * time.Second
	DefaultLockDelay = 500 * time.Millisecond
)

// Consul's own limits and defaults, which this server keeps.
const (
	maxTTL           = 24 * time.Hour         // structs.SessionTTLMax
	defaultLockDelay = 15 * time.Second       // a session that names none
	maxLockDelay     = 60 * time.Second       // structs.MaxLockDelay
	defaultWait      = 5 * time.Minute        // a blocking query without wait
	maxWait          = 10 * time.Minute       // the longest blocking query
	maxValueSize     = 512 * 1024             // kv_max_value_size
	agentNode        = "notesync-lease"       // the node a session gets by default
	shutdownTimeout  = 500 * time.Millisecond // Close's wait for requests to end
)

// Server is a Consul HTTP API for LiteFS's lease, held in memory: nothing
// survives Close. Set the exported fields before Open; they must not change
// afterwards. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the loopback address to listen on (DefaultAddr if empty).
	// Open refuses any other: the lease is for one machine.
	Addr string
	// MinTTL is the shortest session TTL accepted (DefaultMinTTL if zero);
	// a session create asking for less is refused with 400, as Consul's
	// session_ttl_min does.
	MinTTL time.Duration
	// Token, if set, is the one ACL token accepted: a request that does
	// not carry it (X-Consul-Token, as LiteFS sends the password of its
	// Consul URL, http://:TOKEN@host/) is refused with 403, as Consul
	// refuses an unknown token. Empty, any request is served.
	Token string
	// Logger receives sessions that end and keys that move (slog.Default
	// if nil).
	Logger *slog.Logger

	ln   net.Listener
	http *http.Server
	done chan struct{} // closed by Close: ends blocking queries
	wg   sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	index      uint64               // the last write's index, as Raft's
	kvIndex    uint64               // the last index that changed a key
	sessions   map[string]*session  // live sessions by ID
	kvs        map[string]*kvEntry  // keys by name
	lockDelays map[string]time.Time // key → until when it cannot be acquired
	nodes      map[string]bool      // registered node names
	changed    chan struct{}        // closed and replaced when a key changes
}

// ErrNotLoopback means Addr is not a loopback address.
var ErrNotLoopback = errors.New("lease server listens on loopback only")

// Open listens on Addr and serves until Close.
func (s *Server) Open() error {
	if s.Addr == "" {
		s.Addr = DefaultAddr
	}
	if s.MinTTL <= 0 {
		s.MinTTL = DefaultMinTTL
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("lease server address %q: %w", s.Addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, s.Addr)
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("lease server: %w", err)
	}
	s.ln = ln
	s.done = make(chan struct{})
	s.sessions = make(map[string]*session)
	s.kvs = make(map[string]*kvEntry)
	s.lockDelays = make(map[string]time.Time)
	s.nodes = map[string]bool{agentNode: true}
	s.changed = make(chan struct{})
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("lease server stopped", "err", err)
		}
	}()
	return nil
}

// Close stops serving, ends every blocking query and forgets every session
// and key. It is safe to call more than once, and on a Server never opened.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed || s.http == nil {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for _, sess := range s.sessions {
		sess.timer.Stop()
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.http.Close()
	}
	s.wg.Wait()
	return err
}

// URL is the base URL to give LiteFS as lease.consul.url
// ("http://127.0.0.1:PORT"). It is valid after Open.
func (s *Server) URL() string {
	return "http://" + s.ln.Addr().String()
}

// routes lists every endpoint the server answers.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/session/create", s.handleSessionCreate)
	mux.HandleFunc("PUT /v1/session/renew/{id}", s.handleSessionRenew)
	mux.HandleFunc("PUT /v1/session/destroy/{id}", s.handleSessionDestroy)
	mux.HandleFunc("GET /v1/kv/{key...}", s.handleKVGet)
	mux.HandleFunc("PUT /v1/kv/{key...}", s.handleKVPut)
	mux.HandleFunc("PUT /v1/catalog/register", s.handleCatalogRegister)
	if s.Token == "" {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Consul-Token")), []byte(s.Token)) != 1 {
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// nextIndex advances the write index. s.mu must be held.
func (s *Server) nextIndex() uint64 {
	s.index++
	return s.index
}

// notify wakes every blocking query: a key changed at index idx. s.mu
// must be held.
func (s *Server) notify(idx uint64) {
	s.kvIndex = idx
	close(s.changed)
	s.changed = make(chan struct{})
}
