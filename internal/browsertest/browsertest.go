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
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
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
	var path string
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		testenv.Need(t, errors.New("no Chromium found for the browser tests"), "apt-get install chromium (or make test)")
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
	tb := &Tab{Name: name, Ctx: ctx}
	if url != "" {
		tb.Navigate(t, url)
	}
	return tb
}

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
	tb.Navigate(t, base+"/signup")
	ctx, cancel := context.WithTimeout(tb.Ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#signup-form input[name=username]`), username),
		chromedp.SendKeys(chromedp.CSS(`#signup-form input[name=password]`), Password),
		chromedp.Click(chromedp.CSS(`#signup-form button[type=submit]`)),
	)
	if err != nil {
		t.Fatalf("%s: sign up as %s: %v", tb.Name, username, err)
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

// ---------------------------------------------------------------- notes

// WriteResult is the answer to a note form submitted by CreateNote.
type WriteResult struct {
	Status int
	ID     int64
	T      float64 // Date.now() when the response arrived
}

// CreateNote submits the tab's note form (as a user pressing "Add note",
// also in a background tab) and waits for the server's answer, which must
// be a 201 with the new note.
func CreateNote(t testing.TB, tb *Tab, body string) WriteResult {
	t.Helper()
	tb.Exec(t, `(() => {
		const form = document.querySelector('#note-form');
		form.querySelector('textarea[name=body]').value = `+JSString(body)+`;
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
	tb.WaitFor(t, 10*time.Second, "the answer to the note form", `!!window.__write`)
	w := Eval[WriteResult](t, tb, `window.__write`)
	if w.Status != http.StatusCreated || w.ID == 0 {
		t.Fatalf("%s: creating a note answered %d (note id %d)", tb.Name, w.Status, w.ID)
	}
	return w
}

// NoteSelector is the CSS selector of note id in #notes-list.
func NoteSelector(id int64) string { return fmt.Sprintf(`#notes-list [data-note-id="%d"]`, id) }

// HasNote is a JavaScript condition: note id is in the tab's list.
func HasNote(id int64) string { return `!!document.querySelector(` + JSString(NoteSelector(id)) + `)` }

// ExpectNoteSynced creates a note through from's form and checks that it
// shows up in to within 1 s of the write returning, without a reload, with
// class note-flash for at least 1.5 s, and that from's own copy does not
// glow. Both tabs must record their list (RecordList). It returns the note's
// id.
func ExpectNoteSynced(t testing.TB, from, to *Tab, body string) int64 {
	t.Helper()
	to.MarkDocument(t)
	w := CreateNote(t, from, body)
	sel := NoteSelector(w.ID)
	to.WaitFor(t, 5*time.Second, "the note from "+from.Name, HasNote(w.ID))

	// While the class is there, check that it stays 1.5 s from the arrival.
	added, ok := Find(to.Events(t, w.ID), "added")
	if !ok {
		t.Fatalf("%s: the note is in the list but its insertion was not recorded", to.Name)
	}
	if lag := added.T - w.T; lag > 1000 {
		t.Errorf("%s: the note appeared %.0f ms after the write returned in %s, want within 1 s", to.Name, lag, from.Name)
	}
	for {
		now := Eval[struct {
			Now   float64
			Flash bool
		}](t, to, `({now: Date.now(), flash: document.querySelector(`+JSString(sel)+`).classList.contains('note-flash')})`)
		if now.Now-added.T >= 1500 {
			break
		}
		if !now.Flash {
			t.Errorf("%s: note-flash gone %.0f ms after the note arrived, want at least 1.5 s", to.Name, now.Now-added.T)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := Eval[string](t, to, `document.querySelector(`+JSString(sel+" .note-body")+`).textContent`); got != body {
		t.Errorf("%s: note body %q, want %q", to.Name, got, body)
	}
	to.CheckDocumentKept(t)

	// The class was there at insertion and went away no sooner than 1.5 s
	// later, by the page's own clock (polling could miss a short blink).
	to.WaitFor(t, 10*time.Second, "the glow to end", `!document.querySelector(`+JSString(sel)+`).classList.contains('note-flash')`)
	evs := to.Events(t, w.ID)
	on, ok := GlowStart(evs)
	if !ok || on.T > added.T {
		t.Errorf("%s: the note did not glow on arrival (events %+v)", to.Name, evs)
	} else if off, ok := Find(evs, "note-flash off"); !ok {
		t.Errorf("%s: no record of note-flash being removed (events %+v)", to.Name, evs)
	} else if d := off.T - on.T; d < 1500 {
		t.Errorf("%s: note-flash lasted %.0f ms, want at least 1.5 s", to.Name, d)
	} else {
		t.Logf("%s: the note arrived %.0f ms after the write returned in %s and glowed for %.0f ms", to.Name, added.T-w.T, from.Name, d)
	}

	// The writer's own copy is not "from elsewhere": no glow.
	from.WaitFor(t, 5*time.Second, "its own new note", HasNote(w.ID))
	if _, glowed := GlowStart(from.Events(t, w.ID)); glowed {
		t.Errorf("%s: its own new note got class note-flash (events %+v)", from.Name, from.Events(t, w.ID))
	}
	return w.ID
}

// ExpectFadeOut waits until note id is gone from each tab and checks, by the
// recorder of each (RecordList), that it got class note-leaving and stayed
// at least 300 ms with it before it was removed. It returns, per tab, when
// the note got note-leaving (Date.now()), or 0 where that was not recorded.
func ExpectFadeOut(t testing.TB, id int64, tabs ...*Tab) []float64 {
	t.Helper()
	for _, tab := range tabs {
		tab.WaitFor(t, 10*time.Second, "the deleted note to be removed", `!`+HasNote(id))
	}
	starts := make([]float64, len(tabs))
	for i, tab := range tabs {
		evs := tab.Events(t, id)
		leaving, ok := Find(evs, "note-leaving on")
		if !ok {
			t.Errorf("%s: the note never got class note-leaving (events %+v)", tab.Name, evs)
			continue
		}
		removed, ok := Find(evs, "removed")
		if !ok {
			t.Errorf("%s: no record of the note's removal (events %+v)", tab.Name, evs)
			continue
		}
		if d := removed.T - leaving.T; d < 300 {
			t.Errorf("%s: the note was removed %.0f ms after it got note-leaving, want at least 300 ms", tab.Name, d)
		}
		t.Logf("%s: note-leaving for %.0f ms, then removed", tab.Name, removed.T-leaving.T)
		starts[i] = leaving.T
	}
	return starts
}

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

// RecordList starts recording the changes of the tab's #notes-list (see
// Events). It is kept until the document goes.
func (tb *Tab) RecordList(t testing.TB) {
	t.Helper()
	tb.Exec(t, recordListJS)
}

// ListEvent is one entry of the recorder.
type ListEvent struct {
	Kind string // added, removed, note-flash on|off, note-leaving on|off
	ID   int64
	T    float64 // Date.now()
	Cls  string  // the note's classes right after the change
}

// Events returns what the recorder saw happen to note id, in order.
func (tb *Tab) Events(t testing.TB, id int64) []ListEvent {
	t.Helper()
	return Eval[[]ListEvent](t, tb, fmt.Sprintf(`(window.__rec || []).filter((e) => e.id === %d)`, id))
}

// Find returns the first event of the kind.
func Find(evs []ListEvent, kind string) (ListEvent, bool) {
	for _, e := range evs {
		if e.Kind == kind {
			return e, true
		}
	}
	return ListEvent{}, false
}

// GlowStart is when the note first had class note-flash: at its insertion
// or later.
func GlowStart(evs []ListEvent) (ListEvent, bool) {
	for _, e := range evs {
		if e.Kind == "note-flash on" || e.Kind == "added" && slices.Contains(strings.Fields(e.Cls), "note-flash") {
			return e, true
		}
	}
	return ListEvent{}, false
}

// JSString quotes s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ---------------------------------------------------------------- edits

// NoteState is what a tab shows of one note.
type NoteState struct {
	Exists  bool
	Classes []string
	Body    string // .note-body: the note's text as the tab shows it
	Rev     int64  // data-rev
	Editing bool   // an editor is open
	Draft   string // the editor's text
	// Buttons are the note's visible controls: data-action → accessible
	// name (aria-label, else text).
	Buttons map[string]string
}

// Has reports whether the note has class c.
func (s NoteState) Has(c string) bool { return slices.Contains(s.Classes, c) }

// Note returns what the tab shows of note id.
func (tb *Tab) Note(t testing.TB, id int64) NoteState {
	t.Helper()
	return Eval[NoteState](t, tb, `(() => {
		const el = document.querySelector(`+JSString(NoteSelector(id))+`);
		if (!el) return {exists: false, classes: [], buttons: {}};
		const ta = el.querySelector('.note-edit textarea');
		const buttons = {};
		for (const b of el.querySelectorAll('button[data-action]')) {
			if (b.offsetParent !== null) buttons[b.dataset.action] = b.getAttribute('aria-label') || b.textContent;
		}
		return {
			exists: true, classes: Array.from(el.classList),
			body: el.querySelector('.note-body').textContent,
			rev: Number(el.dataset.rev), editing: !!ta, draft: ta ? ta.value : '', buttons,
		};
	})()`)
}

// WaitNote waits until cond holds for what the tab shows of note id.
func (tb *Tab) WaitNote(t testing.TB, id int64, within time.Duration, what string, cond func(NoteState) bool) NoteState {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := tb.Note(t, id)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: note %d: %s: not within %v; it shows %+v", tb.Name, id, what, within, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ClickNote clicks the note's control with that data-action.
func (tb *Tab) ClickNote(t testing.TB, id int64, action string) {
	t.Helper()
	tb.Click(t, NoteSelector(id)+` button[data-action="`+action+`"]`)
}

// Type replaces the editor's text of note id, as typing does (the value
// changes and an input event follows).
func (tb *Tab) Type(t testing.TB, id int64, text string) {
	t.Helper()
	tb.Exec(t, `(() => {
		const ta = document.querySelector(`+JSString(NoteSelector(id)+" .note-edit textarea")+`);
		ta.value = `+JSString(text)+`;
		ta.dispatchEvent(new Event('input', {bubbles: true}));
	})()`)
}

// EditNote opens the editor of note id and types text into it.
func (tb *Tab) EditNote(t testing.TB, id int64, text string) {
	t.Helper()
	tb.ClickNote(t, id, "edit")
	tb.WaitNote(t, id, 5*time.Second, "the editor to open", func(s NoteState) bool { return s.Editing })
	tb.Type(t, id, text)
}

// SaveNote submits the editor of note id and waits for it to close.
func (tb *Tab) SaveNote(t testing.TB, id int64) {
	t.Helper()
	tb.ClickNote(t, id, "edit-save")
	tb.WaitNote(t, id, 10*time.Second, "the save to finish", func(s NoteState) bool { return !s.Editing })
}

// ServerNote reads note id through the tab's own session from its node.
func (tb *Tab) ServerNote(t testing.TB, id int64) (status int, body string, rev int64) {
	t.Helper()
	r := Eval[struct {
		Status int
		Body   string
		Rev    int64
	}](t, tb, fmt.Sprintf(`fetch('/api/notes/%d', {cache: 'no-store'}).then(async (r) => {
		const j = await r.json().catch(() => ({}));
		return {status: r.status, body: j.note ? j.note.body : '', rev: j.note ? j.note.rev : 0};
	})`, id), chromedp.EvalAwaitPromise)
	return r.Status, r.Body, r.Rev
}
