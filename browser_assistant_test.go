package main

// The Assistant page in a real browser (issue 5): tab A shows the notes in
// the background, tab B asks the built-in planner to create a note; B's
// Event Log lists the tool events as they stream in, and A shows the note
// with its glow, pushed by the usual note_changed.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	bt "notesync/internal/browsertest"
)

func TestBrowserAssistant(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)

	a := bt.OpenTab(t, browser, "tab A", "")
	bt.SignUp(t, a, node.URL, "assistant-user")
	a.WaitConnected(t)
	a.RecordList(t)

	b := bt.OpenTab(t, browser, "tab B", node.URL+"/assistant")
	b.WaitFor(t, 15*time.Second, "the assistant page",
		`location.pathname === '/assistant' && document.readyState === 'complete' && !!window.notesyncAssistant && !!document.querySelector('#event-log')`)
	bt.CheckBackground(t, a)
	if text := bt.Eval[string](t, b, `document.querySelector('#assistant-model').textContent`); !strings.Contains(text, "built-in planner") {
		t.Errorf("the page does not say which model answers: %q", text)
	}

	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#assistant-message`), "create a note to buy milk"),
		chromedp.Click(chromedp.CSS(`#assistant-send`)),
	); err != nil {
		t.Fatalf("ask: %v", err)
	}

	b.WaitFor(t, 10*time.Second, "tool_call and tool_result in the Event Log",
		`document.querySelector('#event-log [data-type="tool_call"]') && document.querySelector('#event-log [data-type="tool_result"]')`)
	b.WaitFor(t, 10*time.Second, "the answer to finish", `!window.notesyncAssistant.running`)
	logText := bt.Eval[string](t, b, `document.querySelector('#event-log').innerText`)
	if !strings.Contains(logText, "create_note") || !strings.Contains(logText, "buy milk") {
		t.Errorf("Event Log does not show the create_note call:\n%s", logText)
	}
	if n := bt.Eval[int](t, b, `document.querySelectorAll('#event-log [data-type="tool_result"][data-failed]').length`); n != 0 {
		t.Errorf("a tool call failed:\n%s", logText)
	}
	answer := bt.Eval[string](t, b, `document.querySelector('#assistant-transcript .from-assistant').textContent`)
	if !strings.Contains(answer, "buy milk") {
		t.Errorf("answer %q does not mention the note", answer)
	}
	types := bt.Eval[[]string](t, b, `window.notesyncAssistant.events.map((e) => e.type).filter((t, i, all) => t !== 'token' || all[i-1] !== 'token')`)
	if strings.Join(types, ",") != "token,tool_call,tool_result,token,done" {
		t.Errorf("events as the page received them: %v", types)
	}

	// Tab A, in the background, shows the note with its glow.
	find := `[...document.querySelectorAll('#notes-list [data-note-id]')].find((el) => el.querySelector('.note-body').textContent === 'buy milk')`
	a.WaitFor(t, 10*time.Second, "the note in tab A", `!!`+find)
	id := bt.Eval[int64](t, a, `Number((`+find+`).dataset.noteId)`)
	a.WaitFor(t, 10*time.Second, "the glow to end", `!(`+find+`).classList.contains('note-flash')`)
	evs := a.Events(t, id)
	on, ok := bt.GlowStart(evs)
	if !ok {
		t.Fatalf("tab A: the note never had class note-flash (events %+v)", evs)
	}
	if off, ok := bt.Find(evs, "note-flash off"); !ok || off.T-on.T < 1500 {
		t.Errorf("tab A: note-flash did not last 1.5 s (events %+v)", evs)
	}
}
