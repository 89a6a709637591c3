package browsertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

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
