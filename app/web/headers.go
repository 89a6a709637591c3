package web

import (
	"net/http"
	"strings"
)

// contentSecurityPolicy allows the pages only what they are built from:
// scripts, styles and connections of their own origin, no inline script or
// style, no eval (htmx is configured without it), no plugins, and no
// framing by any site.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders sets the headers every answer carries
// (docs/PROTOCOL.md §8). Everything but the static assets is no-store, and
// so is everything for a browser that holds a session cookie: what a
// signed-in user sees stays out of every cache. With HSTS (the node is
// behind a TLS proxy that redirects http to https, as on Fly.io),
// browsers are told to use https only.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		if s.HSTS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if _, err := r.Cookie(SessionCookie); err == nil || !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}
