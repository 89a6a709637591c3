package main

// Real-browser tests of the notes page (SPEC §5): two tabs of one Chromium,
// driven over the DevTools protocol with chromedp, against a node started
// in-process by startNode.
//
// The two tabs of a user share one window, so only the one opened last (tab
// B) is in front. Tab A is a background tab, with everything that comes with
// it: Chrome throttles its timers and pauses its animations. The tests check
// that the page works there too; they never bring tab A to the front.
//
// Timings are measured in the page (Date.now() in a MutationObserver), not by
// the Go side polling, so that the 1 s sync bound and the 1.5 s / 300 ms
// class lifetimes are checked exactly even on a slow machine, and a short
// transition cannot slip between two polls.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const testPassword = "correct horse battery staple"

func TestBrowserSync(t *testing.T) {
	browser := startBrowser(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := twoTabs(t, browser, node, "alice")

	t.Run("the status line says the tab is connected and names the node and region", func(t *testing.T) {
		for _, tab := range []*tab{a, b} {
			state, text := tab.connStatus(t)
			if state != "open" {
				t.Errorf("%s: #conn-status data-state = %q, want open", tab.name, state)
			}
			if !strings.Contains(text, "node1") || !strings.Contains(text, "local") {
				t.Errorf("%s: #conn-status text %q does not name node node1 and region local", tab.name, text)
			}
		}
	})

	var noteID int64
	t.Run("a note created in one tab appears in the other with a glow", func(t *testing.T) {
		noteID = expectNoteSynced(t, a, b, "Buy oat milk")
	})

	t.Run("a note that arrives in a background tab glows there too, and the glow ends", func(t *testing.T) {
		if v := evalJS[string](t, a, `document.visibilityState`); v != "hidden" {
			t.Fatalf("tab A is not a background tab: visibilityState %q", v)
		}
		w := createNote(t, b, "Call the plumber")
		id := w.ID
		sel := noteSelector(id)
		a.waitFor(t, 5*time.Second, "the note from tab B", `!!document.querySelector(`+jsString(sel)+`)`)
		a.waitFor(t, 10*time.Second, "the glow to end", `!document.querySelector(`+jsString(sel)+`).classList.contains('note-flash')`)
		evs := a.events(t, id)
		on, ok := glowStart(evs)
		if !ok {
			t.Fatalf("tab A: the note never had class note-flash (events %+v)", evs)
		}
		off, ok := find(evs, "note-flash off")
		if !ok {
			t.Fatalf("tab A: no record of note-flash being removed (events %+v)", evs)
		}
		if d := off.T - on.T; d < 1500 {
			t.Errorf("tab A: note-flash lasted %.0f ms, want at least 1.5 s", d)
		}
		t.Logf("tab A (background): the note arrived %.0f ms after the write returned and glowed for %.0f ms", on.T-w.T, off.T-on.T)
	})

	t.Run("a note deleted in one tab fades out in both tabs before it is removed", func(t *testing.T) {
		if noteID == 0 {
			t.Skip("needs the note of the earlier step")
		}
		sel := noteSelector(noteID)
		b.click(t, sel+` [data-action="delete"]`)
		for _, tab := range []*tab{b, a} {
			tab.waitFor(t, 10*time.Second, "the deleted note to be removed", `!document.querySelector(`+jsString(sel)+`)`)
		}
		for _, tab := range []*tab{b, a} {
			evs := tab.events(t, noteID)
			leaving, ok := find(evs, "note-leaving on")
			if !ok {
				t.Errorf("%s: the note never got class note-leaving (events %+v)", tab.name, evs)
				continue
			}
			removed, ok := find(evs, "removed")
			if !ok {
				t.Errorf("%s: no record of the note's removal (events %+v)", tab.name, evs)
				continue
			}
			if d := removed.T - leaving.T; d < 300 {
				t.Errorf("%s: the note was removed %.0f ms after it got note-leaving, want at least 300 ms", tab.name, d)
			}
			t.Logf("%s: note-leaving for %.0f ms, then removed", tab.name, removed.T-leaving.T)
		}
	})

	t.Run("another user sees none of these notes and none of their events", func(t *testing.T) {
		createNote(t, b, "Alice's first secret")
		// A browser context of its own: other cookies, so another session.
		other := openTab(t, browser, "bob's tab", "", chromedp.WithNewBrowserContext())
		signUp(t, other, node.URL, "bob")
		other.waitConnected(t)
		if n := evalJS[int](t, other, `document.querySelectorAll('#notes-list [data-note-id]').length`); n != 0 {
			t.Errorf("bob sees %d notes, want none", n)
		}
		if text := evalJS[string](t, other, `document.body.innerText`); strings.Contains(text, "Alice's first secret") {
			t.Errorf("bob's page shows alice's note:\n%s", text)
		}

		id := createNote(t, b, "Alice's second secret").ID
		for _, tab := range []*tab{a, b} {
			tab.waitFor(t, 5*time.Second, "alice's new note", `!!document.querySelector(`+jsString(noteSelector(id))+`)`)
		}
		// Alice's tabs have it; give a stray event to bob ample time to land.
		time.Sleep(time.Second)

		if n := evalJS[int](t, other, `document.querySelectorAll('#event-log [data-type="note_changed"]').length`); n != 0 {
			log := evalJS[string](t, other, `document.querySelector('#event-log').innerText`)
			t.Errorf("bob's #event-log has %d note_changed events, want none:\n%s", n, log)
		}
		if n := evalJS[int](t, other, `document.querySelectorAll('#event-log [data-type="hello"]').length`); n == 0 {
			t.Errorf("bob's #event-log has no hello: the check above proves nothing")
		}
		if n := evalJS[int](t, other, `document.querySelectorAll('#notes-list [data-note-id]').length`); n != 0 {
			t.Errorf("bob now sees %d notes, want none", n)
		}
		if v := evalJS[int](t, other, `window.notesync.version`); v != 0 {
			t.Errorf("bob's notes version is %d, want 0", v)
		}
	})
}

func TestBrowserReconnectsAfterRestart(t *testing.T) {
	browser := startBrowser(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := twoTabs(t, browser, node, "carol")
	tabs := []*tab{a, b}
	for _, tab := range tabs {
		tab.markDocument(t)
	}
	cookie := b.cookieHeader(t, node.URL)
	addr, dataDir := strings.TrimPrefix(node.URL, "http://"), node.DataDir

	downAt := time.Now()
	node.Stop(t)
	for _, tab := range tabs {
		tab.waitFor(t, 5*time.Second, "the tab to notice the server is gone",
			`document.querySelector('#conn-status').dataset.state !== 'open'`)
	}
	// Stay down at least 1.5 s, and until each tab has tried several times.
	time.Sleep(time.Until(downAt.Add(1500 * time.Millisecond)))
	for _, tab := range tabs {
		tab.waitFor(t, 20*time.Second, "three reconnection attempts while the server is down",
			fmt.Sprintf(`window.notesync.attempts.filter((a) => a.at >= %d && !a.probe).length >= 3`, downAt.UnixMilli()))
	}

	restartAt := time.Now()
	node = startNode(t, withAddr(addr), withDataDir(dataDir))
	resp, body := newClient(t, node.URL).do("POST", "/api/notes", "application/json", `{"body":"Written while the tabs were away"}`,
		"Cookie", cookie, "Idempotency-Key", fmt.Sprintf("restart-%d", time.Now().UnixNano()))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/notes with the browser's session after the restart: %d %s", resp.StatusCode, body)
	}
	var created struct{ Note struct{ ID int64 } }
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.Note.ID == 0 {
		t.Fatalf("POST /api/notes answered %s (%v)", body, err)
	}
	sel := noteSelector(created.Note.ID)

	t.Run("both tabs reconnect and show the note written meanwhile, without a reload", func(t *testing.T) {
		for _, tab := range tabs {
			tab.waitFor(t, 20*time.Second, "the tab to reconnect and show the new note",
				`document.querySelector('#conn-status').dataset.state === 'open' && !!document.querySelector(`+jsString(sel)+`)`)
			tab.checkDocumentKept(t)
		}
	})

	t.Run("reconnection backs off exponentially, with jitter, capped at 10 s", func(t *testing.T) {
		var first, later []float64 // delays of the first attempt, and of the third one on
		var all []float64
		for _, tab := range tabs {
			atts := evalJS[[]attempt](t, tab, fmt.Sprintf(`window.notesync.attempts.filter((a) => a.at >= %d && !a.probe)`, downAt.UnixMilli()))
			var whileDown int
			for _, at := range atts {
				if at.At < float64(restartAt.UnixMilli()) {
					whileDown++
				}
			}
			t.Logf("%s: %d attempts since the server stopped (%d while it was down): %s", tab.name, len(atts), whileDown, describeAttempts(atts, downAt))
			if whileDown < 3 {
				t.Errorf("%s: %d attempts while the server was down, want several", tab.name, whileDown)
			}
			for i, at := range atts {
				if at.Delay > 10000 {
					t.Errorf("%s: attempt %d waited %.0f ms, want at most 10 s", tab.name, i, at.Delay)
				}
				all = append(all, at.Delay)
				switch {
				case i == 0:
					first = append(first, at.Delay)
				case i >= 2:
					later = append(later, at.Delay)
				}
			}
		}
		// Full jitter makes a single delay anything from the floor to the
		// cap, so growth is judged across both tabs: some later delay must
		// beat every first one (fails by chance in well under 0.1% of runs).
		if len(first) > 0 && len(later) > 0 && slices.Max(later) <= slices.Max(first) {
			t.Errorf("delays do not grow: first attempts waited %v ms, later ones at most %v ms", first, slices.Max(later))
		}
		if len(slices.Compact(slices.Sorted(slices.Values(all)))) < 2 {
			t.Errorf("every delay is the same (%v): no jitter", all)
		}
		if !slices.ContainsFunc(all, func(d float64) bool { return !isPowerOfTwoMultiple(d, 250) }) {
			t.Errorf("every delay is an exact power of two times 250 ms (%v): no jitter", all)
		}
	})
}

func TestBrowserLogoutEndsTheSessionInEveryTab(t *testing.T) {
	browser := startBrowser(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := twoTabs(t, browser, node, "dave")

	a.eval(t, `document.querySelector('#logout-form').requestSubmit()`)
	a.waitFor(t, 10*time.Second, "the login page after logging out", `location.pathname === '/login'`)

	b.waitFor(t, 5*time.Second, "#conn-status to say the connection is closed",
		`document.querySelector('#conn-status').dataset.state === 'closed'`)
	if _, text := b.connStatus(t); !strings.Contains(strings.ToLower(text), "session ended") {
		t.Errorf("tab B: #conn-status text %q does not say that the session ended", text)
	}

	before := evalJS[int](t, b, `window.notesync.attempts.length`)
	time.Sleep(3 * time.Second)
	if after := evalJS[int](t, b, `window.notesync.attempts.length`); after != before {
		t.Errorf("tab B tried to reconnect after the session ended: %d attempts, then %d", before, after)
	}
	if state, _ := b.connStatus(t); state != "closed" {
		t.Errorf("tab B: #conn-status data-state went from closed to %q", state)
	}
	status := evalJS[int](t, b, `fetch('/api/notes').then((r) => r.status)`, chromedp.EvalAwaitPromise)
	if status != http.StatusUnauthorized {
		t.Errorf("tab B: GET /api/notes after the log-out answered %d, want 401", status)
	}
}

func TestBrowserFallsBackToSSE(t *testing.T) {
	browser := startBrowser(t) // first: skips at once without Chromium
	node := startNode(t, withRefuseWebSocket())
	a, b := twoTabs(t, browser, node, "erin")

	t.Run("a tab whose WebSocket cannot connect uses SSE", func(t *testing.T) {
		for _, tab := range []*tab{a, b} {
			tab.waitFor(t, 15*time.Second, "the SSE fallback",
				`window.notesync.transport === 'sse' && document.querySelector('#conn-status').dataset.state === 'open'`)
			if _, text := tab.connStatus(t); !strings.Contains(text, "node1") || !strings.Contains(text, "local") {
				t.Errorf("%s: #conn-status text %q does not name node node1 and region local", tab.name, text)
			}
		}
	})

	t.Run("over SSE, a note created in one tab appears in the other with a glow", func(t *testing.T) {
		expectNoteSynced(t, a, b, "Sent over server-sent events")
		if tr := evalJS[string](t, b, `window.notesync.transport`); tr != "sse" {
			t.Errorf("tab B: transport %q after the note, want sse", tr)
		}
	})
}

// expectNoteSynced creates a note through from's form and checks that it
// shows up in to within 1 s of the write returning, without a reload, with
// class note-flash for at least 1.5 s, and that from's own copy does not
// glow. It returns the note's id.
func expectNoteSynced(t *testing.T, from, to *tab, body string) int64 {
	t.Helper()
	to.markDocument(t)
	w := createNote(t, from, body)
	sel := noteSelector(w.ID)
	to.waitFor(t, 5*time.Second, "the note from "+from.name, `!!document.querySelector(`+jsString(sel)+`)`)

	// While the class is there, check that it stays 1.5 s from the arrival.
	added, ok := find(to.events(t, w.ID), "added")
	if !ok {
		t.Fatalf("%s: the note is in the list but its insertion was not recorded", to.name)
	}
	if lag := added.T - w.T; lag > 1000 {
		t.Errorf("%s: the note appeared %.0f ms after the write returned in %s, want within 1 s", to.name, lag, from.name)
	}
	for {
		now := evalJS[struct {
			Now   float64
			Flash bool
		}](t, to, `({now: Date.now(), flash: document.querySelector(`+jsString(sel)+`).classList.contains('note-flash')})`)
		if now.Now-added.T >= 1500 {
			break
		}
		if !now.Flash {
			t.Errorf("%s: note-flash gone %.0f ms after the note arrived, want at least 1.5 s", to.name, now.Now-added.T)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := evalJS[string](t, to, `document.querySelector(`+jsString(sel+" .note-body")+`).textContent`); got != body {
		t.Errorf("%s: note body %q, want %q", to.name, got, body)
	}
	to.checkDocumentKept(t)

	// The class was there at insertion and went away no sooner than 1.5 s
	// later, by the page's own clock (polling could miss a short blink).
	to.waitFor(t, 10*time.Second, "the glow to end", `!document.querySelector(`+jsString(sel)+`).classList.contains('note-flash')`)
	evs := to.events(t, w.ID)
	on, ok := glowStart(evs)
	if !ok || on.T > added.T {
		t.Errorf("%s: the note did not glow on arrival (events %+v)", to.name, evs)
	} else if off, ok := find(evs, "note-flash off"); !ok {
		t.Errorf("%s: no record of note-flash being removed (events %+v)", to.name, evs)
	} else if d := off.T - on.T; d < 1500 {
		t.Errorf("%s: note-flash lasted %.0f ms, want at least 1.5 s", to.name, d)
	} else {
		t.Logf("%s: the note arrived %.0f ms after the write returned in %s and glowed for %.0f ms", to.name, added.T-w.T, from.name, d)
	}

	// The writer's own copy is not "from elsewhere": no glow.
	from.waitFor(t, 5*time.Second, "its own new note", `!!document.querySelector(`+jsString(sel)+`)`)
	if _, glowed := glowStart(from.events(t, w.ID)); glowed {
		t.Errorf("%s: its own new note got class note-flash (events %+v)", from.name, from.events(t, w.ID))
	}
	return w.ID
}

// ---------------------------------------------------------------- browser

// startBrowser starts a headless Chromium for the test, with a profile in a
// temp dir, and stops it when the test ends. It skips the test when no
// Chromium is installed, unless CI is set.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		const msg = "no Chromium found for the browser tests: apt-get install chromium"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
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
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelAlloc) // stops the browser process and waits for it
	// Tabs share the browser's window: only the last one opened is in front.
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithNewWindow(false))
	t.Cleanup(func() {
		// Close it gracefully, so that it reaps its own child processes;
		// cancelAlloc kills whatever is left.
		ctx, cancel := context.WithTimeout(browserCtx, 10*time.Second)
		defer cancel()
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close the browser: %v", err)
		}
		cancelBrowser()
	})
	watchdog := time.AfterFunc(60*time.Second, cancelAlloc)
	defer watchdog.Stop()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return browserCtx
}

