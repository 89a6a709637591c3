package e2e

// The page as a person meets it (docs/PROTOCOL.md §5, §9), in Chromium on
// a desktop screen (1280×900) and a phone's (375×812, touch, no mouse):
// by keyboard alone, through axe-core's accessibility rules, and as laid
// out. Every view is saved as a screenshot at both widths in the test's
// artifact folder (go test -artifacts -outputdir DIR keeps them), so a
// failed run shows what the page looked like.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	bt "notesync/internal/browsertest"
)

func TestBrowserPage(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)

	t.Run("by keyboard alone: sign up, add, edit, delete and undo, the focus where one types next", func(t *testing.T) {
		checkKeyboardOnly(t, bt.OpenTab(t, browser, "keyboard tab", "", chromedp.WithNewBrowserContext()), node.URL)
	})

	// One user's tab in a browser context of its own, in front from now on.
	tab := bt.OpenTab(t, browser, "tab", "", chromedp.WithNewBrowserContext())
	notes := checkViews(t, tab, node.URL)
	checkLayout(t, tab, node.URL, notes)
}

// viewNotes are the notes checkViews leaves in the list.
type viewNotes struct{ short, long int64 }

const longNote = "A long note.\n" +
	"Line 2\nLine 3\nLine 4\nLine 5\nLine 6\nLine 7\nLine 8\nLine 9\nLine 10\n" +
	"Line 11\nLine 12\nLine 13\nLine 14\nLine 15\nLine 16\nLine 17\nLine 18\nThe last line."

// checkViews signs up in tab and looks at every view of the page: log-in
// and sign-up (also with an error), the notes (also with an editor open, a
// conflict and an Undo), the assistant, and both again in the dark.
func checkViews(t *testing.T, tab *bt.Tab, base string) viewNotes {
	var n viewNotes
	t.Run("accessibility of every view, at both widths, and a screenshot of each", func(t *testing.T) {
		tab.Navigate(t, base+"/login")
		bt.Look(t, tab, "log-in page")
		tab.Exec(t, `(() => {
			const f = document.querySelector('#login-form');
			f.username.value = 'nobody'; f.password.value = 'not the password';
			f.requestSubmit();
		})()`)
		tab.WaitFor(t, 10*time.Second, "the log-in error", `!!document.querySelector('#form-error')`)
		bt.Look(t, tab, "log-in page with an error")
		tab.Navigate(t, base+"/signup")
		bt.Look(t, tab, "sign-up page")

		bt.SignUp(t, tab, base, "grace")
		tab.WaitConnected(t)
		n.short = bt.CreateNote(t, tab, "Buy oat milk").ID
		n.long = bt.CreateNote(t, tab, longNote).ID
		id := bt.CreateNote(t, tab, "Call the plumber about the kitchen sink").ID
		tab.WaitFor(t, 5*time.Second, "the notes", bt.HasNote(id))
		bt.Look(t, tab, "notes page")

		tab.EditNote(t, id, "Call the plumber on Monday")
		bt.Look(t, tab, "notes page with an editor open")

		// Another tab saves first (a PATCH at the revision shown), then this
		// one saves over it: the conflict.
		status := bt.Eval[int](t, tab, fmt.Sprintf(`fetch('/api/notes/%d', {method: 'PATCH',
			headers: {'Content-Type': 'application/json', 'If-Match': '"1"'},
			body: JSON.stringify({body: 'Call the plumber today'})}).then((r) => r.status)`, id), chromedp.EvalAwaitPromise)
		if status != 200 {
			t.Fatalf("PATCH from elsewhere: %d", status)
		}
		tab.WaitNote(t, id, 5*time.Second, "note-changed-elsewhere", func(s bt.NoteState) bool { return s.Has("note-changed-elsewhere") })
		tab.ClickNote(t, id, "edit-save")
		tab.WaitNote(t, id, 10*time.Second, "the conflict", func(s bt.NoteState) bool { return s.Buttons["keep-mine"] != "" })
		bt.Look(t, tab, "notes page with a conflict shown")
		tab.ClickNote(t, id, "take-theirs")

		tab.ClickNote(t, id, "delete")
		tab.WaitFor(t, 5*time.Second, "Undo", `!!document.querySelector('#undo-bar [data-action="undo"]')`)
		tab.WaitFor(t, 5*time.Second, "the deleted note to go", `!`+bt.HasNote(id))
		bt.Look(t, tab, "notes page with Undo")

		tab.Navigate(t, base+"/assistant")
		askAssistant(t, tab, "create a note to water the plants")
		tab.WaitFor(t, 10*time.Second, "the assistant's note in the list", noteWithBody("water the plants"))
		bt.Look(t, tab, "assistant page")

		tab.EmulateMedia(t, "prefers-color-scheme", "dark")
		bt.Look(t, tab, "assistant page, dark")
		tab.Navigate(t, base+"/")
		tab.WaitConnected(t)
		bt.Look(t, tab, "notes page, dark")
		tab.EmulateMedia(t, "prefers-color-scheme", "")
	})
	return n
}

