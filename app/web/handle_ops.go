package web

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"notesync/app/sqlite"
)

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": s.Node})
}

// handleReadyz answers 200 when this node can serve: its database answers
// with the schema it expects, and the extra Ready check (LiteFS mount,
// cluster membership) passes; 503 with the reason otherwise.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	want := sqlite.LatestSchemaVersion()
	have, err := s.Store.DB().SchemaVersion(ctx)
	schema := map[string]int{"want": want, "have": have}
	fail := func(reason string) {
		body := map[string]any{"status": "unavailable", "error": reason, "node": s.Node, "schema": schema}
		s.addReplication(body)
		writeJSON(w, http.StatusServiceUnavailable, body)
	}
	if err != nil {
		fail("database: " + err.Error())
		return
	}
	if have < want {
		fail(fmt.Sprintf("database schema is at version %d, behind the %d this build expects", have, want))
		return
	}
	note := ""
	if have > want {
		// Expand-then-contract: a newer release's schema still serves this
		// one, so the node stays ready and says why its numbers differ.
		note = fmt.Sprintf("database schema is at version %d, ahead of the %d this build knows: a newer release migrated it (expand-then-contract keeps this build working)", have, want)
	}
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			fail(err.Error())
			return
		}
	}
	body := map[string]any{"status": "ready", "node": s.Node, "schema": schema}
	if note != "" {
		body["note"] = note
	}
	s.addReplication(body)
	writeJSON(w, http.StatusOK, body)
}

// addReplication adds the node's replication report, when it has one, to
// a /readyz answer.
func (s *Server) addReplication(body map[string]any) {
	if s.Cluster == nil {
		return
	}
	if r := s.Cluster.Replication(); r != nil {
		body["replication"] = r
	}
}

// render executes a template into a buffer first, so a template error
// becomes a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		s.writeError(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// staticHandler serves the embedded assets with a short cache lifetime,
// unless the answer is no-store already (securityHeaders).
func staticHandler() http.Handler {
	fsys := staticFiles()
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := fs.Stat(fsys, r.URL.Path); err != nil {
			http.NotFound(w, r)
			return
		}
		if w.Header().Get("Cache-Control") == "" {
			w.Header().Set("Cache-Control", "public, max-age=300")
		}
		files.ServeHTTP(w, r)
	})
}
