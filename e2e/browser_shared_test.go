package e2e

// The tabs of a browser share one real-time connection (docs/PROTOCOL.md
// §13), in Chromium: through a SharedWorker, or, with SharedWorker hidden
// from the page, through the tab that holds the Web Lock.

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"notesync/internal/apitest"
	bt "notesync/internal/browsertest"
)

// openTabs opens n tabs of one browser on base as username: the first
// signs up, the others open the notes page. Each is connected and records
// its list and the hellos it gets. setup, when set, runs in each tab
// before its first page loads.
func openTabs(t *testing.T, browser context.Context, base, username string, n int, setup func(*bt.Tab)) []*bt.Tab {
	t.Helper()
	tabs := make([]*bt.Tab, n)
	for i := range tabs {
		tabs[i] = bt.OpenTab(t, browser, fmt.Sprintf("tab %d", i+1), "")
		if setup != nil {
			setup(tabs[i])
		}
		if i == 0 {
			bt.SignUp(t, tabs[i], base, username)
		} else {
			tabs[i].Navigate(t, base+"/")
			tabs[i].WaitNotesPage(t)
		}
	}
	for _, tab := range tabs {
		tab.WaitConnected(t)
		tab.RecordList(t)
		recordHellos(t, tab)
	}
	return tabs
}

// hideSharedWorker makes every page the tab loads see no SharedWorker, as
// a browser without one.
func hideSharedWorker(t *testing.T, tab *bt.Tab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: `delete window.SharedWorker;`}); err != nil {
		t.Fatalf("hide SharedWorker: %v", err)
	}
}

// recordHellos keeps, in window.__hellos, when (Date.now()) each hello
// reached the tab's event log from now on.
func recordHellos(t *testing.T, tab *bt.Tab) {
	t.Helper()
	tab.Exec(t, `(() => {
		if (window.__hellos) return;
		window.__hellos = [];
		new MutationObserver((records) => {
			for (const r of records) for (const n of r.addedNodes) {
				if (n.dataset && n.dataset.type === 'hello') window.__hellos.push(Date.now());
			}
		}).observe(document.querySelector('#event-log'), {childList: true});
	})()`)
}

// memberCounts is what /api/cluster says of the user's connections and
// tabs on the one node.
type memberCounts struct{ Connections, Tabs int }

func clusterCounts(t *testing.T, tab *bt.Tab) memberCounts {
	t.Helper()
	body := bt.Eval[string](t, tab, `fetch('/api/cluster').then((r) => r.text())`, chromedp.EvalAwaitPromise)
	var st struct{ Members []memberCounts }
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Members) != 1 {
		t.Fatalf("%s: /api/cluster answered %s", tab.Name, body)
	}
	return st.Members[0]
}

// waitCounts waits until /api/cluster counts the user's connections and
// tabs as wanted.
func waitCounts(t *testing.T, tab *bt.Tab, want memberCounts) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := clusterCounts(t, tab)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/cluster counts %+v, want %+v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPresence waits until each tab's #presence says tabs tabs in
// browsers browsers, in text as given.
func waitPresence(t *testing.T, tabs []*bt.Tab, n, browsers int, text string) {
	t.Helper()
	for _, tab := range tabs {
		tab.WaitFor(t, 5*time.Second, fmt.Sprintf("#presence to say %q", text), fmt.Sprintf(
			`(() => { const p = document.querySelector('#presence');
				return p.dataset.tabs === '%d' && p.dataset.browsers === '%d' && p.textContent === %s; })()`,
			n, browsers, bt.JSString(text)))
	}
}

// expectGlowEverywhere creates a note in from and checks that each of to
// shows it with a glow, and from without one.
func expectGlowEverywhere(t *testing.T, from *bt.Tab, to []*bt.Tab, body string) {
	t.Helper()
	w := bt.CreateNote(t, from, body)
	for _, tab := range to {
		if tab == from {
			continue
		}
		tab.WaitFor(t, 5*time.Second, "the note from "+from.Name, bt.HasNote(w.ID))
		if _, ok := bt.GlowStart(tab.Events(t, w.ID)); !ok {
			t.Errorf("%s: the note from %s did not glow (events %+v)", tab.Name, from.Name, tab.Events(t, w.ID))
		}
	}
	from.WaitFor(t, 5*time.Second, "its own note", bt.HasNote(w.ID))
	if _, ok := bt.GlowStart(from.Events(t, w.ID)); ok {
		t.Errorf("%s: its own note glowed", from.Name)
	}
}