// noteWithBody is a JavaScript condition: the list has a note whose text
// is body.
func noteWithBody(body string) string {
	return `[...document.querySelectorAll('#notes-list [data-note-id] .note-body')].some((e) => e.textContent === ` + bt.JSString(body) + `)`
}

// askAssistant asks the assistant page in tab, as a person types and
// presses Send, and waits for the answer to end.
func askAssistant(t *testing.T, tab *bt.Tab, message string) {
	t.Helper()
	tab.WaitFor(t, 15*time.Second, "the assistant page",
		`location.pathname === '/assistant' && document.readyState === 'complete' && !!window.notesyncAssistant && !!window.notesync`)
	tab.Exec(t, `document.querySelector('#assistant-message').focus()`)
	tab.Press(t, message)
	tab.Press(t, bt.KeyEnter)
	tab.WaitFor(t, 5*time.Second, "the answer to start", `window.notesyncAssistant.events.length > 0`)
	tab.WaitFor(t, 15*time.Second, "the answer to end", `!window.notesyncAssistant.running`)
}

// checkKeyboardOnly signs up, adds, edits, deletes and undoes a note in
// tab with keys alone, checking at each step that the focus is where a
// person would go on from.
func checkKeyboardOnly(t *testing.T, tab *bt.Tab, base string) {
	tab.Navigate(t, base+"/signup")
	tab.WaitFocus(t, 5*time.Second, "the username (autofocus)", `el.id === 'username'`)
	tab.Press(t, "kim")
	tab.Press(t, bt.KeyTab)
	tab.WaitFocus(t, time.Second, "the password", `el.id === 'password'`)
	tab.Press(t, bt.Password)
	tab.Press(t, bt.KeyEnter)
	tab.WaitNotesPage(t)
	tab.WaitConnected(t)

	// Add: from the top of the page to the note's text, and Ctrl+Enter.
	tab.TabTo(t, "the new note's text", `el.id === 'note-body'`, 10)
	tab.Press(t, "Typed, never clicked")
	tab.Press(t, bt.KeyEnter, chromedp.ModifierCtrl)
	tab.WaitFor(t, 5*time.Second, "the note in the list", noteWithBody("Typed, never clicked"))
	id := bt.Eval[int64](t, tab, `Number(document.querySelector('#notes-list [data-note-id]').dataset.noteId)`)
	tab.WaitFor(t, 5*time.Second, "the form to be empty again", `document.querySelector('#note-body').value === ''`)
	tab.WaitFocus(t, time.Second, "the new note's text, to write the next one", `el.id === 'note-body'`)

	// Add once more, by the button this time: the focus comes back.
	tab.Press(t, "A second note")
	tab.TabTo(t, "Add note", `el.matches('#note-form button[type=submit]')`, 3)
	tab.Press(t, bt.KeyEnter)
	tab.WaitFor(t, 5*time.Second, "the second note", noteWithBody("A second note"))
	tab.WaitFocus(t, 5*time.Second, "the new note's text, after Add note", `el.id === 'note-body'`)

	// Edit: Tab to the first note's Edit, Enter, type, Ctrl+Enter.
	edit := fmt.Sprintf(`el.matches('[data-note-id="%d"] [data-action=edit]')`, id)
	tab.TabTo(t, "Edit of the first note", edit, 12)
	if name := bt.Eval[string](t, tab, `document.activeElement.getAttribute('aria-label')`); !strings.Contains(name, "Typed, never clicked") {
		t.Errorf("Edit is named %q, which does not say which note", name)
	}
	tab.Press(t, bt.KeyEnter)
	tab.WaitFocus(t, 2*time.Second, "the editor's text", fmt.Sprintf(`el.matches('[data-note-id="%d"] .note-edit textarea')`, id))
	tab.Press(t, " and edited")
	tab.Press(t, bt.KeyEnter, chromedp.ModifierCtrl)
	tab.WaitNote(t, id, 5*time.Second, "the edit saved", func(s bt.NoteState) bool {
		return !s.Editing && s.Body == "Typed, never clicked and edited"
	})
	tab.WaitFocus(t, 2*time.Second, "the note's Edit again", edit)

	// Delete: the next control, Enter; then Undo has the focus.
	tab.TabTo(t, "Delete of the note", fmt.Sprintf(`el.matches('[data-note-id="%d"] [data-action=delete]')`, id), 1)
	tab.Press(t, bt.KeyEnter)
	tab.WaitFor(t, 5*time.Second, "the note to go", `!`+bt.HasNote(id))
	tab.WaitFocus(t, 5*time.Second, "Undo", fmt.Sprintf(`el.matches('#undo-bar [data-undo-id="%d"] [data-action=undo]')`, id))

	// Undo: Enter brings the note back, with the focus on it.
	tab.Press(t, bt.KeyEnter)
	tab.WaitNote(t, id, 5*time.Second, "the note back", func(s bt.NoteState) bool {
		return s.Exists && !s.Has("note-leaving") && s.Body == "Typed, never clicked and edited"
	})
	tab.WaitFocus(t, 5*time.Second, "the restored note's Edit", edit)
	if _, body, _ := tab.ServerNote(t, id); body != "Typed, never clicked and edited" {
		t.Errorf("the server has %q", body)
	}
	tab.Screenshot(t, "after keyboard only")
}

