// Package web is the notes HTTP server: pages and templates, the JSON
// API, the real-time endpoints, cookie sessions, rate limits and the
// middleware around them (client address, body deadline, security
// headers), the Assistant's routes, and the node's Prometheus metrics.
//
// The metrics live here because the HTTP middleware is the only code that
// records into them directly; the store and the feed report through hooks
// (Store.ObserveBatch, Feed.ObserveRead, …) that the node connects to
// Metrics, so neither imports this package.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"notesync/app"
	"notesync/app/feed"
	"notesync/app/sqlite"
	"notesync/realtime"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what a Server is built from; main.go fills it in.
type Config struct {
	Store    *sqlite.Store
	Sessions *SessionStore
	Feed     *feed.Feed
	Hub      *realtime.Hub
	Metrics  *Metrics // optional
	Logger   *slog.Logger

	// Node and Region name this node in hello and in the page.
	Node, Region string

	// Ready, if set, reports why this node cannot serve yet (nil: ready).
	// The database is always checked as well.
	Ready func(ctx context.Context) error

	// Cluster, if set, answers GET /api/cluster and adds the node's
	// replication to /readyz; without it the node describes itself as a
	// cluster of one.
	Cluster ClusterInfo
	// Fly tells that the node runs on Fly.io, where the cluster view links
	// a member by pinning a tab to its machine.
	Fly bool

	// EndSession, if set, is called after a log-out, to close the session's
	// open connections on every node. By default only this node's are
	// closed.
	EndSession func(sessionID string)

	// MinVersionWait bounds how long a read with min_version waits for this
	// node's database to catch up before answering 503.
	MinVersionWait time.Duration
	// ResumeWait bounds how long a connection that resumes from a version
	// this node has not reached waits for it in its handshake, on a
	// replica that may be catching up, before it is told that its history
	// is not this node's (docs/PROTOCOL.md §11). A replica is that far
	// behind for milliseconds, not seconds. Default 2 s.
	ResumeWait time.Duration
	// MaxParkedReads bounds the reads with min_version one user may have
	// waiting at a time over all their sessions (default 32, one per tab
	// at the per-user connection cap); the next one is answered 429.
	MaxParkedReads int

	// WriteBudget, if set, bounds how fast one user writes notes; the
	// store's Quota bounds how much they keep.
	WriteBudget *WriteBudget

	// SignupLimit is how many sign-ups one client address may make per
	// hour (0: no limit).
	SignupLimit int

	// HSTS makes every answer tell browsers to use https only: set it
	// when the node is reached through a TLS proxy that redirects http to
	// https (Fly.io).
	HSTS bool

	// Assistant (POST /api/assistant). With AssistantBaseURL empty the
	// built-in planner answers; otherwise the OpenAI-compatible
	// chat-completions server at that URL, with AssistantModel and
	// AssistantAPIKey (never logged, never sent to the browser). Zero
	// limits take defaults: 60 s per upstream call, 6 rounds, 20 tool calls.
	AssistantBaseURL      string
	AssistantModel        string
	AssistantAPIKey       string
	AssistantTimeout      time.Duration
	AssistantMaxRounds    int
	AssistantMaxToolCalls int
	AssistantHTTPClient   *http.Client // optional
}

// Server is the notes HTTP service: pages, JSON API, real-time endpoints and
// operations routes.
type Server struct {
	Config
	endpoint *realtime.Endpoint
	tmpl     *template.Template
	logins   *Limiter // failed log-ins
	signups  *Limiter // sign-ups per client address
	handler  http.Handler

	assistantRuns sync.Map // user id → struct{}: the user's running agent

	parkedMu sync.Mutex
	parked   map[int64]int // user id → reads waiting for min_version
}

// NewServer builds the server; templates are parsed once here.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinVersionWait == 0 {
		cfg.MinVersionWait = 3 * time.Second
	}
	if cfg.ResumeWait == 0 {
		cfg.ResumeWait = 2 * time.Second
	}
	if cfg.MaxParkedReads == 0 {
		cfg.MaxParkedReads = 32
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"human":   func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") },
		"snippet": app.Snippet,
		"release": Release,
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Config:  cfg,
		tmpl:    tmpl,
		logins:  NewLimiter(loginWindow),
		signups: NewLimiter(signupWindow),
		parked:  map[int64]int{},
	}
	if s.EndSession == nil {
		s.EndSession = func(id string) {
			s.Sessions.EndHere(id, s.Hub)
		}
	}
	version := cfg.Store.Version
	if cfg.Feed != nil {
		version = cfg.Feed.Version
	}
	s.endpoint = &realtime.Endpoint{
		Hub: cfg.Hub,
		Authenticate: func(r *http.Request) (realtime.Identity, error) {
			u, err := s.identify(r)
			if err != nil {
				return realtime.Identity{}, err
			}
			return realtime.Identity{UserID: u.ID, SessionID: u.SessionID}, nil
		},
		Version: version,
		CatchUp: func(v int64) realtime.Message {
			return feed.NoteChangedMessage(app.Change{Op: app.OpSync, Version: v, Node: cfg.Node})
		},
		History:   history{s},
		OnMessage: onClientMessage,
		Node:      cfg.Node,
		Region:    cfg.Region,
	}
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// staticFiles returns the embedded static assets.
func staticFiles() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	return sub
}

// User is the signed-in user of a request: the account (ID, Username, as
// app.User) and the cookie session it signed in with (SessionID).
type User struct {
	ID        int64
	Username  string
	SessionID string
}

// identify returns the request's signed-in user, or
// realtime.ErrUnauthenticated.
func (s *Server) identify(r *http.Request) (*User, error) {
	sess, err := s.Sessions.Get(r, SessionCookie)
	if err != nil {
		return nil, err
	}
	if sess.IsNew {
		return nil, realtime.ErrUnauthenticated
	}
	id, _ := sess.Values["user_id"].(int64)
	name, _ := sess.Values["username"].(string)
	if id == 0 {
		return nil, realtime.ErrUnauthenticated
	}
	return &User{ID: id, Username: name, SessionID: sess.ID}, nil
}

// clientGone reports whether err is only the client having gone away (its
// request's context canceled): not a failure of the server, and nobody is
// left to answer. It is noted at debug level.
func (s *Server) clientGone(r *http.Request, err error) bool {
	if !errors.Is(err, context.Canceled) || r.Context().Err() == nil {
		return false
	}
	s.Logger.Debug("client went away", "method", r.Method, "path", r.URL.Path, "err", err)
	return true
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err as {"error": "..."} with its status; internal
// errors are logged in full and shown as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if s.clientGone(r, err) {
		return
	}
	status := ErrorStatus(err)
	if status >= 500 && app.ErrorCode(err) == app.EINTERNAL {
		s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	setErrorHeaders(w, err)
	body := map[string]any{"error": app.ErrorMessage(err)}
	var e *app.Error
	if errors.As(err, &e) && e.Code == app.ESTALE && e.Note != nil {
		body["note"] = e.Note
		w.Header().Set("ETag", etag(e.Note.Rev))
	}
	writeJSON(w, status, body)
}
