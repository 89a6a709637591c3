package web

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"notesync/app/sqlite/sqlitetest"
)

// logIn posts the log-in form from the client address addr.
func (b *browser) logIn(addr, user, pass string) (*http.Response, string) {
	b.T.Helper()
	return b.Do("POST", "/login", "application/x-www-form-urlencoded",
		url.Values{"username": {user}, "password": {pass}}.Encode(), "X-Forwarded-For", addr)
}

// signupAs signs up with a real bcrypt cost, so that checking a password
// takes as long as it does in production.
func (ts *testServer) signupAs(t *testing.T, name, pass string) *browser {
	t.Helper()
	ts.store.BcryptCost = bcrypt.DefaultCost
	defer func() { ts.store.BcryptCost = bcrypt.MinCost }()
	b := ts.browser(t)
	resp, body := b.Do("POST", "/signup", "application/x-www-form-urlencoded",
		url.Values{"username": {name}, "password": {pass}}.Encode(), "X-Forwarded-For", "10.9.9.9")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("signup %s: %d %s", name, resp.StatusCode, body)
	}
	return b
}

func TestLoginLimits(t *testing.T) {
	t.Run("30 wrong passwords sent at once for one username from one address: at most 5 are checked", func(t *testing.T) {
		ts := newTestServer(t)
		ts.signupAs(t, "ivan", "password1")
		var wg sync.WaitGroup
		statuses := make(chan int, 30)
		for i := 0; i < 30; i++ {
			wg.Go(func() {
				resp, _ := ts.browser(t).logIn("10.0.0.1", "ivan", "wrong-guess-"+strconv.Itoa(i))
				if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
				statuses <- resp.StatusCode
			})
		}
		wg.Wait()
		close(statuses)
		count := map[int]int{}
		for s := range statuses {
			count[s]++
		}
		if count[http.StatusUnauthorized] > loginsPerPair || count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != 30 {
			t.Fatalf("statuses %v: want at most %d checked (401), the rest 429", count, loginsPerPair)
		}
	})

	t.Run("a successful log-in is refunded: it never counts against the next ones", func(t *testing.T) {
		ts := newTestServer(t)
		ts.browser(t).signup("judy")
		for i := 0; i < 3*loginsPerPair; i++ {
			if resp, body := ts.browser(t).logIn("10.0.0.2", "judy", "password1"); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("good log-in %d: %d %s", i, resp.StatusCode, body)
			}
		}
		for i := 0; i < loginsPerPair-1; i++ {
			if resp, _ := ts.browser(t).logIn("10.0.0.2", "judy", "wrong-pass"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("wrong password %d: %d, want 401", i, resp.StatusCode)
			}
		}
		if resp, _ := ts.browser(t).logIn("10.0.0.2", "judy", "password1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("right password after %d failures: %d, want 303", loginsPerPair-1, resp.StatusCode)
		}
	})

	t.Run("guesses from elsewhere slow a username down but never lock its owner out", func(t *testing.T) {
		ts := newTestServer(t)
		owner := ts.browser(t)
		owner.signup("kim") // this browser has logged in as kim: it is known
		for a := 1; a <= 5; a++ {
			for i := 0; i < 3; i++ {
				ts.browser(t).logIn("198.51.100."+strconv.Itoa(a), "kim", "guess-"+strconv.Itoa(i))
			}
		}
		// The owner's browser, from the owner's address, gets in at once.
		if resp, body := owner.logIn("203.0.113.7", "kim", "password1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("owner's browser: %d %s, want 303", resp.StatusCode, body)
		}
		// A new browser is slowed down, told for how long, and gets in
		// after that.
		fresh := ts.browser(t)
		resp, body := fresh.logIn("203.0.113.8", "kim", "password1")
		if resp.StatusCode == http.StatusTooManyRequests {
			wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || wait < 1 || wait > 60 || !strings.Contains(body, "Try again in "+inWords(wait)) {
				t.Fatalf("slowed down: Retry-After %q, page %q: want at most a minute, said in words", resp.Header.Get("Retry-After"), formError(body))
			}
			time.Sleep(time.Duration(wait) * time.Second)
			resp, body = fresh.logIn("203.0.113.8", "kim", "password1")
		}
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("new browser after waiting: %d %q, want 303", resp.StatusCode, formError(body))
		}
	})

	t.Run("one address: 5 failures per username, 20 in all, and the page says when to try again", func(t *testing.T) {
		ts := newTestServer(t)
		ts.browser(t).signup("liam")
		for i := 0; i < loginsPerPair; i++ {
			ts.browser(t).logIn("10.0.0.3", "liam", "wrong-pass")
		}
		resp, body := ts.browser(t).logIn("10.0.0.3", "liam", "password1")
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusTooManyRequests || wait < 9*60 || !strings.Contains(formError(body), "Try again in 10 minutes") {
			t.Fatalf("%d Retry-After=%q %q: want 429, about 10 minutes, said in words", resp.StatusCode, resp.Header.Get("Retry-After"), formError(body))
		}
		// Other usernames from that address: 20 failures in all, the
		// refused attempt above among them.
		n := loginsPerPair + 1
		for ; n < loginsPerAddr; n++ {
			if resp, _ := ts.browser(t).logIn("10.0.0.3", "user"+strconv.Itoa(n), "wrong-pass"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("failure %d from the address: %d, want 401", n+1, resp.StatusCode)
			}
		}
		if resp, _ := ts.browser(t).logIn("10.0.0.3", "someone-else", "wrong-pass"); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("after %d failures from one address: %d, want 429", n, resp.StatusCode)
		}
		if resp, _ := ts.browser(t).logIn("10.0.0.4", "liam", "password1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("from another address: %d, want 303", resp.StatusCode)
		}
	})

	t.Run("IPv6 addresses count by /64", func(t *testing.T) {
		ts := newTestServer(t)
		ts.browser(t).signup("mona")
		for i := 0; i < loginsPerPair; i++ {
			ts.browser(t).logIn("2001:db8:1:2::"+strconv.Itoa(i+1), "mona", "wrong-pass")
		}
		if resp, _ := ts.browser(t).logIn("2001:db8:1:2:ffff::9", "mona", "password1"); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("same /64: %d, want 429", resp.StatusCode)
		}
		if resp, _ := ts.browser(t).logIn("2001:db8:1:3::1", "mona", "password1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("another /64: %d, want 303", resp.StatusCode)
		}
	})
}