// twoTabs signs a new user up in tab A, then opens the notes page in tab B
// of the same browser (same cookies). Tab B is in front, tab A behind it.
// Both are connected and record their list's changes when it returns.
func twoTabs(t *testing.T, browser context.Context, node *testNode, username string) (a, b *tab) {
	t.Helper()
	a = openTab(t, browser, "tab A", "")
	signUp(t, a, node.URL, username)
	b = openTab(t, browser, "tab B", node.URL+"/")
	b.waitNotesPage(t)
	if v := evalJS[string](t, a, `document.visibilityState`); v != "hidden" {
		t.Fatalf("tab A should be a background tab once tab B is open, but its visibilityState is %q", v)
	}
	if v := evalJS[string](t, b, `document.visibilityState`); v != "visible" {
		t.Fatalf("tab B should be the foreground tab, but its visibilityState is %q", v)
	}
	for _, tab := range []*tab{a, b} {
		tab.waitConnected(t)
		tab.recordList(t)
	}
	return a, b
}

// tab is one browser tab.
type tab struct {
	name string
	ctx  context.Context
}

func openTab(t *testing.T, browser context.Context, name, url string, opts ...chromedp.ContextOption) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, opts...)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // creates the tab
		t.Fatalf("open %s: %v", name, err)
	}
	tb := &tab{name: name, ctx: ctx}
	if url != "" {
		tb.navigate(t, url)
	}
	return tb
}

