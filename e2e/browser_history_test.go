package e2e

// A tab that has seen changes its node's database no longer holds, as
// after a failover to a candidate that was behind (docs/PROTOCOL.md §11):
// it is told so, drops them, and goes on with the history that continues.

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
	bt "notesync/internal/browsertest"
)

func TestBrowserHistoryDiverged(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := bt.TwoTabs(t, browser, "grace", node.URL, node.URL)
	kept := bt.CreateNote(t, a, "Kept in every history")
	dropped := bt.CreateNote(t, a, "Dropped by the failover")
	for _, tab := range []*bt.Tab{a, b} {
		tab.WaitFor(t, 5*time.Second, "both notes", bt.HasNote(dropped.ID)+` && window.notesync.version === 2`)
	}
	saw := bt.Eval[string](t, b, `window.notesync.change`)

	// The node's database goes back to version 1: what a new primary that
	// was behind goes on from.
	rollBackNode(t, node.DataDir, "grace", 1)

	bt.ExpectFadeOut(t, dropped.ID, a, b)
	for _, tab := range []*bt.Tab{a, b} {
		tab.WaitFor(t, 10*time.Second, "the list of the history that goes on, at version 1",
			bt.HasNote(kept.ID)+` && window.notesync.version === 1`)
	}
	// And it goes on: the next change, version 2 again, is another one,
	// and both tabs show it.
	next := bt.CreateNote(t, a, "Written after the failover")
	for _, tab := range []*bt.Tab{a, b} {
		tab.WaitFor(t, 5*time.Second, "the note written after the failover",
			bt.HasNote(next.ID)+` && window.notesync.version === 2 && window.notesync.change !== `+bt.JSString(saw))
		if bt.Eval[bool](t, tab, bt.HasNote(dropped.ID)) {
			t.Errorf("%s still shows the note the database no longer holds", tab.Name)
		}
	}
}

// rollBackNode takes username's notes in the node's database back to
// version, as sqlitetest.RollBack does, with the node running.
func rollBackNode(t *testing.T, dataDir, username string, version int64) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.OpenDB(ctx, filepath.Join(dataDir, "notesync.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var user, seq int64
	if err := db.ReadPool().QueryRow(`SELECT users.id, changes.seq FROM users JOIN changes ON changes.user_id = users.id
		WHERE users.username = ? AND changes.version = ?`, username, version).Scan(&user, &seq); err != nil {
		t.Fatal(err)
	}
	sqlitetest.RollBack(t, sqlite.NewStore(db, "test"), user, version, seq)
}
