package main

// The page under the limits of docs/PROTOCOL.md §8, in Chromium.

import (
	"context"
	"testing"
	"time"

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