func (tb *tab) navigate(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: open %s: %v", tb.name, url, err)
	}
}

// click clicks the element that the CSS selector sel finds (as a user does:
// mouse events at its centre).
func (tb *tab) click(t testing.TB, sel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("%s: click %s: %v", tb.name, sel, err)
	}
}

// tryEval evaluates a JavaScript expression in the tab.
func tryEval[T any](tb *tab, expr string, opts ...chromedp.EvaluateOption) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
}

// evalJS evaluates a JavaScript expression in the tab and fails the test on
// an error.
func evalJS[T any](t testing.TB, tb *tab, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := tryEval[T](tb, expr, opts...)
	if err != nil {
		t.Fatalf("%s: evaluate %s: %v", tb.name, expr, err)
	}
	return v
}

func (tb *tab) eval(t testing.TB, expr string) {
	t.Helper()
	evalJS[chromedp.Void](t, tb, expr)
}

// waitFor polls the JavaScript condition cond in the tab until it holds,
// and fails the test if it does not within the bound. Evaluation errors (a
// page in the middle of loading) count as "not yet".
func (tb *tab) waitFor(t testing.TB, within time.Duration, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := tryEval[bool](tb, "!!("+cond+")")
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s: not within %v (last error: %v)\npage: %s", tb.name, what, within, err, tb.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// describe sums the page's state up for a failure message.
func (tb *tab) describe() string {
	s, err := tryEval[string](tb, `JSON.stringify({
		url: location.href,
		visibility: document.visibilityState,
		status: document.querySelector('#conn-status')?.dataset.state,
		statusText: document.querySelector('#conn-status')?.textContent,
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

// signUp creates an account through the sign-up form, typing as a user
// does, and waits for the notes page.
func signUp(t testing.TB, tb *tab, base, username string) {
	t.Helper()
	tb.navigate(t, base+"/signup")
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#signup-form input[name=username]`), username),
		chromedp.SendKeys(chromedp.CSS(`#signup-form input[name=password]`), testPassword),
		chromedp.Click(chromedp.CSS(`#signup-form button[type=submit]`)),
	)
	if err != nil {
		t.Fatalf("%s: sign up as %s: %v", tb.name, username, err)
	}
	tb.waitNotesPage(t)
}

