package e2e

// Real-browser tests of the page without a connection (docs/PROTOCOL.md
// §12): writes made while the node is stopped wait in the browser, marked
// note-pending, survive a reload, and land once, in order, when the node
// is back; / opens from the service worker with the notes as last seen.
// "Offline" here is the node's process stopped: the tab's connection and
// every request fail as they do on a train, and the browser's own offline
// switch does not reach a service worker's requests.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"notesync/internal/apitest"
	bt "notesync/internal/browsertest"
)

// acceptLeaving answers yes to the page's "leave with unsent text?"
// (beforeunload), so that a test can reload a page that asks.
func acceptLeaving(t *testing.T, tab *bt.Tab) {
	t.Helper()
	err := chromedp.Listen(tab.Ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go func() {
				ctx, cancel := context.WithTimeout(tab.Ctx, 5*time.Second)
				defer cancel()
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitControlled waits for the service worker to control the tab and the
// tab to have kept its list.
func waitControlled(t *testing.T, tab *bt.Tab) {
	t.Helper()
	tab.WaitFor(t, 15*time.Second, "the service worker to control the page", `!!navigator.serviceWorker.controller`)
	time.Sleep(500 * time.Millisecond) // the list is kept 300 ms after a swap
}

// serverNotes lists the user's notes through the API, newest first.
func serverNotes(t *testing.T, base, cookie string) []struct {
	ID   int64
	Body string
	Rev  int64
} {
	t.Helper()
	resp, body := apitest.New(t, base).Do("GET", "/api/notes", "", "", "Cookie", cookie)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/notes: %d %s", resp.StatusCode, body)
	}
	var list struct {
		Notes []struct {
			ID   int64
			Body string
			Rev  int64
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("GET /api/notes: %v: %s", err, body)
	}
	return list.Notes
}

// submitNote writes a note in the tab's form and sends it, as a person
// pressing "Add note".
func submitNote(t *testing.T, tab *bt.Tab, body string) {
	t.Helper()
	tab.Exec(t, `(() => {
		const f = document.querySelector('#note-form');
		f.querySelector('textarea').value = `+bt.JSString(body)+`;
		f.requestSubmit();
	})()`)
}

const pendingCount = `Number(document.querySelector('#conn-status').dataset.pending || 0)`

// allSent holds once the tab has no write waiting.
const allSent = pendingCount + ` === 0 && !document.querySelector('#notes-list .note-pending')`

// checkPendingShown waits for the tab to show writes pending writes on
// notes notes, and checks that its list shows bodies, top to bottom.
func checkPendingShown(t *testing.T, tab *bt.Tab, writes, notes int, bodies ...string) {
	t.Helper()
	tab.WaitFor(t, 5*time.Second, "the pending changes",
		fmt.Sprintf(`%s === %d && document.querySelectorAll('#notes-list .note-pending').length === %d`, pendingCount, writes, notes))
	if got := bodiesShown(t, tab); !slices.Equal(got, bodies) {
		t.Errorf("the list shows %q, want %q", got, bodies)
	}
}

// shownJSON is a JavaScript expression: the texts of the notes the list
// shows, top to bottom, as JSON.
const shownJSON = `JSON.stringify(Array.from(document.querySelectorAll('#notes-list [data-note-id]:not(.note-leaving) .note-body'), (e) => e.textContent))`

func bodiesShown(t *testing.T, tab *bt.Tab) []string {
	t.Helper()
	var got []string
	if err := json.Unmarshal([]byte(bt.Eval[string](t, tab, shownJSON)), &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// checkLandedOnce checks what the offline tests' tab wrote with its node
// down: "offline one" and "offline two" added, note first edited twice
// ("first, edited twice"), and nothing else kept. The server (at base)
// holds each change once, in order.
func checkLandedOnce(t *testing.T, base, cookie string, first int64) {
	t.Helper()
	notes := serverNotes(t, base, cookie)
	var bodies []string
	for _, n := range notes {
		bodies = append(bodies, n.Body)
	}
	// Newest first: "offline two" was created after "offline one".
	if want := []string{"offline two", "offline one", "first, edited twice"}; !slices.Equal(bodies, want) {
		t.Fatalf("the server holds %q, want %q", bodies, want)
	}
	if notes[2].ID != first || notes[2].Rev != 3 {
		t.Errorf("the edited note is %+v, want note %d at rev 3 (two edits, once each)", notes[2], first)
	}
}

func TestBrowserOfflineWritesLandOnceInOrder(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := bt.TwoTabs(t, browser, "olive", node.URL, node.URL)
	acceptLeaving(t, b)
	cookie := b.CookieHeader(t, node.URL)
	first := bt.CreateNote(t, b, "first").ID
	second := bt.CreateNote(t, b, "second").ID
	b.WaitFor(t, 5*time.Second, "both notes", bt.HasNote(first)+` && `+bt.HasNote(second))
	waitControlled(t, b)

	node.Stop(t)
	b.WaitFor(t, 5*time.Second, "the tab to notice the node is gone", `document.querySelector('#conn-status').dataset.state !== 'open'`)

	submitNote(t, b, "offline one")
	b.WaitFor(t, 5*time.Second, "the new note to show at once, pending",
		`Array.from(document.querySelectorAll('#notes-list .note-pending .note-body')).some((e) => e.textContent === 'offline one')`)
	b.EditNote(t, first, "first, edited offline")
	b.SaveNote(t, first)
	b.ClickNote(t, second, "delete")
	submitNote(t, b, "offline two")
	b.EditNote(t, first, "first, edited twice")
	b.SaveNote(t, first)
	b.WaitFor(t, 5*time.Second, "five changes to wait", pendingCount+` === 5`)

	t.Run("every change shows at once, marked pending", func(t *testing.T) {
		if s := b.Note(t, first); !s.Has("note-pending") || s.Body != "first, edited twice" {
			t.Errorf("the edited note shows %+v", s)
		}
		if s := b.Note(t, second); !s.Has("note-pending") || !s.Has("note-pending-delete") {
			t.Errorf("the deleted note shows %+v", s)
		}
		if !bt.Eval[bool](t, b, `(() => { const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented; })()`) {
			t.Error("leaving the page with pending writes does not ask")
		}
	})

	b.Navigate(t, node.URL+"/") // a reload with the node still down
	b.WaitNotesPage(t)
	t.Run("a reload with the node down keeps every pending change", func(t *testing.T) {
		checkPendingShown(t, b, 5, 4, "offline two", "offline one", "second", "first, edited twice")
	})

	node.Start(t)
	b.WaitConnected(t)
	b.WaitFor(t, 20*time.Second, "every pending change to be sent", allSent)

	t.Run("every change lands once, in order", func(t *testing.T) {
		checkLandedOnce(t, node.URL, cookie, first)
	})

	t.Run("both tabs show them", func(t *testing.T) {
		want, _ := json.Marshal([]string{"offline two", "offline one", "first, edited twice"})
		for _, tab := range []*bt.Tab{b, a} {
			tab.WaitFor(t, 20*time.Second, "the changes made offline", shownJSON+` === `+bt.JSString(string(want)))
		}
	})
}

func TestBrowserOpensOffline(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a := bt.OpenTab(t, browser, "tab A", "")
	bt.SignUp(t, a, node.URL, "piper")
	a.WaitConnected(t)
	cookie := a.CookieHeader(t, node.URL)
	waitControlled(t, a)
	t.Run("the worker keeps one cache, named after the release", func(t *testing.T) {
		_, sw := apitest.New(t, node.URL).Do("GET", "/sw.js", "", "")
		m := regexp.MustCompile(`^self\.RELEASE = "([0-9a-f]+)";`).FindStringSubmatch(sw)
		if m == nil {
			t.Fatalf("/sw.js begins %.100q", sw)
		}
		if got := bt.Eval[[]string](t, a, `caches.keys()`, chromedp.EvalAwaitPromise); !slices.Equal(got, []string{"notesync-" + m[1]}) {
			t.Errorf("the caches are %q, want only notesync-%s", got, m[1])
		}
	})
	// Written after the page was kept: only the list kept in IndexedDB has it.
	seen := bt.CreateNote(t, a, "seen before the network went").ID
	a.WaitFor(t, 5*time.Second, "the note", bt.HasNote(seen))
	time.Sleep(500 * time.Millisecond) // the list is kept 300 ms after a swap

	node.Stop(t)
	c := bt.OpenTab(t, browser, "tab C", node.URL+"/")
	acceptLeaving(t, c)
	c.WaitNotesPage(t)

	t.Run("/ opens with no network and shows the notes as last seen", func(t *testing.T) {
		if got := bodiesShown(t, c); !slices.Equal(got, []string{"seen before the network went"}) {
			t.Errorf("the page opened offline shows %q", got)
			t.Logf("kept: %s", bt.Eval[string](t, c, `new Promise((ok) => { const r = indexedDB.open('notesync'); r.onsuccess = () => { const q = r.result.transaction('lastseen').objectStore('lastseen').getAll(); q.onsuccess = () => ok(JSON.stringify(q.result) + ' page v' + document.body.dataset.version + ' user ' + document.body.dataset.user); }; })`, chromedp.EvalAwaitPromise))
		}
	})

	t.Run("the status line counts down, and presence claims no tabs", func(t *testing.T) {
		c.WaitFor(t, 10*time.Second, "a countdown", `/trying again in/.test(document.querySelector('#conn-status').textContent)`)
		c.WaitFor(t, 15*time.Second, "a wait of several seconds", `/trying again in [2-9] seconds/.test(document.querySelector('#conn-status').textContent)`)
		from := bt.Eval[string](t, c, `document.querySelector('#conn-status').textContent`)
		c.WaitFor(t, 3*time.Second, "the countdown to move", `document.querySelector('#conn-status').textContent !== `+bt.JSString(from)+` && !/Reconnecting/.test(document.querySelector('#conn-status').textContent)`)
		if tabs := bt.Eval[string](t, a, `document.querySelector('#presence').dataset.tabs`); tabs != "" {
			t.Errorf("tab A, offline, claims %q tabs", tabs)
		}
	})

	submitNote(t, c, "written with no network")
	c.WaitFor(t, 5*time.Second, "the new note, pending", pendingCount+` === 1 && !!document.querySelector('#notes-list .note-pending')`)

	t.Run("a log-out with pending writes asks first", func(t *testing.T) {
		c.Click(t, `#logout-form button[type=submit]`)
		c.WaitFor(t, 5*time.Second, "the question", `!!document.querySelector('#logout-ask [data-action=logout-stay]')`)
		c.Click(t, `#logout-ask [data-action=logout-stay]`)
		c.WaitFor(t, 5*time.Second, "the question to go, and the write to stay", `!document.querySelector('#logout-ask') && `+pendingCount+` === 1`)
	})

	node.Start(t)
	c.WaitConnected(t)
	c.WaitFor(t, 20*time.Second, "the note to be sent", allSent)
	t.Run("the note written offline lands once", func(t *testing.T) {
		var n int
		for _, note := range serverNotes(t, node.URL, cookie) {
			if note.Body == "written with no network" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the server holds the note written offline %d times, want once", n)
		}
	})

	t.Run("leaving the page with a note half written asks first", func(t *testing.T) {
		const leaving = `(() => { const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented; })()`
		if bt.Eval[bool](t, c, leaving) {
			t.Error("leaving asks with nothing unsent")
		}
		c.Exec(t, `document.querySelector('#note-form textarea').value = 'half written'`)
		if !bt.Eval[bool](t, c, leaving) {
			t.Error("leaving with a note half written does not ask")
		}
		c.Exec(t, `document.querySelector('#note-form textarea').value = ''`)
	})

	t.Run("another user on the same browser sees nothing of the first", func(t *testing.T) {
		c.Click(t, `#logout-form button[type=submit]`)
		c.WaitFor(t, 10*time.Second, "the log-in page", `location.pathname === '/login'`)
		bt.SignUp(t, c, node.URL, "quinn")
		c.WaitConnected(t)
		time.Sleep(500 * time.Millisecond)
		node.Stop(t)
		d := bt.OpenTab(t, browser, "tab D", node.URL+"/")
		d.WaitNotesPage(t)
		if got := bodiesShown(t, d); len(got) != 0 {
			t.Errorf("quinn's page, opened offline, shows %q", got)
		}
		if user := bt.Eval[string](t, d, `document.querySelector('.username').title`); user != "Logged in as quinn" {
			t.Errorf("the page opened offline is %q's", user)
		}
		node.Start(t)
	})
}

// cuttableLink is a TCP relay to a node, on another port of the node's
// own loopback address (so the browser sends it the node's cookies),
// which the test can cut (every connection through it closed, new ones
// closed at once: the tab is offline while the node runs on) and mend.
type cuttableLink struct {
	URL string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func newCuttableLink(t *testing.T, target string) *cuttableLink {
	t.Helper()
	addr := strings.TrimPrefix(target, "http://")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	link := &cuttableLink{URL: "http://" + l.Addr().String(), conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		link.Cut()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				link.relay(c, addr)
			}()
		}
	}()
	return link
}

func (l *cuttableLink) relay(c net.Conn, addr string) {
	defer c.Close()
	up, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer up.Close()
	if !l.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	l.untrack(c, up)
}

func (l *cuttableLink) track(cs ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return false
	}
	for _, c := range cs {
		l.conns[c] = true
	}
	return true
}

func (l *cuttableLink) untrack(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		delete(l.conns, c)
	}
}

// Cut closes every connection through the link and refuses new ones.
func (l *cuttableLink) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
}

// Mend lets connections through again.
func (l *cuttableLink) Mend() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
}