// checkLayout checks what a person sees of the layout on both screens, in
// tab, signed in with the notes n.
func checkLayout(t *testing.T, tab *bt.Tab, base string, n viewNotes) {
	t.Run("the navigation and the account are in view at every width, apart from each other", func(t *testing.T) {
		checkHeader(t, tab, base)
	})
	t.Run("on a phone every control is at least 44 px each way, and no keyboard shortcut is offered", func(t *testing.T) {
		checkTouch(t, tab, base)
	})
	t.Run("the assistant's placeholder is whole on a phone", func(t *testing.T) {
		tab.Navigate(t, base+"/assistant")
		tab.SetViewport(t, bt.Phone)
		fits := bt.Eval[bool](t, tab, `(() => {
			const ta = document.querySelector('#assistant-message');
			ta.value = ta.placeholder;
			const fits = ta.scrollHeight <= ta.clientHeight && ta.scrollWidth <= ta.clientWidth;
			ta.value = '';
			return fits;
		})()`)
		if !fits {
			t.Error("the placeholder of #assistant-message does not fit its box on a phone")
		}
		tab.SetViewport(t, bt.Desktop)
	})
	t.Run("a long note shows its first lines and Show more, which the keyboard reaches", func(t *testing.T) {
		checkClamp(t, tab, base, n)
	})
	t.Run("on one node, the cluster panel is one quiet line", func(t *testing.T) {
		tab.Navigate(t, base+"/")
		tab.WaitFor(t, 10*time.Second, "the cluster panel", `!document.querySelector('#cluster-panel').hidden`)
		p := bt.Eval[struct {
			Text   string
			Tables int
		}](t, tab, `({text: document.querySelector('#cluster-panel').innerText.trim(), tables: document.querySelectorAll('#cluster-panel table').length})`)
		if p.Tables != 0 || !strings.Contains(strings.ToLower(p.Text), "single node") || strings.Contains(p.Text, "\n") {
			t.Errorf("the panel of a single node shows %d tables and %q, want one line saying single node", p.Tables, p.Text)
		}
	})
	t.Run("the event log is folded away on the notes page and open on the assistant's, under one name", func(t *testing.T) {
		checkEventLogs(t, tab, base)
	})
	t.Run("where motion is reduced, glow and fade are a colour change on the same timers", func(t *testing.T) {
		checkReducedMotion(t, tab, base)
	})
}

