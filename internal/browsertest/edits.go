package browsertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// CheckEditsAreNeverLost runs the two-tab scenarios of docs/PROTOCOL.md §6
// on tabs a and b of one user (connected, recording their lists: see
// TwoTabs), on one node or on two: both tabs edit one note, a note is
// deleted under an open editor, and a delete is undone. Whatever happens,
// no text a user typed or saved disappears without the user seeing it and
// choosing it.
func CheckEditsAreNeverLost(t *testing.T, a, b *Tab) {
	t.Run("both tabs edit one note: neither text is lost, and the conflict shows both", func(t *testing.T) { checkConflict(t, a, b) })
	t.Run("a delete under an open editor keeps the draft, and save-as-new keeps it as a note", func(t *testing.T) { checkDeletedUnderEditor(t, a, b) })
	t.Run("undo in one tab brings the note back in the other with the same id", func(t *testing.T) { checkUndo(t, a, b) })
}

// checkConflict: both tabs edit one note; each sees the other's text, a
// save over it shows both, and keep-mine and take-theirs do what they say.
func checkConflict(t *testing.T, a, b *Tab) {
	id := CreateNote(t, b, "Shared note, as first written").ID
	a.WaitFor(t, 5*time.Second, "the new note", HasNote(id))

	a.EditNote(t, id, "Tab A's words, typed while B edits")
	b.EditNote(t, id, "Tab B's words, saved first")
	b.SaveNote(t, id)

	// A sees B's text beside its own draft, before it saves anything.
	s := a.WaitNote(t, id, 5*time.Second, "note-changed-elsewhere with B's text", func(s NoteState) bool {
		return s.Has("note-changed-elsewhere") && s.Body == "Tab B's words, saved first"
	})
	if !s.Editing || s.Draft != "Tab A's words, typed while B edits" {
		t.Fatalf("tab A: its draft changed under it: %+v", s)
	}

	a.ClickNote(t, id, "edit-save")
	s = a.WaitNote(t, id, 10*time.Second, "the conflict after saving over a newer revision", func(s NoteState) bool {
		return s.Buttons["keep-mine"] != "" && s.Buttons["take-theirs"] != ""
	})
	if s.Body != "Tab B's words, saved first" || s.Draft != "Tab A's words, typed while B edits" {
		t.Fatalf("tab A: the conflict does not show both texts: %+v", s)
	}
	checkDistinctNames(t, a.Name, s.Buttons)
	if _, body, rev := a.ServerNote(t, id); body != "Tab B's words, saved first" || rev != 2 {
		t.Fatalf("the refused save changed the note: %q at rev %d", body, rev)
	}

	a.ClickNote(t, id, "keep-mine")
	s = a.WaitNote(t, id, 10*time.Second, "keep-mine to save A's text", func(s NoteState) bool { return !s.Editing })
	if s.Body != "Tab A's words, typed while B edits" || s.Rev != 3 || s.Has("note-changed-elsewhere") {
		t.Fatalf("tab A after keep-mine: %+v", s)
	}
	b.WaitNote(t, id, 5*time.Second, "A's kept text", func(s NoteState) bool {
		return s.Body == "Tab A's words, typed while B edits" && s.Rev == 3
	})

	// The other way round: take-theirs drops the draft, by choice.
	b.EditNote(t, id, "Tab B's second draft")
	a.EditNote(t, id, "Tab A's second words")
	a.SaveNote(t, id)
	b.WaitNote(t, id, 5*time.Second, "note-changed-elsewhere", func(s NoteState) bool { return s.Has("note-changed-elsewhere") })
	b.ClickNote(t, id, "edit-save")
	b.WaitNote(t, id, 10*time.Second, "the conflict", func(s NoteState) bool { return s.Buttons["take-theirs"] != "" })
	b.ClickNote(t, id, "take-theirs")
	s = b.WaitNote(t, id, 5*time.Second, "take-theirs to close the editor", func(s NoteState) bool { return !s.Editing })
	if s.Body != "Tab A's second words" {
		t.Fatalf("tab B after take-theirs shows %q", s.Body)
	}
	if _, body, _ := b.ServerNote(t, id); body != "Tab A's second words" {
		t.Fatalf("take-theirs changed the note to %q", body)
	}
}