func (tb *tab) waitNotesPage(t testing.TB) {
	t.Helper()
	tb.waitFor(t, 15*time.Second, "the notes page",
		`location.pathname === '/' && document.readyState === 'complete' && !!window.notesync && !!document.querySelector('#notes-list')`)
}

func (tb *tab) waitConnected(t testing.TB) {
	t.Helper()
	tb.waitFor(t, 15*time.Second, "#conn-status data-state open", `document.querySelector('#conn-status').dataset.state === 'open'`)
}

func (tb *tab) connStatus(t testing.TB) (state, text string) {
	t.Helper()
	st := evalJS[struct{ State, Text string }](t, tb,
		`({state: document.querySelector('#conn-status').dataset.state, text: document.querySelector('#conn-status').textContent})`)
	return st.State, st.Text
}

// markDocument marks the current document, so that checkDocumentKept can
// tell that it was not reloaded.
func (tb *tab) markDocument(t testing.TB) {
	t.Helper()
	tb.eval(t, `window.__notReloaded = window.__notReloaded || performance.timeOrigin`)
}

func (tb *tab) checkDocumentKept(t testing.TB) {
	t.Helper()
	if !evalJS[bool](t, tb, `window.__notReloaded === performance.timeOrigin`) {
		t.Errorf("%s: the page was reloaded", tb.name)
	}
}

