package e2e

// The Assistant page in a real browser (docs/PROTOCOL.md §9): tab A shows
// the notes in the background, tab B asks the built-in planner to create a
// note; B's event log lists the tool events as they stream in, readable,
// and both A and B's own list beside the chat show the note with its glow,
// pushed by the usual note_changed.

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
	b.WaitConnected(t)
	b.RecordList(t)
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

	b.WaitFor(t, 10*time.Second, "tool_call and tool_result in the event log",
		`document.querySelector('#event-log [data-type="tool_call"]') && document.querySelector('#event-log [data-type="tool_result"]')`)
	b.WaitFor(t, 10*time.Second, "the answer to finish", `!window.notesyncAssistant.running`)
	logText := bt.Eval[string](t, b, `document.querySelector('#event-log').innerText`)
	if !strings.Contains(logText, "create_note") || !strings.Contains(logText, "buy milk") {
		t.Errorf("the event log does not show the create_note call:\n%s", logText)
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

	// Tab A, in the background, and the list beside the chat in tab B
	// show the note with its glow.
	find := `[...document.querySelectorAll('#notes-list [data-note-id]')].find((el) => el.querySelector('.note-body').textContent === 'buy milk')`
	for _, tab := range []*bt.Tab{a, b} {
		tab.WaitFor(t, 10*time.Second, "the note in the list", `!!`+find)
		id := bt.Eval[int64](t, tab, `Number((`+find+`).dataset.noteId)`)
		tab.WaitFor(t, 10*time.Second, "the glow to end", `!(`+find+`).classList.contains('note-flash')`)
		evs := tab.Events(t, id)
		on, ok := bt.GlowStart(evs)
		if !ok {
			t.Fatalf("%s: the note never had class note-flash (events %+v)", tab.Name, evs)
		}
		if off, ok := bt.Find(evs, "note-flash off"); !ok || off.T-on.T < 1500 {
			t.Errorf("%s: note-flash did not last 1.5 s (events %+v)", tab.Name, evs)
		}
	}

	t.Run("each step in the log reads in words and opens to its raw JSON", func(t *testing.T) {
		call := `document.querySelector('#event-log [data-type="tool_call"]')`
		st := bt.Eval[struct {
			Words    string
			RawShown bool
		}](t, b, `({words: `+call+`.querySelector('summary').textContent, rawShown: `+call+`.querySelector('pre').checkVisibility()})`)
		if !strings.Contains(st.Words, "create_note") || !strings.Contains(st.Words, "“buy milk”") || strings.Contains(st.Words, "{") || st.RawShown {
			t.Errorf("the tool call reads %q (raw JSON shown: %v)", st.Words, st.RawShown)
		}
		b.Click(t, `#event-log [data-type="tool_call"] summary`)
		raw := bt.Eval[string](t, b, call+`.querySelector('pre').checkVisibility() ? `+call+`.querySelector('pre').textContent : ''`)
		if !strings.Contains(raw, `"name": "create_note"`) || !strings.Contains(raw, `"body": "buy milk"`) {
			t.Errorf("the raw JSON one click away is %q", raw)
		}
	})

	t.Run("a note written in another tab arrives beside the chat too", func(t *testing.T) {
		bt.ExpectNoteSynced(t, a, b, "Written in the notes tab")
	})

	t.Run("the conversation and its log survive a reload", func(t *testing.T) {
		before := bt.Eval[[]string](t, b, `[...document.querySelectorAll('#assistant-transcript li, #event-log li')].map((e) => e.textContent)`)
		b.Navigate(t, node.URL+"/assistant")
		b.WaitFor(t, 10*time.Second, "the conversation back", `document.querySelectorAll('#assistant-transcript li').length === 2`)
		after := bt.Eval[[]string](t, b, `[...document.querySelectorAll('#assistant-transcript li, #event-log li')].map((e) => e.textContent)`)
		if strings.Join(after, "\n") != strings.Join(before, "\n") {
			t.Errorf("after a reload the page shows\n%q\nnot\n%q", after, before)
		}
	})
}