func TestBrowserOfflineWriteRefusedStaysOnItsNote(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	link := newCuttableLink(t, node.URL)
	b := bt.OpenTab(t, browser, "tab B", "")
	bt.SignUp(t, b, link.URL, "rowan")
	b.WaitConnected(t)
	cookie := b.CookieHeader(t, link.URL)
	shared := bt.CreateNote(t, b, "shared").ID
	doomed := bt.CreateNote(t, b, "doomed").ID
	b.WaitFor(t, 5*time.Second, "both notes", bt.HasNote(shared)+` && `+bt.HasNote(doomed))

	link.Cut()
	b.WaitFor(t, 10*time.Second, "the tab to notice it is offline", `document.querySelector('#conn-status').dataset.state !== 'open'`)
	b.EditNote(t, shared, "mine")
	b.SaveNote(t, shared)
	b.EditNote(t, doomed, "mine too")
	b.SaveNote(t, doomed)
	b.WaitFor(t, 5*time.Second, "two changes to wait", pendingCount+` === 2`)

	// Meanwhile, elsewhere: one note changed, the other deleted.
	api := apitest.New(t, node.URL)
	if resp, body := api.Do("PATCH", fmt.Sprintf("/api/notes/%d", shared), "application/json", `{"body":"theirs"}`, "Cookie", cookie); resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH elsewhere: %d %s", resp.StatusCode, body)
	}
	if resp, body := api.Do("DELETE", fmt.Sprintf("/api/notes/%d", doomed), "", "", "Cookie", cookie); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE elsewhere: %d %s", resp.StatusCode, body)
	}

	link.Mend()
	b.WaitConnected(t)
	t.Run("a write refused for good stays on its note, in words, with a way out", func(t *testing.T) {
		s := b.WaitNote(t, shared, 20*time.Second, "the refused edit", func(s bt.NoteState) bool { return s.Has("note-failed") })
		if s.Body != "mine" || s.Buttons["keep-mine"] == "" || s.Buttons["take-theirs"] == "" {
			t.Errorf("the edit over a changed note shows %+v", s)
		}
		s = b.WaitNote(t, doomed, 20*time.Second, "the refused edit", func(s bt.NoteState) bool { return s.Has("note-failed") })
		if s.Body != "mine too" || s.Buttons["save-as-new"] == "" || s.Buttons["pending-discard"] == "" {
			t.Errorf("the edit of a deleted note shows %+v", s)
		}
		if n := bt.Eval[int](t, b, pendingCount); n != 2 {
			t.Errorf("%d changes wait, want the 2 refused ones", n)
		}
	})

	t.Run("keeping them saves them: over the other text, and as a new note", func(t *testing.T) {
		b.ClickNote(t, shared, "keep-mine")
		b.ClickNote(t, doomed, "save-as-new")
		b.WaitFor(t, 20*time.Second, "nothing to wait", allSent)
		var bodies []string
		for _, n := range serverNotes(t, node.URL, cookie) {
			bodies = append(bodies, n.Body)
		}
		if want := []string{"mine too", "mine"}; !slices.Equal(bodies, want) {
			t.Errorf("the server holds %q, want %q", bodies, want)
		}
	})
}