// cookieHeader returns the browser's cookies for base as a Cookie header.
func (tb *tab) cookieHeader(t testing.TB, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatalf("%s: get cookies: %v", tb.name, err)
	}
	var parts []string
	for _, c := range res.Cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) == 0 {
		t.Fatalf("%s: no cookies for %s", tb.name, base)
	}
	return strings.Join(parts, "; ")
}

// ---------------------------------------------------------------- notes

type writeResult struct {
	Status int
	ID     int64
	T      float64 // Date.now() when the response arrived
}

// createNote submits the tab's note form (as a user pressing "Add note",
// also in a background tab) and waits for the server's answer.
func createNote(t testing.TB, tb *tab, body string) writeResult {
	t.Helper()
	tb.eval(t, `(() => {
		const form = document.querySelector('#note-form');
		form.querySelector('textarea[name=body]').value = `+jsString(body)+`;
		window.__write = null;
		document.addEventListener('htmx:afterRequest', function done(e) {
			if (e.detail.elt !== form) return;
			document.removeEventListener('htmx:afterRequest', done);
			let id = 0;
			try { id = JSON.parse(e.detail.xhr.responseText).note.id; } catch {}
			window.__write = {status: e.detail.xhr.status, id, t: Date.now()};
		});
		form.requestSubmit();
	})()`)
	tb.waitFor(t, 10*time.Second, "the answer to the note form", `!!window.__write`)
	w := evalJS[writeResult](t, tb, `window.__write`)
	if w.Status != http.StatusCreated || w.ID == 0 {
		t.Fatalf("%s: creating a note answered %d (note id %d)", tb.name, w.Status, w.ID)
	}
	return w
}

