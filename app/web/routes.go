package web

import (
	"net/http"
)

// routes lists every route of the service in one place. On a replica,
// the writes among them are forwarded to the primary before they reach
// this table (cluster.Node.Forward, around the server in the root's
// publicHandler), all but the one marked node-local (NodeLocal).
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	// Pages.
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.HandleFunc("GET /login", s.handleAuthPage("login"))
	mux.HandleFunc("POST /login", s.handleLogin)
	mux.HandleFunc("GET /signup", s.handleAuthPage("signup"))
	mux.HandleFunc("POST /signup", s.handleSignup)
	mux.HandleFunc("POST /logout", s.handleLogout)
	mux.Handle("GET /notes", s.requireUser(s.handleNotesFragment))
	mux.HandleFunc("GET /assistant", s.handleAssistantPage)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler()))
	mux.HandleFunc("GET /sw.js", s.handleServiceWorker)

	// JSON API. The note writes spend the user's write budget.
	mux.Handle("GET /api/notes", s.requireUser(s.handleNotesList))
	mux.Handle("POST /api/notes", s.requireUser(s.budgeted(s.handleNoteCreate)))
	mux.Handle("GET /api/notes/{id}", s.requireUser(s.handleNoteGet))
	mux.Handle("PATCH /api/notes/{id}", s.requireUser(s.budgeted(s.handleNoteUpdate)))
	mux.Handle("DELETE /api/notes/{id}", s.requireUser(s.budgeted(s.handleNoteDelete)))
	mux.Handle("POST /api/notes/{id}/restore", s.requireUser(s.budgeted(s.handleNoteRestore)))
	// Node-local: served where it arrives, never forwarded (NodeLocal).
	mux.Handle("POST /api/editing", s.requireUser(s.handleEditing))
	mux.Handle("GET /api/cluster", s.requireUser(s.handleCluster))
	mux.Handle("POST /api/assistant", s.requireUser(s.handleAssistant))
	mux.HandleFunc("/api/", s.handleAPINotFound)

	// Real time.
	mux.HandleFunc("GET /ws", s.endpoint.ServeWS)
	mux.HandleFunc("GET /events", s.endpoint.ServeSSE)

	// Operations.
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	// GET /metrics is not here: it is served on an address of its own
	// (-metrics-addr), never on the public port (docs/PROTOCOL.md §8).

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused"})
	}))
	var h http.Handler = cop.Handler(mux)
	if s.Metrics != nil {
		h = s.Metrics.instrument(mux, h)
	}
	return s.securityHeaders(h)
}

// NodeLocal reports a write that a replica serves itself instead of
// forwarding it to the primary, because it changes only this node's own
// state, not the database: an editing report (POST /api/editing) is about
// a connection held here.
func NodeLocal(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/api/editing"
}
