package browsertest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Keys named for Press.
const (
	KeyTab    = kb.Tab
	KeyEnter  = kb.Enter
	KeyEscape = kb.Escape
)

// Press types keys into whatever has the focus, as a keyboard does: a key
// down, its character and a key up for each, through the browser's input
// pipeline, so the page's own focus handling and default actions (Tab
// moves the focus, Enter presses a button or submits a form) apply. With
// modifiers (chromedp.ModifierCtrl…) no characters are typed.
func (tb *Tab) Press(t testing.TB, keys string, modifiers ...chromedp.Modifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, 10*time.Second)
	defer cancel()
	var opts []chromedp.KeyOption
	if len(modifiers) > 0 {
		opts = append(opts, chromedp.KeyModifiers(modifiers...))
	}
	if err := chromedp.Do(ctx, chromedp.KeyEvent(keys, opts...)); err != nil {
		t.Fatalf("%s: press %q: %v", tb.Name, keys, err)
	}
}

// FocusJS is a JavaScript expression that describes the focused element
// for messages: its tag, id, data-action and the note it is in.
const FocusJS = `(() => {
	const el = document.activeElement;
	if (!el || el === document.body) return 'nothing (the page itself)';
	const note = el.closest('[data-note-id]');
	return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
		(el.dataset.action ? '[data-action=' + el.dataset.action + ']' : '') +
		(note ? ' in note ' + note.dataset.noteId : '') +
		' "' + (el.getAttribute('aria-label') || el.textContent || '').trim().slice(0, 60) + '"';
})()`

// Focus describes the focused element (see FocusJS).
func (tb *Tab) Focus(t testing.TB) string {
	t.Helper()
	return Eval[string](t, tb, FocusJS)
}

// TabTo presses Tab until the focused element, el in the JavaScript
// condition cond, is the one wanted, as a person moving through the page
// does, and fails the test if it takes more than max presses. It returns
// how many it took.
func (tb *Tab) TabTo(t testing.TB, what, cond string, max int) int {
	t.Helper()
	test := `((el) => !!el && !!(` + cond + `))(document.activeElement)`
	for n := 0; ; n++ {
		if Eval[bool](t, tb, test) {
			return n
		}
		if n == max {
			t.Fatalf("%s: %s not reached in %s presses of Tab; the focus is on %s", tb.Name, what, strconv.Itoa(max), tb.Focus(t))
		}
		tb.Press(t, KeyTab)
	}
}

// WaitFocus waits until the focused element, el in cond, is the one wanted.
func (tb *Tab) WaitFocus(t testing.TB, within time.Duration, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(within)
	test := `((el) => !!el && !!(` + cond + `))(document.activeElement)`
	for !Eval[bool](t, tb, test) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the focus is not on %s within %v, but on %s", tb.Name, what, within, tb.Focus(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