// checkHeader checks, on the notes and the assistant page at both widths,
// that the navigation is in view and the header's parts do not touch.
func checkHeader(t *testing.T, tab *bt.Tab, base string) {
	for _, path := range []string{"/", "/assistant"} {
		tab.Navigate(t, base+path)
		for _, sc := range bt.Screens {
			tab.SetViewport(t, sc)
			bad := bt.Eval[[]string](t, tab, `(() => {
				const bad = [];
				const box = (sel) => document.querySelector(sel).getBoundingClientRect();
				for (const a of document.querySelectorAll('.nav a')) {
					const r = a.getBoundingClientRect();
					if (!a.checkVisibility() || r.left < 0 || r.right > innerWidth || r.top < 0 || r.bottom > innerHeight) bad.push(a.textContent + ' is not in view');
				}
				const parts = ['.brand', '.nav', '.account'].map((s) => [s, box(s)]);
				for (let i = 0; i < parts.length; i++) for (let j = i + 1; j < parts.length; j++) {
					const [a, ra] = parts[i], [b, rb] = parts[j];
					const apart = ra.right + 8 <= rb.left || rb.right + 8 <= ra.left || ra.bottom + 4 <= rb.top || rb.bottom + 4 <= ra.top;
					if (!apart) bad.push(a + ' and ' + b + ' touch');
				}
				return bad;
			})()`)
			if len(bad) > 0 {
				t.Errorf("%s on the %s: %v", path, sc.Name, bad)
			}
		}
		tab.SetViewport(t, bt.Desktop)
	}
}

// checkTouch checks the tap targets and keyboard hints of the notes and
// assistant pages on a phone, and that a desktop names its shortcuts.
func checkTouch(t *testing.T, tab *bt.Tab, base string) {
	for _, path := range []string{"/", "/assistant"} {
		tab.Navigate(t, base+path)
		tab.SetViewport(t, bt.Phone)
		small := bt.Eval[[]string](t, tab, `[...document.querySelectorAll('button, .nav a, summary, [tabindex="0"]')]
			.filter((el) => el.checkVisibility())
			.map((el) => [el, el.getBoundingClientRect()])
			.filter(([, r]) => r.width < 44 || r.height < 44)
			.map(([el, r]) => (el.getAttribute('aria-label') || el.textContent).trim() + ' ' + Math.round(r.width) + '×' + Math.round(r.height))`)
		if len(small) > 0 {
			t.Errorf("%s on a phone: tap targets under 44 px: %v", path, small)
		}
		if hints := bt.Eval[[]string](t, tab, `[...document.querySelectorAll('.kbd-hint, textarea')].filter((el) => el.checkVisibility() && /Ctrl|Enter/.test(el.textContent + (el.placeholder || ''))).map((el) => el.textContent + el.placeholder)`); len(hints) > 0 {
			t.Errorf("%s on a phone shows keyboard shortcuts: %v", path, hints)
		}
		tab.SetViewport(t, bt.Desktop)
		if !bt.Eval[bool](t, tab, `[...document.querySelectorAll('.kbd-hint')].some((el) => el.checkVisibility())`) {
			t.Errorf("%s on a desktop names no keyboard shortcut", path)
		}
	}
}

