package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/feed"
	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
	"notesync/internal/apitest"
	"notesync/realtime"
)

// testServer is a Server over a real SQLite database, with its change feed
// running.
type testServer struct {
	*httptest.Server
	store *sqlite.Store
	srv   *Server
}

// newTestServer starts a test server. Requests may pose as coming from
// another client address with X-Forwarded-For. tweak changes the Config.
func newTestServer(t testing.TB, tweak ...func(*Config)) *testServer {
	t.Helper()
	store := sqlitetest.Unopened(t)
	hub := realtime.NewHub()
	hub.Node = "node1"
	hub.PresenceMessage = PresenceMessage
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	feed, err := feed.NewFeed(context.Background(), store, hub, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	store.Open(feed)
	ctx, cancel := context.WithCancel(context.Background())
	go feed.Run(ctx)
	cfg := Config{
		Store: store, Sessions: NewSessionStore(store, []byte("test secret of enough length")),
		Feed: feed, Hub: hub, Metrics: NewMetrics(hub), Logger: logger,
		Node: "node1", Region: "local", MinVersionWait: 300 * time.Millisecond,
	}
	for _, fn := range tweak {
		fn(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(TrustClientHeader("X-Forwarded-For", srv))
	t.Cleanup(func() {
		hub.Close(time.Second)
		ts.Close()
		cancel()
	})
	return &testServer{Server: ts, store: store, srv: srv}
}

// browser is one person's session against the test server; its helpers
// are the app tests' own.
type browser struct{ *apitest.Client }

func (ts *testServer) browser(t *testing.T) *browser {
	return &browser{apitest.New(t, ts.URL)}
}

// signup creates an account with the tests' password.
func (b *browser) signup(name string) { b.T.Helper(); b.SignUp(name, "password1") }

// createNote posts a note and returns its id.
func (b *browser) createNote(body string) int64 {
	b.T.Helper()
	id, _ := b.CreateNote(body)
	return id
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonError asserts a JSON error answer with the status.
func jsonError(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	var e struct {
		Error string `json:"error"`
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		t.Fatalf("not a JSON error: %q (%s)", body, resp.Header.Get("Content-Type"))
	}
}

func TestAccounts(t *testing.T) {
	ts := newTestServer(t)

	t.Run("an anonymous visitor is sent to /login", func(t *testing.T) {
		resp, _ := ts.browser(t).Do("GET", "/", "", "")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("sign-up sets an HttpOnly SameSite=Lax cookie holding only a signed id", func(t *testing.T) {
		b := ts.browser(t)
		resp, _ := b.Form("/signup", url.Values{"username": {"carol"}, "password": {"password1"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d", resp.StatusCode)
		}
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == SessionCookie {
				ck = c
			}
		}
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure {
			t.Fatalf("cookie %+v", ck)
		}
		if strings.Contains(ck.Value, "carol") {
			t.Fatal("cookie carries the username")
		}
		if resp, _ := b.Do("GET", "/api/notes", "", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("session does not authenticate: %d", resp.StatusCode)
		}
	})

	t.Run("form failures re-render with the reason and status", func(t *testing.T) {
		b := ts.browser(t)
		b.signup("dave")
		cases := []struct {
			path, user, pass string
			status           int
			text             string
		}{
			{"/signup", "dave", "password1", http.StatusConflict, "taken"},
			{"/signup", "x", "password1", http.StatusBadRequest, "username"},
			{"/signup", "erin", "short", http.StatusBadRequest, "password"},
			{"/login", "dave", "wrong-pass", http.StatusUnauthorized, "Wrong username or password"},
		}
		for _, c := range cases {
			resp, body := ts.browser(t).Form(c.path, url.Values{"username": {c.user}, "password": {c.pass}})
			if resp.StatusCode != c.status || !strings.Contains(body, c.text) || !strings.Contains(body, "<form") {
				t.Errorf("%s %s: %d, want %d with %q", c.path, c.user, resp.StatusCode, c.status, c.text)
			}
		}
	})

	t.Run("failed log-ins are limited per username and address with Retry-After, successes are not", func(t *testing.T) {
		b := ts.browser(t)
		b.signup("frank")
		for i := 0; i < 3; i++ {
			if resp, _ := ts.browser(t).Form("/login", url.Values{"username": {"frank"}, "password": {"password1"}}); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("good log-in %d: %d", i, resp.StatusCode)
			}
		}
		var last *http.Response
		for i := 0; i < 6; i++ {
			last, _ = ts.browser(t).Form("/login", url.Values{"username": {"frank"}, "password": {"bad-password"}})
		}
		if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
			t.Fatalf("after 6 failures: %d Retry-After=%q", last.StatusCode, last.Header.Get("Retry-After"))
		}
		if resp, _ := ts.browser(t).Form("/login", url.Values{"username": {"frank"}, "password": {"password1"}}); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("the right password from the guessing address: %d, want 429", resp.StatusCode)
		}
	})

	t.Run("log-out ends the session on the server", func(t *testing.T) {
		b := ts.browser(t)
		b.signup("gina")
		u, _ := url.Parse(ts.URL)
		saved := b.HTTP.Jar.Cookies(u)
		resp, _ := b.Form("/logout", nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %d", resp.StatusCode)
		}
		// Replaying the old cookie no longer authenticates.
		replay := ts.browser(t)
		replay.HTTP.Jar.SetCookies(u, saved)
		resp, body := replay.Do("GET", "/api/notes", "", "")
		jsonError(t, resp, body, http.StatusUnauthorized)
	})
}

func TestAPIBadInput(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.browser(t)
	alice.signup("alice")
	id := alice.createNote("keep me")
	bob := ts.browser(t)
	bob.signup("bob")
	bobNote := bob.createNote("bob's")

	unchanged := func(t *testing.T) {
		t.Helper()
		resp, body := alice.Do("GET", "/api/notes", "", "")
		var out struct {
			Version int64      `json:"version"`
			Notes   []app.Note `json:"notes"`
		}
		json.Unmarshal([]byte(body), &out)
		if resp.StatusCode != 200 || out.Version != 1 || len(out.Notes) != 1 || out.Notes[0].ID != id {
			t.Fatalf("alice's notes changed: %s", body)
		}
	}

	cases := []struct {
		name, method, path, ct, body string
		hdr                          []string
		status                       int
	}{
		{"malformed JSON", "POST", "/api/notes", "application/json", `{"body":`, nil, 400},
		{"trailing JSON", "POST", "/api/notes", "application/json", `{"body":"a"} {}`, nil, 400},
		{"missing body field", "POST", "/api/notes", "application/json", `{"text":"a"}`, nil, 400},
		{"wrong content type", "POST", "/api/notes", "text/plain", `hello`, nil, 415},
		{"invalid UTF-8 in JSON", "POST", "/api/notes", "application/json", "{\"body\":\"a\xff\"}", nil, 400},
		{"invalid UTF-8 in a form", "POST", "/api/notes", "application/x-www-form-urlencoded", "body=a%FF", nil, 400},
		{"10,001 characters", "POST", "/api/notes", "application/json", mustJSON(map[string]string{"body": strings.Repeat("a", 10001)}), nil, 400},
		{"empty body", "POST", "/api/notes", "application/json", `{"body":""}`, nil, 400},
		{"only spaces and line breaks", "POST", "/api/notes", "application/json", `{"body":" \n\t\u00a0 "}`, nil, 400},
		{"only blanks in a form", "POST", "/api/notes", "application/x-www-form-urlencoded", "body=+%0D%0A+", nil, 400},
		{"an edit to only blanks", "PATCH", "/api/notes/" + itoa(int(id)), "application/json", `{"body":"   "}`, nil, 400},
		{"a huge request", "POST", "/api/notes", "application/json", `{"body":"` + strings.Repeat("a", 200<<10) + `"}`, nil, 413},
		{"a huge form", "POST", "/api/notes", "application/x-www-form-urlencoded", "body=" + strings.Repeat("a", 200<<10), nil, 413},
		{"unknown note id", "DELETE", "/api/notes/9999", "", "", nil, 404},
		{"another user's note (delete)", "DELETE", "/api/notes/" + itoa(int(bobNote)), "", "", nil, 404},
		{"another user's note (update)", "PATCH", "/api/notes/" + itoa(int(bobNote)), "application/json", `{"body":"mine now"}`, nil, 404},
		{"non-numeric id", "DELETE", "/api/notes/abc", "", "", nil, 400},
		{"bad idempotency key", "POST", "/api/notes", "application/json", `{"body":"a"}`, []string{"Idempotency-Key", "has space"}, 400},
		{"bad min_version", "GET", "/api/notes?min_version=-1", "", "", nil, 400},
		{"unknown API route", "GET", "/api/nope", "", "", nil, 404},
		{"cross-site POST", "POST", "/api/notes", "application/json", `{"body":"csrf"}`, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 403},
		{"cross-origin DELETE by Origin alone", "DELETE", "/api/notes/" + itoa(int(id)), "", "", []string{"Origin", "https://evil.example"}, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := alice.Do(c.method, c.path, c.ct, c.body, c.hdr...)
			jsonError(t, resp, body, c.status)
			unchanged(t)
		})
	}

	t.Run("bob's note is untouched", func(t *testing.T) {
		_, body := bob.Do("GET", "/api/notes", "", "")
		if !strings.Contains(body, "bob's") {
			t.Fatalf("bob's notes: %s", body)
		}
	})

	cookieCases := []struct {
		name   string
		cookie string
	}{
		{"missing cookie", ""},
		{"forged cookie", SessionCookie + "=forged-value"},
	}
	for _, c := range cookieCases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.URL+"/api/notes", strings.NewReader(`{"body":"x"}`))
			req.Header.Set("Content-Type", "application/json")
			if c.cookie != "" {
				req.Header.Set("Cookie", c.cookie)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			jsonError(t, resp, string(body), http.StatusUnauthorized)
			unchanged(t)
		})
	}

	t.Run("expired session", func(t *testing.T) {
		b := ts.browser(t)
		b.signup("henry")
		ts.store.DB().WritePool().Exec(`UPDATE sessions SET expires_at = 0`)
		resp, body := b.Do("GET", "/api/notes", "", "")
		jsonError(t, resp, body, http.StatusUnauthorized)
	})
}