// expectEditingElsewhere creates a note in tabs[editor] and opens it in
// its editor there: every other tab marks it note-editing-elsewhere, and
// the editing tab does not.
func expectEditingElsewhere(t *testing.T, tabs []*bt.Tab, editor int) {
	t.Helper()
	id := bt.CreateNote(t, tabs[editor], "to edit").ID
	sel := bt.JSString(bt.NoteSelector(id))
	for _, tab := range tabs {
		tab.WaitFor(t, 5*time.Second, "the note to edit", bt.HasNote(id))
	}
	tabs[editor].Exec(t, `document.querySelector(`+sel+` + ' [data-action=edit]').click()`)
	for i, tab := range tabs {
		want := i != editor
		tab.WaitFor(t, 5*time.Second, fmt.Sprintf("note-editing-elsewhere to be %v", want),
			fmt.Sprintf(`document.querySelector(%s).classList.contains('note-editing-elsewhere') === %v`, sel, want))
	}
}

// checkTakeOver closes tabs[0] and checks that the others are connected
// again within 2 s and miss nothing: a note written meanwhile, over the
// API, shows in each, and the node counts one connection for them.
func checkTakeOver(t *testing.T, base string, tabs []*bt.Tab) {
	t.Helper()
	rest := tabs[1:]
	api := apitest.New(t, base)
	cookie := tabs[1].CookieHeader(t, base)
	closedAt := bt.Eval[float64](t, rest[0], `Date.now()`)
	tabs[0].Close()
	id, _ := api.CreateNote("written while the first tab closed", "Cookie", cookie)
	for _, tab := range rest {
		tab.WaitFor(t, 5*time.Second, "the note written meanwhile", bt.HasNote(id))
		tab.WaitConnected(t)
	}
	for _, tab := range rest {
		hellos := bt.Eval[[]float64](t, tab, `window.__hellos`)
		last := closedAt
		for _, h := range hellos {
			if h > closedAt {
				last = h
				break
			}
		}
		if last == closedAt {
			t.Logf("%s: no new hello: its connection stayed open", tab.Name)
		} else if d := last - closedAt; d > 2000 {
			t.Errorf("%s: connected again %.0f ms after the first tab closed, want within 2 s", tab.Name, d)
		} else {
			t.Logf("%s: connected again %.0f ms after the first tab closed", tab.Name, d)
		}
	}
	waitCounts(t, rest[0], memberCounts{Connections: 1, Tabs: len(rest)})
	waitPresence(t, rest, len(rest), 1, fmt.Sprintf("%d tabs on 1 node", len(rest)))
	expectGlowEverywhere(t, rest[len(rest)-1], rest, "after the first tab closed")
}

func TestBrowserTabsShareOneConnection(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	tabs := openTabs(t, browser, node.URL, "frank", 5, nil)

	t.Run("five tabs of one browser are one connection to the node", func(t *testing.T) {
		waitCounts(t, tabs[4], memberCounts{Connections: 1, Tabs: 5})
	})
	t.Run("presence says 5 tabs in every tab", func(t *testing.T) {
		waitPresence(t, tabs, 5, 1, "5 tabs on 1 node")
	})
	t.Run("a note added in any tab glows in the other four", func(t *testing.T) {
		for i, from := range tabs {
			expectGlowEverywhere(t, from, tabs, fmt.Sprintf("note %d from %s", i+1, from.Name))
		}
	})
	t.Run("a note open in one tab's editor is marked in the others, and not in its own", func(t *testing.T) {
		expectEditingElsewhere(t, tabs, 2)
	})
	t.Run("the tab that started the worker closes: the others keep their connection and miss nothing", func(t *testing.T) {
		checkTakeOver(t, node.URL, tabs)
	})
}

