package e2e

// The page under the limits of docs/PROTOCOL.md §8, in Chromium.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	bt "notesync/internal/browsertest"
)

// recordCSPViolations makes every page the tab loads from now on keep the
// Content-Security-Policy violations it sees in window.__cspViolations,
// from before its first script runs.
func recordCSPViolations(t *testing.T, tab *bt.Tab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, 10*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
		window.__cspViolations = [];
		document.addEventListener('securitypolicyviolation',
			(e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));`})
	if err != nil {
		t.Fatalf("install the CSP recorder: %v", err)
	}
}

func TestBrowserUnderCSP(t *testing.T) {
	browser := bt.Start(t)
	node := startNode(t)
	tab := bt.OpenTab(t, browser, "tab", "")
	recordCSPViolations(t, tab)
	bt.SignUp(t, tab, node.URL, "carol")
	tab.WaitConnected(t)

	t.Run("the page works under its policy: WebSocket, htmx form, no violation", func(t *testing.T) {
		if tr := bt.Eval[string](t, tab, `window.notesync.transport`); tr != "ws" {
			t.Errorf("transport %q, want ws", tr)
		}
		bt.CreateNote(t, tab, "written under a strict CSP")
		if v := bt.Eval[[]string](t, tab, `window.__cspViolations`); len(v) != 0 {
			t.Errorf("the page broke its own policy: %v", v)
		}
	})

	t.Run("a script injected inline does not run", func(t *testing.T) {
		tab.Exec(t, `document.body.append(Object.assign(document.createElement('script'), {textContent: 'window.__inlineRan = true'}))`)
		tab.WaitFor(t, 5*time.Second, "the violation to be reported", `window.__cspViolations.length > 0`)
		if bt.Eval[bool](t, tab, `window.__inlineRan === true`) {
			t.Fatal("an inline script ran")
		}
	})
}

// insertText types text into the focused element at once, as a paste does:
// the page sees one input event, and a maxlength would cut it.
func insertText(t *testing.T, tab *bt.Tab, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		t.Fatalf("insert text: %v", err)
	}
}

func TestBrowserNoteLength(t *testing.T) {
	browser := bt.Start(t)
	node := startNode(t)
	tab := bt.OpenTab(t, browser, "tab", "")
	bt.SignUp(t, tab, node.URL, "dora")
	tab.WaitConnected(t)
	tab.Exec(t, `window.__sent = 0; document.addEventListener('htmx:beforeRequest', () => window.__sent++)`)

	fill := func(text string) {
		t.Helper()
		tab.Exec(t, `(() => { const ta = document.querySelector('#note-form textarea[name=body]'); ta.focus(); ta.select(); })()`)
		insertText(t, tab, text)
	}
	type state struct {
		Length     int
		Count      string
		Over       string
		Validation string
	}
	read := func() state {
		return bt.Eval[state](t, tab, `(() => {
			const ta = document.querySelector('#note-form textarea[name=body]');
			const c = document.querySelector('#note-count');
			return {length: Array.from(ta.value).length, count: c.textContent, over: c.dataset.state, validation: ta.validationMessage};
		})()`)
	}
	submitRefused := func(what string) {
		t.Helper()
		tab.Click(t, `#note-form button[type=submit]`)
		time.Sleep(500 * time.Millisecond)
		if n := bt.Eval[int](t, tab, `window.__sent`); n != 0 {
			t.Fatalf("%s: the form sent it (%d requests)", what, n)
		}
	}

	t.Run("a pasted note over the limit is kept whole, counted, and not sent", func(t *testing.T) {
		fill(strings.Repeat("é", 10050))
		st := read()
		if st.Length != 10050 {
			t.Fatalf("the textarea holds %d characters of the 10,050 pasted", st.Length)
		}
		if !strings.Contains(st.Count, "10,050 / 10,000") || st.Over != "over" || !strings.Contains(st.Validation, "the limit is 10,000") {
			t.Fatalf("%+v: want the count and the reason", st)
		}
		submitRefused("a note over the limit")
	})

	t.Run("a note of only blanks is not sent, and says why", func(t *testing.T) {
		fill("   \n  ")
		if st := read(); !strings.Contains(st.Validation, "something other than spaces") {
			t.Fatalf("%+v", st)
		}
		submitRefused("a blank note")
	})

	t.Run("at the limit the note is saved and the count starts again", func(t *testing.T) {
		fill(strings.Repeat("é", 9998) + "\nx")
		if st := read(); !strings.Contains(st.Count, "10,000 / 10,000") || st.Over != "ok" || st.Validation != "" {
			t.Fatalf("%+v", st)
		}
		tab.Click(t, `#note-form button[type=submit]`)
		tab.WaitFor(t, 10*time.Second, "the note saved and the form emptied",
			`window.__sent === 1 && document.querySelector('#note-form textarea').value === '' && document.querySelectorAll('#notes-list [data-note-id]').length === 1`)
		if st := read(); !strings.HasPrefix(st.Count, "0 / 10,000") {
			t.Errorf("count after saving: %q", st.Count)
		}
	})
}
