package e2e

import (
	"testing"

	bt "notesync/internal/browsertest"
)

func TestBrowserEditsMerge(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	a, b := bt.TwoTabs(t, browser, "maria", node.URL, node.URL)
	bt.CheckEditsMerge(t, a, b)
	bt.CheckEditorKeepsWhatIsTyped(t, a)
}
