package web

import (
	"regexp"
	"strings"
	"testing"
)

// TestReleaseOnThePage: the page's script names the release of the page's
// code (Release), which names the worker its tabs share (docs/PROTOCOL.md
// §13) as it names the service worker's cache (§12).
func TestReleaseOnThePage(t *testing.T) {
	if r := Release(); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(r) {
		t.Fatalf("release %q, want 16 hex digits", r)
	}
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("alice")
	for _, path := range []string{"/", "/assistant"} {
		resp, body := b.Do("GET", path, "", "")
		if want := `src="/static/app.js" data-release="` + Release() + `"`; resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, the page does not carry %s", path, resp.StatusCode, want)
		}
	}
}
