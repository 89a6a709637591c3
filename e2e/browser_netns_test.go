package e2e

import (
	"testing"
	"time"

	bt "notesync/internal/browsertest"
)

// What a person sees of a partition (docs/PROTOCOL.md §5, §10): tab A on
// node1, tab B on node3; node3 is cut off while tab A writes, then healed.
func TestBrowserThroughAPartition(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	c := startNetnsCluster(t, 3)
	a, b := bt.TwoTabs(t, browser, "watcher", c.URL(1), c.URL(3))
	b.WaitFor(t, 15*time.Second, "the cluster panel", `document.querySelector('#cluster-panel').dataset.replication === 'current'`)

	if err := c.Partition("node3"); err != nil {
		t.Fatal(err)
	}
	defer c.Heal()
	w := bt.CreateNote(t, a, "written while node3 is cut off")
	// The panel polls every 5 s; node3 is stale after 3 s without a word.
	b.WaitFor(t, 15*time.Second, "the panel to say node3 is behind",
		`document.querySelector('#cluster-panel').dataset.replication === 'stale' && !!document.querySelector('#cluster-panel .cluster-stale')`)
	if bt.Eval[bool](t, b, bt.HasNote(w.ID)) {
		t.Fatal("tab B on the cut-off node3 shows a note it cannot have")
	}
	if state, _ := b.ConnStatus(t); state != "open" {
		t.Errorf("tab B's connection is %q during the partition, want open", state)
	}

	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(t, 30*time.Second, "the note to reach node3's tab after the heal", bt.HasNote(w.ID))
	b.WaitFor(t, 15*time.Second, "the panel to say node3 is current again",
		`document.querySelector('#cluster-panel').dataset.replication === 'current' && !document.querySelector('#cluster-panel .cluster-stale')`)
	if state, _ := b.ConnStatus(t); state != "open" {
		t.Errorf("tab B's connection is %q after the heal, want open", state)
	}
}
