package e2e

// Real-browser tests of the notes page (docs/PROTOCOL.md §5): two tabs of one Chromium,
// driven over the DevTools protocol with chromedp (through
// internal/browsertest), against a node of the built binary (startNode).
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
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"notesync/internal/apitest"
	bt "notesync/internal/browsertest"
)

func TestBrowserSync(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := bt.TwoTabs(t, browser, "alice", node.URL, node.URL)

	t.Run("the status line says the tab is connected and names the node and region", func(t *testing.T) {
		for _, tab := range []*bt.Tab{a, b} {
			state, text := tab.ConnStatus(t)
			if state != "open" {
				t.Errorf("%s: #conn-status data-state = %q, want open", tab.Name, state)
			}
			if !strings.Contains(text, "node1") || !strings.Contains(text, "local") {
				t.Errorf("%s: #conn-status text %q does not name node node1 and region local", tab.Name, text)
			}
		}
	})

	var noteID int64
	t.Run("a note created in one tab appears in the other with a glow", func(t *testing.T) {
		noteID = bt.ExpectNoteSynced(t, a, b, "Buy oat milk")
	})

	t.Run("a note that arrives in a background tab glows there too, and the glow ends", func(t *testing.T) {
		if v := bt.Eval[string](t, a, `document.visibilityState`); v != "hidden" {
			t.Fatalf("tab A is not a background tab: visibilityState %q", v)
		}
		w := bt.CreateNote(t, b, "Call the plumber")
		id := w.ID
		sel := bt.NoteSelector(id)
		a.WaitFor(t, 5*time.Second, "the note from tab B", `!!document.querySelector(`+bt.JSString(sel)+`)`)
		a.WaitFor(t, 10*time.Second, "the glow to end", `!document.querySelector(`+bt.JSString(sel)+`).classList.contains('note-flash')`)
		evs := a.Events(t, id)
		on, ok := bt.GlowStart(evs)
		if !ok {
			t.Fatalf("tab A: the note never had class note-flash (events %+v)", evs)
		}
		off, ok := bt.Find(evs, "note-flash off")
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
		b.Click(t, bt.NoteSelector(noteID)+` [data-action="delete"]`)
		bt.ExpectFadeOut(t, noteID, b, a)
	})

	t.Run("another user sees none of these notes and none of their events", func(t *testing.T) {
		bt.CreateNote(t, b, "Alice's first secret")
		// A browser context of its own: other cookies, so another session.
		other := bt.OpenTab(t, browser, "bob's tab", "", chromedp.WithNewBrowserContext())
		bt.SignUp(t, other, node.URL, "bob")
		other.WaitConnected(t)
		if n := bt.Eval[int](t, other, `document.querySelectorAll('#notes-list [data-note-id]').length`); n != 0 {
			t.Errorf("bob sees %d notes, want none", n)
		}
		if text := bt.Eval[string](t, other, `document.body.innerText`); strings.Contains(text, "Alice's first secret") {
			t.Errorf("bob's page shows alice's note:\n%s", text)
		}

		id := bt.CreateNote(t, b, "Alice's second secret").ID
		for _, tab := range []*bt.Tab{a, b} {
			tab.WaitFor(t, 5*time.Second, "alice's new note", `!!document.querySelector(`+bt.JSString(bt.NoteSelector(id))+`)`)
		}
		// Bob writes a note of his own and waits for its push: one change
		// feed pushes every change in commit order, so a stray event of
		// alice's, committed before bob's note, would have reached bob's
		// tab before it.
		own := bt.CreateNote(t, other, "Bob's own note").ID
		other.WaitFor(t, 5*time.Second, "bob's own note", bt.HasNote(own))
		other.WaitFor(t, 5*time.Second, "the push of bob's own note in his log", `document.querySelectorAll('#event-log [data-type="note_changed"]').length === 1`)

		if n := bt.Eval[int](t, other, `document.querySelectorAll('#event-log [data-type="note_changed"]').length`); n != 1 {
			log := bt.Eval[string](t, other, `document.querySelector('#event-log').innerText`)
			t.Errorf("bob's #event-log has %d note_changed events, want only his own:\n%s", n, log)
		}
		if n := bt.Eval[int](t, other, `document.querySelectorAll('#event-log [data-type="hello"]').length`); n == 0 {
			t.Errorf("bob's #event-log has no hello: the check above proves nothing")
		}
		if n := bt.Eval[int](t, other, `document.querySelectorAll('#notes-list [data-note-id]').length`); n != 1 {
			t.Errorf("bob now sees %d notes, want only his own", n)
		}
		if v := bt.Eval[int](t, other, `window.notesync.version`); v != 1 {
			t.Errorf("bob's notes version is %d, want 1 (his own note)", v)
		}
	})
}

