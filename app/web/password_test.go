package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestPasswordsOverTheWire: long passwords work, over 256 bytes is a 400
// that says so, and the forms say the rule.
func TestPasswordsOverTheWire(t *testing.T) {
	ts := newTestServer(t)
	long := strings.Repeat("long-pass-", 10) // 100 bytes: bcrypt alone refuses it
	b := ts.browser(t)
	if resp, body := b.Form("/signup", url.Values{"username": {"rosa"}, "password": {long}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-up with 100 bytes: %d %q", resp.StatusCode, formError(body))
	}
	if resp, _ := ts.browser(t).Form("/login", url.Values{"username": {"rosa"}, "password": {long[:72] + "different tail"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("log-in with the same first 72 bytes: %d, want 401", resp.StatusCode)
	}
	if resp, _ := ts.browser(t).Form("/login", url.Values{"username": {"rosa"}, "password": {long}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("log-in with 100 bytes: %d", resp.StatusCode)
	}
	tooLong := strings.Repeat("x", 300)
	for _, path := range []string{"/signup", "/login"} {
		resp, body := ts.browser(t).Form(path, url.Values{"username": {"sam"}, "password": {tooLong}})
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(formError(body), "300 bytes; the limit is 256 bytes") {
			t.Errorf("%s with 300 bytes: %d %q, want 400 saying the limit", path, resp.StatusCode, formError(body))
		}
	}
	for _, path := range []string{"/signup", "/login"} {
		_, page := ts.browser(t).Do("GET", path, "", "")
		if !strings.Contains(page, `id="password-rule"`) || !strings.Contains(page, "256 bytes") {
			t.Errorf("%s does not show the password rule", path)
		}
	}
}