func TestAPINotes(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("alice")

	t.Run("create, update, list, delete", func(t *testing.T) {
		resp, body := b.Do("POST", "/api/notes", "application/x-www-form-urlencoded", "body=from+a+form")
		if resp.StatusCode != 201 || !strings.Contains(body, `"version":1`) {
			t.Fatalf("create: %d %s", resp.StatusCode, body)
		}
		var created struct{ Note app.Note }
		if err := json.Unmarshal([]byte(body), &created); err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprint("/api/notes/", created.Note.ID)
		resp, body = b.Do("PATCH", path, "application/json", `{"body":"edited"}`)
		if resp.StatusCode != 200 || !strings.Contains(body, `"edited"`) || !strings.Contains(body, `"version":2`) {
			t.Fatalf("update: %d %s", resp.StatusCode, body)
		}
		_, body = b.Do("GET", "/api/notes?min_version=2", "", "")
		if !strings.Contains(body, `"edited"`) {
			t.Fatalf("list: %s", body)
		}
		if resp, _ := b.Do("DELETE", path, "", ""); resp.StatusCode != 204 {
			t.Fatalf("delete: %d", resp.StatusCode)
		}
	})

	t.Run("the same write sent twice with one key makes one change", func(t *testing.T) {
		r1, b1 := b.Do("POST", "/api/notes", "application/json", `{"body":"once"}`, "Idempotency-Key", "abc-123")
		r2, b2 := b.Do("POST", "/api/notes", "application/json", `{"body":"once"}`, "Idempotency-Key", "abc-123")
		if r1.StatusCode != 201 || r2.StatusCode != 201 || b1 != b2 || r2.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%d %s / %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
		}
		_, list := b.Do("GET", "/api/notes", "", "")
		if strings.Count(list, `"once"`) != 1 {
			t.Fatalf("list: %s", list)
		}
	})

	t.Run("min_version ahead of the database answers 503 with Retry-After", func(t *testing.T) {
		resp, body := b.Do("GET", "/api/notes?min_version=999", "", "")
		jsonError(t, resp, body, http.StatusServiceUnavailable)
		if resp.Header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
		resp, _ = b.Do("GET", "/notes?min_version=999", "", "")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("fragment: %d", resp.StatusCode)
		}
	})

	t.Run("min_version waits for a change that lands meanwhile", func(t *testing.T) {
		_, body := b.Do("GET", "/api/notes", "", "")
		var cur struct{ Version int64 }
		json.Unmarshal([]byte(body), &cur)
		done := make(chan string, 1)
		go func() {
			_, body := b.Do("GET", "/api/notes?min_version="+itoa(int(cur.Version+1)), "", "")
			done <- body
		}()
		time.Sleep(50 * time.Millisecond)
		b.createNote("late")
		if got := <-done; !strings.Contains(got, `"late"`) {
			t.Fatalf("got %s", got)
		}
	})

	t.Run("the HTML fragment escapes bodies and carries the version", func(t *testing.T) {
		b.createNote(`<img src=x onerror=alert(1)>`)
		resp, body := b.Do("GET", "/notes", "", "")
		if resp.StatusCode != 200 || resp.Header.Get("X-Notes-Version") == "" {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		if strings.Contains(body, "<img") || !strings.Contains(body, "&lt;img") || !strings.Contains(body, "data-note-id") {
			t.Fatalf("fragment: %s", body)
		}
	})
}