func TestSignupLimit(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.SignupLimit = 3 })
	signup := func(addr, name, pass string) (*http.Response, string) {
		return ts.browser(t).Do("POST", "/signup", "application/x-www-form-urlencoded",
			url.Values{"username": {name}, "password": {pass}}.Encode(), "X-Forwarded-For", addr)
	}
	// Refused input costs no hash and does not count.
	for i := 0; i < 5; i++ {
		if resp, _ := signup("10.1.0.1", "x", "password1"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("bad username: %d", resp.StatusCode)
		}
	}
	for i := 0; i < 3; i++ {
		if resp, body := signup("10.1.0.1", "nia"+strconv.Itoa(i), "password1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-up %d: %d %s", i, resp.StatusCode, formError(body))
		}
	}
	resp, body := signup("10.1.0.1", "nia9", "password1")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(formError(body), "Try again in") {
		t.Fatalf("4th sign-up: %d Retry-After=%q %q, want 429 saying when", resp.StatusCode, resp.Header.Get("Retry-After"), formError(body))
	}
	if resp, _ := signup("10.1.0.2", "nia9", "password1"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("from another address: %d, want 303", resp.StatusCode)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(10 * time.Minute)
	l.now = func() time.Time { return now }

	t.Run("a hard rule refuses until the oldest failure leaves the window", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			res, wait := l.Reserve(Rule{Key: "h", Max: 3})
			if wait != 0 {
				t.Fatalf("attempt %d refused", i)
			}
			res.Settle(true)
			now = now.Add(time.Minute)
		}
		if _, wait := l.Reserve(Rule{Key: "h", Max: 3}); wait != 7*time.Minute {
			t.Fatalf("wait %v, want 7m (the first failure leaves the window then)", wait)
		}
		now = now.Add(7 * time.Minute)
		if _, wait := l.Reserve(Rule{Key: "h", Max: 3}); wait != 0 {
			t.Fatalf("after the window: wait %v", wait)
		}
	})

	t.Run("a slow rule spaces attempts past Max, doubling, at most a minute apart", func(t *testing.T) {
		rule := Rule{Key: "s", Max: 2, Slow: time.Second}
		var waits []time.Duration
		for i := 0; i < 12; i++ {
			res, wait := l.Reserve(rule)
			if wait > 0 {
				waits = append(waits, wait)
				now = now.Add(wait)
				res, wait = l.Reserve(rule)
				if wait > 0 {
					t.Fatalf("refused again after waiting: %v", wait)
				}
			}
			res.Settle(true)
		}
		want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
		if len(waits) != len(want) {
			t.Fatalf("waits %v", waits)
		}
		for i := range want {
			if waits[i] != want[i]*time.Second {
				t.Fatalf("waits %v, want %v seconds", waits, want)
			}
		}
	})

	t.Run("a reservation under several rules is all or nothing", func(t *testing.T) {
		full := Rule{Key: "full", Max: 1}
		res, _ := l.Reserve(full)
		if _, wait := l.Reserve(Rule{Key: "free", Max: 1}, full); wait == 0 {
			t.Fatal("reserved with one rule full")
		}
		res.Settle(false)
		if _, wait := l.Reserve(Rule{Key: "free", Max: 1}); wait != 0 {
			t.Fatal("the refused reservation took a place")
		}
	})
}