func TestBrowserTabsShareWithoutSharedWorker(t *testing.T) {
	browser := bt.Start(t)
	node := startNode(t)
	tabs := openTabs(t, browser, node.URL, "grace", 4, func(tab *bt.Tab) { hideSharedWorker(t, tab) })
	if bt.Eval[bool](t, tabs[0], `'SharedWorker' in window`) {
		t.Fatal("the page still sees SharedWorker")
	}

	t.Run("the tabs hold one connection, through the tab that leads", func(t *testing.T) {
		waitCounts(t, tabs[3], memberCounts{Connections: 1, Tabs: 4})
		waitPresence(t, tabs, 4, 1, "4 tabs on 1 node")
		expectGlowEverywhere(t, tabs[1], tabs, "over the leading tab")
	})
	t.Run("the leading tab closes: another connects within 2 s, and nothing is missed", func(t *testing.T) {
		checkTakeOver(t, node.URL, tabs)
	})
}

func TestBrowserTwoBrowsersOfOneUser(t *testing.T) {
	first := bt.Start(t)
	second := bt.Start(t)
	node := startNode(t)
	a := openTabs(t, first, node.URL, "heidi", 2, nil)
	b := bt.OpenTab(t, second, "the other browser's tab", "")
	bt.LogIn(t, b, node.URL, "heidi")
	b.WaitConnected(t)
	all := append(a, b)

	t.Run("two connections, three tabs", func(t *testing.T) {
		waitCounts(t, b, memberCounts{Connections: 2, Tabs: 3})
	})
	t.Run("presence says 2 browsers", func(t *testing.T) {
		waitPresence(t, all, 3, 2, "3 tabs in 2 browsers on 1 node")
	})
}

func TestBrowserSocketPerTab(t *testing.T) {
	browser := bt.Start(t)
	node := startNode(t)
	tabs := openTabs(t, browser, node.URL, "ivan", 1, nil)
	second := bt.OpenTab(t, browser, "tab with ?socket=tab", node.URL+"/?socket=tab")
	second.WaitNotesPage(t)
	second.WaitConnected(t)
	second.RecordList(t)

	t.Run("?socket=tab gives the tab a connection of its own", func(t *testing.T) {
		waitCounts(t, second, memberCounts{Connections: 2, Tabs: 2})
		expectGlowEverywhere(t, tabs[0], []*bt.Tab{tabs[0], second}, "to the tab of its own")
	})
	t.Run("it holds for the tab's session, until ?socket=shared", func(t *testing.T) {
		second.Navigate(t, node.URL+"/")
		second.WaitConnected(t)
		waitCounts(t, tabs[0], memberCounts{Connections: 2, Tabs: 2})
		second.Navigate(t, node.URL+"/?socket=shared")
		second.WaitConnected(t)
		waitCounts(t, tabs[0], memberCounts{Connections: 1, Tabs: 2})
	})
}

// TestBrowserReleasesDoNotShare: a tab of another release (as after a
// deploy, with tabs of the older one still open) does not join the
// older tabs' worker, whose messages it might not understand: it starts
// a worker of its own release.
func TestBrowserReleasesDoNotShare(t *testing.T) {
	browser := bt.Start(t)
	node := startNode(t)
	tabs := openTabs(t, browser, node.URL, "judy", 2, nil)
	waitCounts(t, tabs[1], memberCounts{Connections: 1, Tabs: 2})

	newer := bt.OpenTab(t, browser, "tab of another release", "")
	ctx, cancel := context.WithTimeout(newer.Ctx, 10*time.Second)
	defer cancel()
	// The page's script names its release; this tab's says another one,
	// before the module reads it.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
		new MutationObserver((records, obs) => {
			const s = document.querySelector('script[data-release]');
			if (s) { s.dataset.release = 'another-release'; obs.disconnect(); }
		}).observe(document, {childList: true, subtree: true});`}); err != nil {
		t.Fatalf("rename the release: %v", err)
	}
	newer.Navigate(t, node.URL+"/")
	newer.WaitNotesPage(t)
	newer.WaitConnected(t)
	newer.RecordList(t)
	if got := bt.Eval[string](t, newer, `document.querySelector('script[data-release]').dataset.release`); got != "another-release" {
		t.Fatalf("the tab's release is %q", got)
	}
	waitCounts(t, newer, memberCounts{Connections: 2, Tabs: 3})
	waitPresence(t, append(tabs, newer), 3, 2, "3 tabs in 2 browsers on 1 node")
	expectGlowEverywhere(t, tabs[0], append(tabs, newer), "to both releases")
}