func TestOperations(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, body := b.Do("GET", path, "", ""); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	b.signup("alice")
	b.createNote("x")
	// Metrics are not on the public port (docs/PROTOCOL.md §8); main.go
	// serves this handler on -metrics-addr.
	if resp, _ := b.Do("GET", "/metrics", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the public port: %d, want 404", resp.StatusCode)
	}
	rec := httptest.NewRecorder()
	ts.srv.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{"notesync_connections", "notesync_messages_sent_total", "notesync_push_latency_seconds", "notesync_push_wait_seconds",
		`notesync_http_requests_total{route="POST /api/notes",status="201"} 1`,
		`notesync_connections_refused_total{reason="user_limit"} 0`, `notesync_connections_refused_total{reason="node_limit"} 0`, "notesync_connections_max"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	resp, body := b.Do("GET", "/static/htmx.min.js", "", "")
	if resp.StatusCode != 200 || len(body) < 1000 {
		t.Fatalf("htmx not served: %d", resp.StatusCode)
	}
}

func TestReadyzSchema(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	get := func() (int, string) {
		resp, body := b.Do("GET", "/readyz", "", "")
		return resp.StatusCode, body
	}
	t.Run("a newer release's schema: still ready, and says so", func(t *testing.T) {
		ts.store.DB().WritePool().Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'next', 0)")
		defer ts.store.DB().WritePool().Exec("DELETE FROM schema_migrations WHERE version = 99")
		status, body := get()
		if status != 200 || !strings.Contains(body, `"have":99`) || !strings.Contains(body, "ahead") {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("a schema behind this build: not ready, and says why", func(t *testing.T) {
		ts.store.DB().WritePool().Exec("UPDATE schema_migrations SET version = -version")
		defer ts.store.DB().WritePool().Exec("UPDATE schema_migrations SET version = -version")
		status, body := get()
		if status != 503 || !strings.Contains(body, "behind") {
			t.Fatalf("%d %s", status, body)
		}
	})
}