func TestClientAddress(t *testing.T) {
	var got string
	h := TrustClientHeader("X-Forwarded-For", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = clientKey(r) }))
	for _, c := range []struct{ remote, xff, want string }{
		{"192.0.2.1:5000", "", "192.0.2.1"},
		{"192.0.2.1:5000", "203.0.113.5", "203.0.113.5"},
		{"192.0.2.1:5000", "6.6.6.6, 203.0.113.5", "203.0.113.5"},
		{"192.0.2.1:5000", "not an address", "192.0.2.1"},
		{"[2001:db8:aa:bb:1:2:3:4]:5000", "", "2001:db8:aa:bb::/64"},
		{"[::ffff:192.0.2.9]:5000", "", "192.0.2.9"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != c.want {
			t.Errorf("%s with X-Forwarded-For %q: %q, want %q", c.remote, c.xff, got, c.want)
		}
	}
}

// formError returns the error shown on an auth form page.
func formError(page string) string {
	_, rest, ok := strings.Cut(page, `id="form-error"`)
	if !ok {
		return ""
	}
	_, rest, _ = strings.Cut(rest, ">")
	msg, _, _ := strings.Cut(rest, "<")
	return msg
}

func TestClientGoingAwayIsNotAnError(t *testing.T) {
	// Only this goroutine logs: the requests below are served on it.
	var logs bytes.Buffer
	ts := newTestServer(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	sqlitetest.User(t, ts.store, "alice")
	for _, path := range []string{"/login", "/signup"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the client gave up before the answer
		req := httptest.NewRequestWithContext(ctx, "POST", path, strings.NewReader(url.Values{"username": {"alice"}, "password": {"password1"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		ts.srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	if out := logs.String(); strings.Contains(out, "level=ERROR") || !strings.Contains(out, "client went away") {
		t.Fatalf("logs:\n%s", out)
	}
}

// fakeClock is a limiter's clock that a test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestLoginUnderAttackFromFewAddresses(t *testing.T) {
	// Four addresses guess one username and poll for its next place twice
	// a second; the owner, in a browser without the device cookie, waits as
	// Retry-After says. The limiter's clock is the test's.
	const step = 500 * time.Millisecond
	attack := func(t *testing.T, ts *testServer, clock *fakeClock, d time.Duration) {
		t.Helper()
		for end := clock.Now().Add(d); clock.Now().Before(end); clock.Add(step) {
			for a := 1; a <= 4; a++ {
				ts.browser(t).logIn("198.51.100."+strconv.Itoa(a), "vic", "guess")
			}
		}
	}
	setup := func(t *testing.T) (*testServer, *fakeClock) {
		ts := newTestServer(t)
		clock := &fakeClock{now: time.Now()}
		ts.srv.logins.now = clock.Now
		ts.browser(t).signup("vic")
		attack(t, ts, clock, 10*time.Second)
		return ts, clock
	}

	t.Run("an address with no failures for the username gets in at once", func(t *testing.T) {
		ts, _ := setup(t)
		if resp, body := ts.browser(t).logIn("203.0.113.9", "vic", "password1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d %q, want 303", resp.StatusCode, formError(body))
		}
	})

	t.Run("after a typo, the owner gets in within a minute while the attack goes on", func(t *testing.T) {
		ts, clock := setup(t)
		owner := ts.browser(t)
		if resp, _ := owner.logIn("203.0.113.9", "vic", "passwort1"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("typo: %d, want 401", resp.StatusCode)
		}
		start, next := clock.Now(), clock.Now()
		for clock.Now().Sub(start) <= time.Minute {
			attack(t, ts, clock, step) // the attackers poll first, as they would
			if !clock.Now().Before(next) {
				resp, body := owner.logIn("203.0.113.9", "vic", "password1")
				if resp.StatusCode == http.StatusSeeOther {
					return
				}
				wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				if resp.StatusCode != http.StatusTooManyRequests || err != nil {
					t.Fatalf("%d %q, want 303 or 429 with Retry-After", resp.StatusCode, formError(body))
				}
				next = clock.Now().Add(time.Duration(wait) * time.Second)
			}
		}
		t.Fatal("the owner did not get in within a minute")
	})
}
