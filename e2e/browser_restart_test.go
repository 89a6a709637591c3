package e2e

// Real-browser tests of what outlives the browser and the build
// (docs/PROTOCOL.md §12): writes waiting in a browser that is quit and
// started again, and a service worker replaced by a new release.

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	bt "notesync/internal/browsertest"
)

func TestBrowserRestartKeepsPendingWrites(t *testing.T) {
	profile := t.TempDir()
	browser, quit := bt.StartOn(t, profile) // first: skips at once without Chromium
	node := startNode(t)
	b := bt.OpenTab(t, browser, "tab B", "")
	bt.SignUp(t, b, node.URL, "tamsin")
	b.WaitConnected(t)
	cookie := b.CookieHeader(t, node.URL)
	first := bt.CreateNote(t, b, "first").ID
	b.WaitFor(t, 5*time.Second, "the note", bt.HasNote(first))
	waitControlled(t, b)

	node.Stop(t)
	b.WaitFor(t, 5*time.Second, "the tab to notice the node is gone", `document.querySelector('#conn-status').dataset.state !== 'open'`)
	submitNote(t, b, "offline one")
	b.WaitFor(t, 5*time.Second, "the new note, pending", pendingCount+` === 1`)
	b.EditNote(t, first, "first, edited offline")
	b.SaveNote(t, first)
	submitNote(t, b, "offline two")
	b.EditNote(t, first, "first, edited twice")
	b.SaveNote(t, first)
	b.WaitFor(t, 5*time.Second, "four changes to wait", pendingCount+` === 4`)

	quit() // the whole browser, with the node still down
	browser, _ = bt.StartOn(t, profile)
	c := bt.OpenTab(t, browser, "tab C", node.URL+"/")
	acceptLeaving(t, c)
	c.WaitNotesPage(t)
	t.Run("the browser started again shows every pending change", func(t *testing.T) {
		c.WaitFor(t, 5*time.Second, "the pending changes after the restart",
			pendingCount+` === 4 && document.querySelectorAll('#notes-list .note-pending').length === 3`)
		if got := bodiesShown(t, c); !slices.Equal(got, []string{"offline two", "offline one", "first, edited twice"}) {
			t.Errorf("after the restart the list shows %q", got)
		}
	})

	node.Start(t)
	c.WaitConnected(t)
	c.WaitFor(t, 20*time.Second, "every pending change to be sent", pendingCount+` === 0 && !document.querySelector('#notes-list .note-pending')`)
	t.Run("every change lands once, in order", func(t *testing.T) {
		notes := serverNotes(t, node.URL, cookie)
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
		want, _ := json.Marshal(bodies)
		c.WaitFor(t, 10*time.Second, "the tab to show them", shownJSON+` === `+bt.JSString(string(want)))
	})
}
