package web

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func TestServiceWorker(t *testing.T) {
	ts := newTestServer(t)
	anon := ts.browser(t)
	resp, body := anon.Do("GET", "/sw.js", "", "")

	t.Run("is served from the root as a script that no cache keeps", func(t *testing.T) {
		if resp.StatusCode != 200 {
			t.Fatalf("GET /sw.js: %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
			t.Errorf("Content-Type %q, want text/javascript", ct)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q, want no-store: a new release must be found at the next visit", cc)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("Content-Security-Policy %q", csp)
		}
	})

	t.Run("names the release and the assets it keeps", func(t *testing.T) {
		m := regexp.MustCompile(`^self\.RELEASE = "([0-9a-f]{16})";\nself\.ASSETS = (\[.*\]);\n`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("/sw.js begins %.200q", body)
		}
		if m[1] != Release() {
			t.Errorf("release %q, want %q", m[1], Release())
		}
		var assets []string
		if err := json.Unmarshal([]byte(m[2]), &assets); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"/static/app.js", "/static/queue.js", "/static/style.css", "/static/htmx.min.js"} {
			found := false
			for _, a := range assets {
				found = found || a == want
			}
			if !found {
				t.Errorf("the worker does not keep %s (it keeps %q)", want, assets)
			}
		}
	})
}

func TestNotesPageNamesItsUser(t *testing.T) {
	ts := newTestServer(t)
	user := ts.browser(t)
	user.signup("alice")
	_, body := user.Do("GET", "/", "", "")
	if !regexp.MustCompile(`<body [^>]*data-user="[1-9][0-9]*"`).MatchString(body) {
		t.Errorf("the notes page does not name its user (data-user): %.300q", body)
	}
}