func noteSelector(id int64) string { return fmt.Sprintf(`#notes-list [data-note-id="%d"]`, id) }

// ---------------------------------------------------------------- list recorder

// recordListJS installs a MutationObserver on #notes-list that logs, with
// the page's clock, when a note is inserted ("added", with its classes at
// that moment), removed for good ("removed"), and when it gains or loses
// note-flash or note-leaving. Observer callbacks are microtasks, so they run
// on time in a background tab too.
const recordListJS = `(() => {
	if (window.__rec) return;
	const rec = window.__rec = [];
	const isNote = (n) => n.nodeType === 1 && n.hasAttribute('data-note-id');
	const log = (kind, el, cls) => rec.push({kind, id: Number(el.getAttribute('data-note-id')), t: Date.now(), cls});
	new MutationObserver((records) => {
		records.forEach((m, i) => {
			if (m.type === 'childList') {
				for (const n of m.addedNodes) if (isNote(n)) log('added', n, n.className);
				for (const n of m.removedNodes) if (isNote(n) && !n.isConnected) log('removed', n, n.className);
				return;
			}
			if (!isNote(m.target)) return;
			// The class value right after this change: the old value of the
			// element's next change in this batch, or its current one.
			const next = records.slice(i + 1).find((r) => r.type === 'attributes' && r.target === m.target);
			const after = next ? (next.oldValue || '') : m.target.className;
			const was = (m.oldValue || '').split(/\s+/), now = after.split(/\s+/);
			for (const c of ['note-flash', 'note-leaving']) {
				if (!was.includes(c) && now.includes(c)) log(c + ' on', m.target, after);
				if (was.includes(c) && !now.includes(c)) log(c + ' off', m.target, after);
			}
		});
	}).observe(document.querySelector('#notes-list'),
		{childList: true, subtree: true, attributes: true, attributeFilter: ['class'], attributeOldValue: true});
})()`