func TestBrowserEditsAreNeverLost(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := bt.TwoTabs(t, browser, "frank", node.URL, node.URL)
	bt.CheckEditsAreNeverLost(t, a, b)
}

func TestBrowserReconnectsAfterRestart(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := bt.TwoTabs(t, browser, "carol", node.URL, node.URL)
	tabs := []*bt.Tab{a, b}
	for _, tab := range tabs {
		tab.MarkDocument(t)
	}
	cookie := b.CookieHeader(t, node.URL)

	downAt := time.Now()
	node.Stop(t)
	for _, tab := range tabs {
		tab.WaitFor(t, 5*time.Second, "the tab to notice the server is gone",
			`document.querySelector('#conn-status').dataset.state !== 'open'`)
	}
	// A note written meanwhile waits, and the page says so, calmly: it is
	// sent again until the server takes it (docs/PROTOCOL.md §11).
	b.Exec(t, `(() => {
		const f = document.querySelector('#note-form');
		f.querySelector('textarea').value = 'Written while the server is down';
		f.requestSubmit();
	})()`)
	b.WaitFor(t, 10*time.Second, "the page to say the note waits",
		`!document.querySelector('#write-wait').hidden && document.querySelector('#note-error').hidden`)

	// Stay down at least 1.5 s, and until each tab has tried several times.
	time.Sleep(time.Until(downAt.Add(1500 * time.Millisecond)))
	for _, tab := range tabs {
		tab.WaitFor(t, 20*time.Second, "three reconnection attempts while the server is down",
			fmt.Sprintf(`window.notesync.attempts.filter((a) => a.at >= %d && !a.probe).length >= 3`, downAt.UnixMilli()))
	}

	restartAt := time.Now()
	node.Start(t) // the same address and data dir
	resp, body := apitest.New(t, node.URL).Do("POST", "/api/notes", "application/json", `{"body":"Written while the tabs were away"}`,
		"Cookie", cookie, "Idempotency-Key", fmt.Sprintf("restart-%d", time.Now().UnixNano()))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/notes with the browser's session after the restart: %d %s", resp.StatusCode, body)
	}
	var created struct{ Note struct{ ID int64 } }
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.Note.ID == 0 {
		t.Fatalf("POST /api/notes answered %s (%v)", body, err)
	}
	sel := bt.NoteSelector(created.Note.ID)

	t.Run("both tabs reconnect and show the note written meanwhile, without a reload", func(t *testing.T) {
		for _, tab := range tabs {
			tab.WaitFor(t, 20*time.Second, "the tab to reconnect and show the new note",
				`document.querySelector('#conn-status').dataset.state === 'open' && !!document.querySelector(`+bt.JSString(sel)+`)`)
			tab.CheckDocumentKept(t)
		}
	})

	t.Run("once the server is back, the note written meanwhile is saved once, and nothing says it waits", func(t *testing.T) {
		checkWaitedNoteSaved(t, b)
	})

	t.Run("reconnection backs off exponentially, with jitter, capped at 10 s", func(t *testing.T) {
		var first, later []float64 // delays of the first attempt, and of the third one on
		var all []float64
		for _, tab := range tabs {
			atts := bt.Eval[[]attempt](t, tab, fmt.Sprintf(`window.notesync.attempts.filter((a) => a.at >= %d && !a.probe)`, downAt.UnixMilli()))
			var whileDown int
			for _, at := range atts {
				if at.At < float64(restartAt.UnixMilli()) {
					whileDown++
				}
			}
			t.Logf("%s: %d attempts since the server stopped (%d while it was down): %s", tab.Name, len(atts), whileDown, describeAttempts(atts, downAt))
			if whileDown < 3 {
				t.Errorf("%s: %d attempts while the server was down, want several", tab.Name, whileDown)
			}
			for i, at := range atts {
				if at.Delay > 10000 {
					t.Errorf("%s: attempt %d waited %.0f ms, want at most 10 s", tab.Name, i, at.Delay)
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
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := bt.TwoTabs(t, browser, "dave", node.URL, node.URL)

	a.Exec(t, `document.querySelector('#logout-form').requestSubmit()`)
	a.WaitFor(t, 10*time.Second, "the login page after logging out", `location.pathname === '/login'`)

	b.WaitFor(t, 5*time.Second, "#conn-status to say the connection is closed",
		`document.querySelector('#conn-status').dataset.state === 'closed'`)
	if _, text := b.ConnStatus(t); !strings.Contains(strings.ToLower(text), "session ended") {
		t.Errorf("tab B: #conn-status text %q does not say that the session ended", text)
	}

	// A reconnect would come within the backoff's first steps (0.5 s,
	// then 1 s, with jitter): 3 s leaves room for several.
	before := bt.Eval[int](t, b, `window.notesync.attempts.length`)
	time.Sleep(3 * time.Second)
	if after := bt.Eval[int](t, b, `window.notesync.attempts.length`); after != before {
		t.Errorf("tab B tried to reconnect after the session ended: %d attempts, then %d", before, after)
	}
	if state, _ := b.ConnStatus(t); state != "closed" {
		t.Errorf("tab B: #conn-status data-state went from closed to %q", state)
	}
	status := bt.Eval[int](t, b, `fetch('/api/notes').then((r) => r.status)`, chromedp.EvalAwaitPromise)
	if status != http.StatusUnauthorized {
		t.Errorf("tab B: GET /api/notes after the log-out answered %d, want 401", status)
	}
}

func TestBrowserFallsBackToSSE(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	// The tabs reach the node through a proxy that refuses WebSocket
	// upgrades until told otherwise, as a proxy on the way might.
	var refuse atomic.Bool
	refuse.Store(true)
	proxy := refusingProxy(t, node.URL, &refuse)
	a, b := bt.TwoTabs(t, browser, "erin", proxy, proxy)

	t.Run("a tab whose WebSocket cannot connect uses SSE", func(t *testing.T) {
		for _, tab := range []*bt.Tab{a, b} {
			tab.WaitFor(t, 15*time.Second, "the SSE fallback",
				`window.notesync.transport === 'sse' && document.querySelector('#conn-status').dataset.state === 'open'`)
			if _, text := tab.ConnStatus(t); !strings.Contains(text, "node1") || !strings.Contains(text, "local") {
				t.Errorf("%s: #conn-status text %q does not name node node1 and region local", tab.Name, text)
			}
		}
	})

	t.Run("over SSE, a note created in one tab appears in the other with a glow", func(t *testing.T) {
		bt.ExpectNoteSynced(t, a, b, "Sent over server-sent events")
		if tr := bt.Eval[string](t, b, `window.notesync.transport`); tr != "sse" {
			t.Errorf("tab B: transport %q after the note, want sse", tr)
		}
	})

	t.Run("over SSE, a note open in one tab's editor is marked in the other", func(t *testing.T) {
		// The tabs' shared connection reports their editors with
		// POST /api/editing (docs/PROTOCOL.md §13).
		expectEditingElsewhere(t, []*bt.Tab{a, b}, 1)
	})

	t.Run("once WebSockets go through again, both tabs move back to one, the background tab too", func(t *testing.T) {
		// Each tab has tried once already, and been refused.
		for _, tab := range []*bt.Tab{a, b} {
			tab.WaitFor(t, 15*time.Second, "a refused WebSocket probe", `window.notesync.attempts.some((a) => a.probe)`)
		}
		since := time.Now().UnixMilli()
		refuse.Store(false)
		for _, tab := range []*bt.Tab{a, b} {
			tab.MarkDocument(t)
			// Probes back off from 2 s up to a minute; the tabs have been on
			// SSE for a few seconds, so the next comes within 16 s.
			tab.WaitFor(t, 40*time.Second, "the move back to a WebSocket", `window.notesync.transport === 'ws'`)
			probes := bt.Eval[[]attempt](t, tab, `window.notesync.attempts.filter((a) => a.probe)`)
			if len(probes) < 2 {
				t.Errorf("%s: %d WebSocket probes, want a refused one and then one that went through", tab.Name, len(probes))
			}
			for i := 1; i < len(probes); i++ {
				if gap := probes[i].At - probes[i-1].At; gap < 900 || gap > 61000 {
					t.Errorf("%s: probes %.0f ms apart, want 1 s to a minute (backoff from 2 s, jittered)", tab.Name, gap)
				}
			}
			t.Logf("%s: back on a WebSocket %.0f ms after it went through, after %d probes", tab.Name,
				bt.Eval[float64](t, tab, `Date.now()`)-float64(since), len(probes))
		}
		bt.CheckBackground(t, a)
		bt.ExpectNoteSynced(t, b, a, "Sent over a WebSocket again")
		for _, tab := range []*bt.Tab{a, b} {
			tab.CheckDocumentKept(t)
			if state, _ := tab.ConnStatus(t); state != "open" {
				t.Errorf("%s: #conn-status %q", tab.Name, state)
			}
		}
	})
}

// refusingProxy serves target through a reverse proxy on a loopback port
// that answers 503 to WebSocket upgrades while refuse is set.
func refusingProxy(t *testing.T, target string, refuse *atomic.Bool) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse.Load() && r.URL.Path == "/ws" {
			http.Error(w, "WebSocket refused on the way", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// ---------------------------------------------------------------- helpers

// checkWaitedNoteSaved checks that tab, once connected again, saved the
// note it was given while the server was down, once, and says neither that
// it waits nor that anything failed.
func checkWaitedNoteSaved(t *testing.T, tab *bt.Tab) {
	tab.WaitConnected(t)
	const count = `[...document.querySelectorAll('#notes-list .note-body')].filter((e) => e.textContent === 'Written while the server is down').length`
	tab.WaitFor(t, 30*time.Second, "the note written while the server was down", count+` >= 1`)
	time.Sleep(500 * time.Millisecond) // a second copy would show by now
	st := bt.Eval[struct {
		Copies  int
		Error   string
		Waiting string
		Status  string
		Draft   string
	}](t, tab, `({copies: `+count+`,
		error: document.querySelector('#note-error').hidden ? '' : document.querySelector('#note-error').textContent,
		waiting: document.querySelector('#write-wait').hidden ? '' : document.querySelector('#write-wait').textContent,
		status: document.querySelector('#conn-status').textContent, draft: document.querySelector('#note-form textarea').value})`)
	if st.Copies != 1 {
		t.Errorf("%s shows the note written while the server was down %d times, want once", tab.Name, st.Copies)
	}
	if st.Error != "" || st.Waiting != "" {
		t.Errorf("%s still says %q%q beside %q", tab.Name, st.Error, st.Waiting, st.Status)
	}
	if !strings.HasPrefix(st.Status, "Connected to node1") {
		t.Errorf("%s: its status line says %q", tab.Name, st.Status)
	}
	if st.Draft != "" {
		t.Errorf("%s: the saved note is still in the form: %q", tab.Name, st.Draft)
	}
}

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