func TestBrowserOfflineQueueThroughReplica(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	c := startCluster(t, 3)
	link := newCuttableLink(t, c.URL(3)) // tab B reaches node3, a replica, through it
	a, b := bt.TwoTabs(t, browser, "sage", c.URL(1), link.URL)
	cookie := b.CookieHeader(t, c.URL(1))
	kept := bt.CreateNote(t, b, "kept").ID
	a.WaitFor(t, 10*time.Second, "the note on node1", bt.HasNote(kept))
	b.WaitFor(t, 10*time.Second, "the note on node3", bt.HasNote(kept))

	link.Cut()
	b.WaitFor(t, 10*time.Second, "the tab to notice it is offline", `document.querySelector('#conn-status').dataset.state !== 'open'`)
	submitNote(t, b, "from a replica, offline")
	b.WaitFor(t, 5*time.Second, "the new note, pending, above the other", pendingCount+` === 1 && `+bt.HasNote(kept))
	b.EditNote(t, kept, "kept, edited offline")
	b.SaveNote(t, kept)
	b.WaitFor(t, 5*time.Second, "two changes to wait", pendingCount+` === 2`)

	link.Mend()
	b.WaitConnected(t)
	b.WaitFor(t, 30*time.Second, "every pending change to be sent", allSent)

	t.Run("the queue flushed through a replica lands once, in order", func(t *testing.T) {
		notes := serverNotes(t, c.URL(1), cookie)
		var bodies []string
		for _, n := range notes {
			bodies = append(bodies, n.Body)
		}
		if want := []string{"from a replica, offline", "kept, edited offline"}; !slices.Equal(bodies, want) {
			t.Fatalf("the primary holds %q, want %q", bodies, want)
		}
		if notes[1].Rev != 2 {
			t.Errorf("the edited note is at rev %d, want 2 (one edit, once)", notes[1].Rev)
		}
	})

	t.Run("the tab on the primary shows them", func(t *testing.T) {
		want, _ := json.Marshal([]string{"from a replica, offline", "kept, edited offline"})
		a.WaitFor(t, 20*time.Second, "the changes made offline on node3", shownJSON+` === `+bt.JSString(string(want)))
	})
}