func (tb *tab) recordList(t testing.TB) {
	t.Helper()
	tb.eval(t, recordListJS)
}

// listEvent is one entry of the recorder.
type listEvent struct {
	Kind string
	ID   int64
	T    float64 // Date.now()
	Cls  string
}

// events returns what the recorder saw happen to note id, in order.
func (tb *tab) events(t testing.TB, id int64) []listEvent {
	t.Helper()
	return evalJS[[]listEvent](t, tb, fmt.Sprintf(`(window.__rec || []).filter((e) => e.id === %d)`, id))
}

func find(evs []listEvent, kind string) (listEvent, bool) {
	for _, e := range evs {
		if e.Kind == kind {
			return e, true
		}
	}
	return listEvent{}, false
}

// glowStart is when the note first had class note-flash: at its insertion
// or later.
func glowStart(evs []listEvent) (listEvent, bool) {
	for _, e := range evs {
		if e.Kind == "note-flash on" || e.Kind == "added" && slices.Contains(strings.Fields(e.Cls), "note-flash") {
			return e, true
		}
	}
	return listEvent{}, false
}

// ---------------------------------------------------------------- helpers

// attempt is one entry of window.notesync.attempts.
type attempt struct {
	At        float64
	Transport string
	Delay     float64
	Probe     bool
}

func describeAttempts(atts []attempt, since time.Time) string {
	var parts []string
	for _, a := range atts {
		parts = append(parts, fmt.Sprintf("%s at +%.0f ms after %.0f ms", a.Transport, a.At-float64(since.UnixMilli()), a.Delay))
	}
	return strings.Join(parts, ", ")
}

// isPowerOfTwoMultiple reports whether d is unit·2^k for some k ≥ 0.
func isPowerOfTwoMultiple(d, unit float64) bool {
	for m := unit; m <= d; m *= 2 {
		if m == d {
			return true
		}
	}
	return false
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