// checkDeletedUnderEditor: b deletes a note open in a's editor; a keeps
// its draft and saves it as a new note.
func checkDeletedUnderEditor(t *testing.T, a, b *Tab) {
	id := CreateNote(t, b, "A note B will delete").ID
	a.WaitFor(t, 5*time.Second, "the new note", HasNote(id))
	a.EditNote(t, id, "A's draft, which must survive")

	b.ClickNote(t, id, "delete")
	ExpectFadeOut(t, id, b)
	s := a.WaitNote(t, id, 5*time.Second, "note-deleted-elsewhere", func(s NoteState) bool { return s.Has("note-deleted-elsewhere") })
	if !s.Editing || s.Draft != "A's draft, which must survive" || s.Has("note-leaving") || s.Buttons["save-as-new"] == "" {
		t.Fatalf("tab A: the note deleted under its editor shows %+v", s)
	}

	a.ClickNote(t, id, "save-as-new")
	a.WaitFor(t, 5*time.Second, "the deleted note's editor to go", `!`+HasNote(id))
	for _, tab := range []*Tab{a, b} {
		tab.WaitFor(t, 5*time.Second, "the draft as a new note", `Array.from(document.querySelectorAll('#notes-list [data-note-id] .note-body'), (e) => e.textContent).includes("A's draft, which must survive")`)
	}
}

// checkUndo: b deletes a note and, after at least 10 s of Undo on screen,
// undoes it; both tabs show it again with its id, a with a glow.
func checkUndo(t *testing.T, a, b *Tab) {
	id := CreateNote(t, a, "Deleted, then undone").ID
	b.WaitFor(t, 5*time.Second, "the new note", HasNote(id))

	b.ClickNote(t, id, "delete")
	ExpectFadeOut(t, id, b, a)
	undo := JSString(fmt.Sprintf(`#undo-bar [data-undo-id="%d"] [data-action="undo"]`, id))
	b.WaitFor(t, 5*time.Second, "Undo", `!!document.querySelector(`+undo+`)`)
	shown := Eval[float64](t, b, `Date.now()`)
	// Undo stays at least 10 s.
	for Eval[float64](t, b, `Date.now()`)-shown < 10000 {
		if !Eval[bool](t, b, `!!document.querySelector(`+undo+`)`) {
			t.Fatalf("%s: Undo went away before 10 s", b.Name)
		}
		time.Sleep(250 * time.Millisecond)
	}
	name := Eval[string](t, b, `document.querySelector(`+undo+`).getAttribute('aria-label')`)
	if !strings.Contains(name, "Deleted, then undone") {
		t.Errorf("%s: Undo is named %q, which does not say which note", b.Name, name)
	}
	b.Click(t, fmt.Sprintf(`#undo-bar [data-undo-id="%d"] [data-action="undo"]`, id))
	for _, tab := range []*Tab{b, a} {
		s := tab.WaitNote(t, id, 5*time.Second, "the restored note, with the same id", func(s NoteState) bool { return s.Exists && !s.Has("note-leaving") })
		if s.Body != "Deleted, then undone" {
			t.Errorf("%s: the restored note says %q", tab.Name, s.Body)
		}
	}
	if _, ok := GlowStart(a.Events(t, id)[1:]); !ok {
		t.Errorf("%s: the restored note did not glow (events %+v)", a.Name, a.Events(t, id))
	}
}

// checkDistinctNames fails unless every control has a name of its own that
// says which note it acts on.
func checkDistinctNames(t *testing.T, tab string, buttons map[string]string) {
	t.Helper()
	seen := map[string]string{}
	for action, name := range buttons {
		if other, dup := seen[name]; dup {
			t.Errorf("%s: %s and %s share the accessible name %q", tab, action, other, name)
		}
		seen[name] = action
		if !strings.Contains(name, ":") {
			t.Errorf("%s: %s is named %q, which does not say which note", tab, action, name)
		}
	}
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
