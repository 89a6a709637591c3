// Package browsertest drives the notes page (docs/PROTOCOL.md §5) in a real Chromium
// over the DevTools protocol with chromedp, for the browser tests of e2e.
// Only test code imports it, so the notesync binary does not
// link chromedp.
//
// Tabs of one browser share one window, so only the one opened last is in
// front; the others are background tabs, with everything that comes with it:
// Chrome throttles their timers and pauses their animations. The helpers
// never bring a tab to the front.
//
// Timings are measured in the page (Date.now() in a MutationObserver), not by
// the Go side polling, so that the 1 s sync bound and the 1.5 s / 300 ms
// class lifetimes are checked exactly even on a slow machine, and a short
// transition cannot slip between two polls.
package browsertest

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"notesync/internal/testenv"
)

// Password is the password of every user that SignUp creates.
const Password = "correct horse battery staple"

// ---------------------------------------------------------------- browser

// Start starts a headless Chromium for the test, with a profile in a temp
// dir, and stops it when the test ends. It returns the browser's context, in
// which OpenTab opens tabs. It skips the test when no Chromium is installed,
// unless CI is set, where it fails. Call it first in a test, so that the
// test skips before starting anything else.
func Start(t testing.TB) context.Context {
	t.Helper()
	path := chromium(t)
	browser, _ := start(t, path, t.TempDir())
	return browser
}

// StartOn starts a headless Chromium as Start does, on the profile in dir
// (a temp dir of the test's), and returns with it stop, which closes the
// browser as a person quits it and waits for it to exit. A browser
// started on the same dir after stop is the same browser restarted: its
// cookies, IndexedDB, caches and service workers are kept.
func StartOn(t testing.TB, dir string) (browser context.Context, stop func()) {
	t.Helper()
	return start(t, chromium(t), dir)
}

// chromium finds the Chromium to run, or skips (fails on CI) the test.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Need(t, errors.New("no Chromium found for the browser tests"), "apt-get install chromium (or make test)")
	return ""
}

// start starts the Chromium at path on the profile in dir. It returns the
// browser's context and stop, which closes the browser gracefully (so
// that it reaps its own child processes and writes its profile out) and
// waits for it to exit; the test's end calls stop too.
func start(t testing.TB, path, dir string) (browser context.Context, stop func()) {
	t.Helper()
	// Not DefaultExecAllocatorOptions: it turns off background-tab timer
	// throttling and renderer backgrounding, which the tests must face.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
	)
	// Tabs share the browser's window: only the last one opened is in front.
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithNewWindow(false))
	stop = sync.OnceFunc(func() {
		// cancelAlloc kills whatever the graceful close left.
		defer cancelAlloc() // stops the browser process and waits for it
		ctx, cancel := context.WithTimeout(browserCtx, 10*time.Second)
		defer cancel()
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close the browser: %v", err)
		}
		cancelBrowser()
	})
	t.Cleanup(stop)
	watchdog := time.AfterFunc(60*time.Second, cancelAlloc)
	defer watchdog.Stop()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return browserCtx, stop
}

// TwoTabs signs a new user up in tab A on node baseA, then opens the notes
// page of node baseB in tab B. Tab B has tab A's session cookie: both tabs
// are of one browser, whose cookies are per host, not per port, and every
// node accepts a session made on any node (nodes of a local cluster differ
// by port only). Tab B is in front, tab A behind it. Both are connected and
// record their list's changes when it returns.
func TwoTabs(t testing.TB, browser context.Context, username, baseA, baseB string) (a, b *Tab) {
	t.Helper()
	a = OpenTab(t, browser, "tab A", "")
	SignUp(t, a, baseA, username)
	b = OpenTab(t, browser, "tab B", baseB+"/")
	b.WaitNotesPage(t)
	CheckBackground(t, a)
	if v := Eval[string](t, b, `document.visibilityState`); v != "visible" {
		t.Fatalf("tab B should be the foreground tab, but its visibilityState is %q", v)
	}
	for _, tab := range []*Tab{a, b} {
		tab.WaitConnected(t)
		tab.RecordList(t)
	}
	return a, b
}

// CheckBackground fails the test unless tb is a background tab.
func CheckBackground(t testing.TB, tb *Tab) {
	t.Helper()
	if v := Eval[string](t, tb, `document.visibilityState`); v != "hidden" {
		t.Fatalf("%s should be a background tab, but its visibilityState is %q", tb.Name, v)
	}
}

// Tab is one browser tab.
type Tab struct {
	Name  string
	Ctx   context.Context
	media map[string]string // emulated media features (EmulateMedia)
	close context.CancelFunc
}

// OpenTab opens a tab (in front of the others) in the browser, named name in
// failure messages, and navigates it to url unless url is empty. The tab is
// closed when the test ends.
func OpenTab(t testing.TB, browser context.Context, name, url string, opts ...chromedp.ContextOption) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, opts...)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // creates the tab
		t.Fatalf("open %s: %v", name, err)
	}
	tb := &Tab{Name: name, Ctx: ctx, close: cancel}
	if url != "" {
		tb.Navigate(t, url)
	}
	return tb
}

// Close closes the tab, as a person does.
func (tb *Tab) Close() { tb.close() }

// Navigate loads url in the tab.
func (tb *Tab) Navigate(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: open %s: %v", tb.Name, url, err)
	}
}