// checkEventLogs checks that #event-log is folded away on the notes page,
// open on the assistant's, and named alike.
func checkEventLogs(t *testing.T, tab *bt.Tab, base string) {
	tab.Navigate(t, base+"/")
	tab.WaitConnected(t)
	log := bt.Eval[struct {
		Folded, Shown bool
		Name          string
		Hello         int
	}](t, tab, `(() => {
		const log = document.querySelector('#event-log');
		const d = log.closest('details');
		return {folded: !!d && !d.open, shown: log.checkVisibility(), name: d ? d.querySelector('summary').firstChild.textContent.trim() : '',
			hello: log.querySelectorAll('[data-type="hello"]').length};
	})()`)
	if !log.Folded || log.Shown || log.Hello == 0 {
		t.Errorf("notes page: the event log is folded %v, shown %v, with %d hello", log.Folded, log.Shown, log.Hello)
	}
	tab.Navigate(t, base+"/assistant")
	tab.WaitConnected(t)
	name := bt.Eval[string](t, tab, `document.querySelector('#events-title').textContent.trim()`)
	if name != log.Name || name != "Event log" {
		t.Errorf("the logs are named %q (notes) and %q (assistant), want Event log on both", log.Name, name)
	}
	if !bt.Eval[bool](t, tab, `document.querySelector('#event-log').checkVisibility()`) {
		t.Error("the assistant's event log is not shown")
	}
	if n := bt.Eval[int](t, tab, `document.querySelectorAll('#event-log [data-type="hello"], #event-log [data-type="note_changed"]').length`); n != 0 {
		t.Errorf("the assistant's event log lists %d real-time events", n)
	}
}

// checkClamp checks the long note n.long in tab: clamped, with Show more
// (aria-expanded, keyboard), on both screens; the short one is whole.
func checkClamp(t *testing.T, tab *bt.Tab, base string, n viewNotes) {
	tab.Navigate(t, base+"/")
	tab.WaitConnected(t)
	sel := bt.NoteSelector(n.long)
	more := sel + ` [data-action="expand"]`
	type clamp struct {
		Clamped       bool
		Shown, Whole  float64
		Expanded      string
		Label         string
		ShortHasMore  bool
		ControlsShown bool
	}
	state := func() clamp {
		return bt.Eval[clamp](t, tab, `(() => {
			const el = document.querySelector(`+bt.JSString(sel)+`), body = el.querySelector('.note-body');
			const more = el.querySelector('[data-action="expand"]');
			return {clamped: el.classList.contains('note-clamped'), shown: body.clientHeight, whole: body.scrollHeight,
				expanded: more ? more.getAttribute('aria-expanded') : '', label: more ? more.getAttribute('aria-label') : '',
				shortHasMore: !!document.querySelector(`+bt.JSString(bt.NoteSelector(n.short)+` [data-action="expand"]`)+`),
				controlsShown: more ? document.getElementById(more.getAttribute('aria-controls')) === body : false};
		})()`)
	}
	for _, sc := range bt.Screens {
		tab.SetViewport(t, sc)
		s := state()
		if !s.Clamped || s.Shown >= s.Whole || s.Expanded != "false" || !s.ControlsShown || s.ShortHasMore {
			t.Fatalf("%s: the long note is not clamped with Show more: %+v", sc.Name, s)
		}
		if !strings.HasPrefix(s.Label, "Show more") || !strings.Contains(s.Label, "A long note") {
			t.Errorf("%s: Show more is named %q", sc.Name, s.Label)
		}
		// By keyboard: from the note's Edit back to Show more, and Enter.
		tab.Exec(t, `document.querySelector(`+bt.JSString(sel+` [data-action="edit"]`)+`).focus()`)
		tab.Press(t, bt.KeyTab, chromedp.ModifierShift)
		tab.WaitFocus(t, time.Second, "Show more", `el.matches(`+bt.JSString(more)+`)`)
		tab.Press(t, bt.KeyEnter)
		s = state()
		if s.Expanded != "true" || s.Shown < s.Whole || !strings.HasPrefix(s.Label, "Show less") {
			t.Errorf("%s: after Show more: %+v", sc.Name, s)
		}
		tab.Screenshot(t, "long note shown whole-"+sc.Name)
		tab.Press(t, bt.KeyEnter)
		if s = state(); s.Expanded != "false" || s.Shown >= s.Whole {
			t.Errorf("%s: after Show less: %+v", sc.Name, s)
		}
	}
	tab.SetViewport(t, bt.Desktop)
}

