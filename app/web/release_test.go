package web

import (
	"regexp"
	"strings"
	"testing"
)

// TestReleaseOnThePage: the page's script names the release of the static
// files it is built from, which names the worker its tabs share
// (docs/PROTOCOL.md §13).
func TestReleaseOnThePage(t *testing.T) {
	if r := release(); !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(r) {
		t.Fatalf("release %q, want 12 hex digits", r)
	}
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("alice")
	for _, path := range []string{"/", "/assistant"} {
		resp, body := b.Do("GET", path, "", "")
		if want := `src="/static/app.js" data-release="` + release() + `"`; resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, the page does not carry %s", path, resp.StatusCode, want)
		}
	}
}
