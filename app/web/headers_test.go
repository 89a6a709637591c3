package web

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestSecurityHeaders(t *testing.T) {
	ts := newTestServer(t)
	user := ts.browser(t)
	user.signup("alice")
	id := user.createNote("hello")

	common := func(t *testing.T, what string, resp *http.Response) {
		t.Helper()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q", what, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: nosniff %q, Referrer-Policy %q, X-Frame-Options %q", what,
				h.Get("X-Content-Type-Options"), h.Get("Referrer-Policy"), h.Get("X-Frame-Options"))
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS off Fly", what)
		}
	}

	t.Run("every answer to a signed-in user: the headers, and no-store", func(t *testing.T) {
		for _, c := range []struct{ method, path, ct, body string }{
			{"GET", "/", "", ""},
			{"GET", "/notes", "", ""},
			{"GET", "/assistant", "", ""},
			{"GET", "/api/notes", "", ""},
			{"GET", "/api/cluster", "", ""},
			{"GET", "/static/app.js", "", ""},
			{"GET", "/static/style.css", "", ""},
			{"POST", "/api/notes", "application/json", `{"body":"x"}`},
			{"PATCH", "/api/notes/" + itoa(int(id)), "application/json", `{"body":"y"}`},
			{"POST", "/api/notes", "application/json", `{"body":`},
			{"GET", "/api/nope", "", ""},
			{"GET", "/healthz", "", ""},
		} {
			resp, _ := user.Do(c.method, c.path, c.ct, c.body)
			what := c.method + " " + c.path
			common(t, what, resp)
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("%s (%d): Cache-Control %q, want no-store", what, resp.StatusCode, cc)
			}
		}
	})

	t.Run("anonymous: pages are no-store, static assets may be cached", func(t *testing.T) {
		anon := ts.browser(t)
		resp, _ := anon.Do("GET", "/login", "", "")
		common(t, "GET /login", resp)
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("/login: Cache-Control %q", cc)
		}
		resp, _ = anon.Do("GET", "/static/htmx.min.js", "", "")
		common(t, "GET /static/htmx.min.js", resp)
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age") {
			t.Errorf("anonymous static asset: Cache-Control %q", cc)
		}
	})

	t.Run("HSTS when the node is behind Fly's TLS", func(t *testing.T) {
		fly := newTestServer(t, func(c *Config) { c.HSTS = true })
		resp, _ := fly.browser(t).Do("GET", "/login", "", "")
		if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
			t.Fatalf("Strict-Transport-Security %q", hsts)
		}
	})

	t.Run("no page needs inline script or style", func(t *testing.T) {
		scriptTag := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`)
		inlineAttr := regexp.MustCompile(`(?i)<[^>]*\s(on[a-z]+|style)\s*=`)
		for _, c := range []struct {
			b    *browser
			path string
		}{{ts.browser(t), "/login"}, {ts.browser(t), "/signup"}, {user, "/"}, {user, "/notes"}, {user, "/assistant"}} {
			_, page := c.b.Do("GET", c.path, "", "")
			for _, m := range scriptTag.FindAllStringSubmatch(page, -1) {
				if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
					t.Errorf("%s: inline script %q", c.path, m[0])
				}
			}
			if m := inlineAttr.FindString(page); m != "" {
				t.Errorf("%s: inline handler or style: %q", c.path, m)
			}
			if strings.Contains(page, "<style") {
				t.Errorf("%s: a <style> element", c.path)
			}
		}
	})
}