// checkReducedMotion checks, in tab and a second tab of its user, both
// with prefers-reduced-motion, that a note from elsewhere changes colour
// without a glow, a deleted one without a fade, and that note-flash and
// note-leaving keep their times.
func checkReducedMotion(t *testing.T, tab *bt.Tab, base string) {
	other := bt.OpenTab(t, tab.Ctx, "second tab", base+"/")
	for _, tb := range []*bt.Tab{tab, other} {
		tb.Navigate(t, base+"/")
		tb.WaitNotesPage(t)
		tb.WaitConnected(t)
		tb.EmulateMedia(t, "prefers-reduced-motion", "reduce")
		tb.RecordList(t)
	}
	// The style each class has, read while it is on.
	tab.Exec(t, `window.__styles = [];
		new MutationObserver((ms) => { for (const m of ms) {
			const el = m.target, cs = getComputedStyle(el);
			if (el.classList.contains('note-flash') || el.classList.contains('note-leaving'))
				window.__styles.push({cls: el.className, shadow: cs.boxShadow, opacity: cs.opacity, transition: cs.transitionProperty});
		}}).observe(document.querySelector('#notes-list'), {subtree: true, attributes: true, attributeFilter: ['class']});`)
	// The times, not the speed (the other browser tests hold that): the
	// glow lasts 1.5 s, the fade 300 ms.
	id := bt.CreateNote(t, other, "Seen without motion").ID
	tab.WaitFor(t, 5*time.Second, "the note from the second tab", bt.HasNote(id))
	tab.WaitFor(t, 10*time.Second, "the glow to end", `!document.querySelector(`+bt.JSString(bt.NoteSelector(id))+`).classList.contains('note-flash')`)
	evs := tab.Events(t, id)
	on, ok := bt.GlowStart(evs)
	off, ok2 := bt.Find(evs, "note-flash off")
	if !ok || !ok2 || off.T-on.T < 1500 {
		t.Errorf("with reduced motion, note-flash did not last 1.5 s (events %+v)", evs)
	}
	other.ClickNote(t, id, "delete")
	bt.ExpectFadeOut(t, id, other, tab)
	styles := bt.Eval[[]struct{ Cls, Shadow, Opacity, Transition string }](t, tab, `window.__styles`)
	if len(styles) == 0 {
		t.Fatal("no style recorded while note-flash or note-leaving was on")
	}
	for _, s := range styles {
		if s.Shadow != "none" || s.Opacity != "1" || strings.Contains(s.Transition, "opacity") || strings.Contains(s.Transition, "box-shadow") {
			t.Errorf("with reduced motion, a note with classes %q has box-shadow %q, opacity %s, transitions %q", s.Cls, s.Shadow, s.Opacity, s.Transition)
		}
	}
	for _, tb := range []*bt.Tab{tab, other} {
		tb.EmulateMedia(t, "prefers-reduced-motion", "")
	}
}