// Click clicks the element that the CSS selector sel finds (as a user does:
// mouse events at its centre).
func (tb *Tab) Click(t testing.TB, sel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("%s: click %s: %v", tb.Name, sel, err)
	}
}

// TryEval evaluates a JavaScript expression in the tab.
func TryEval[T any](tb *Tab, expr string, opts ...chromedp.EvaluateOption) (T, error) {
	ctx, cancel := context.WithTimeout(tb.Ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
}

// Eval evaluates a JavaScript expression in the tab and fails the test on
// an error.
func Eval[T any](t testing.TB, tb *Tab, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := TryEval[T](tb, expr, opts...)
	if err != nil {
		t.Fatalf("%s: evaluate %s: %v", tb.Name, expr, err)
	}
	return v
}

// Exec evaluates a JavaScript expression in the tab for its effect.
func (tb *Tab) Exec(t testing.TB, expr string) {
	t.Helper()
	Eval[chromedp.Void](t, tb, expr)
}

// WaitFor polls the JavaScript condition cond in the tab until it holds,
// and fails the test if it does not within the bound. Evaluation errors (a
// page in the middle of loading) count as "not yet".
func (tb *Tab) WaitFor(t testing.TB, within time.Duration, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := TryEval[bool](tb, "!!("+cond+")")
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s: not within %v (last error: %v)\npage: %s", tb.Name, what, within, err, tb.Describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Describe sums the page's state up for a failure message.
func (tb *Tab) Describe() string {
	s, err := TryEval[string](tb, `JSON.stringify({
		url: location.href,
		visibility: document.visibilityState,
		status: document.querySelector('#conn-status')?.dataset.state,
		statusText: document.querySelector('#conn-status')?.textContent,
		formError: document.querySelector('#form-error')?.textContent,
		notesync: window.notesync,
		notes: Array.from(document.querySelectorAll('#notes-list [data-note-id]'), (e) => e.dataset.noteId + ' ' + e.className),
		noteError: document.querySelector('#note-error')?.textContent,
		events: Array.from(document.querySelectorAll('#event-log li'), (e) => e.textContent).slice(0, 10),
	})`)
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return s
}

// SignUp creates an account with Password through the sign-up form of node
// base, typing as a user does, and waits for the notes page.
func SignUp(t testing.TB, tb *Tab, base, username string) {
	t.Helper()
	tb.account(t, base+"/signup", "#signup-form", "sign up", username)
}

// LogIn logs in as username (with Password) through the log-in form of
// node base, typing as a user does, and waits for the notes page.
func LogIn(t testing.TB, tb *Tab, base, username string) {
	t.Helper()
	tb.account(t, base+"/login", "#login-form", "log in", username)
}

// account fills the account form at url (form: its selector) and waits
// for the notes page; what names the step in failures.
func (tb *Tab) account(t testing.TB, url, form, what, username string) {
	t.Helper()
	tb.Navigate(t, url)
	ctx, cancel := context.WithTimeout(tb.Ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(form+` input[name=username]`), username),
		chromedp.SendKeys(chromedp.CSS(form+` input[name=password]`), Password),
		chromedp.Click(chromedp.CSS(form+` button[type=submit]`)),
	)
	if err != nil {
		t.Fatalf("%s: %s as %s: %v", tb.Name, what, username, err)
	}
	tb.WaitNotesPage(t)
}

// WaitNotesPage waits for the notes page to be loaded, with its script.
func (tb *Tab) WaitNotesPage(t testing.TB) {
	t.Helper()
	tb.WaitFor(t, 15*time.Second, "the notes page",
		`location.pathname === '/' && document.readyState === 'complete' && !!window.notesync && !!document.querySelector('#notes-list')`)
}

// WaitConnected waits for #conn-status to say that the tab is connected.
func (tb *Tab) WaitConnected(t testing.TB) {
	t.Helper()
	tb.WaitFor(t, 15*time.Second, "#conn-status data-state open", `document.querySelector('#conn-status').dataset.state === 'open'`)
}

// ConnStatus returns #conn-status's data-state and text.
func (tb *Tab) ConnStatus(t testing.TB) (state, text string) {
	t.Helper()
	st := Eval[struct{ State, Text string }](t, tb,
		`({state: document.querySelector('#conn-status').dataset.state, text: document.querySelector('#conn-status').textContent})`)
	return st.State, st.Text
}

// MarkDocument marks the current document, so that CheckDocumentKept can
// tell that it was not reloaded.
func (tb *Tab) MarkDocument(t testing.TB) {
	t.Helper()
	tb.Exec(t, `window.__notReloaded = window.__notReloaded || performance.timeOrigin`)
}

// CheckDocumentKept fails the test (not at once) if the document marked by
// MarkDocument was replaced.
func (tb *Tab) CheckDocumentKept(t testing.TB) {
	t.Helper()
	if !Eval[bool](t, tb, `window.__notReloaded === performance.timeOrigin`) {
		t.Errorf("%s: the page was reloaded", tb.Name)
	}
}

// CookieHeader returns the browser's cookies for base as a Cookie header.
func (tb *Tab) CookieHeader(t testing.TB, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatalf("%s: get cookies: %v", tb.Name, err)
	}
	var parts []string
	for _, c := range res.Cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) == 0 {
		t.Fatalf("%s: no cookies for %s", tb.Name, base)
	}
	return strings.Join(parts, "; ")
}
