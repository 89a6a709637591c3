package e2e

// A real browser across cluster nodes (docs/PROTOCOL.md §5 on the cluster of §2): tab A
// on node1 (the primary), tab B on node3 (a replica), each pinned to its node
// by its URL. Tab B is in front, tab A is a background tab throughout, as in
// the single-node browser tests (browser_test.go). Timings are measured in the
// page (see internal/browsertest).

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	bt "notesync/internal/browsertest"
)

// readmeScreenshot is where TestBrowserAcrossNodes writes the README's
// picture (make screenshots); empty: it makes none.
var readmeScreenshot = flag.String("readme-screenshot", "", "write the README's picture of two tabs in sync, on node1 and node3, to this PNG file")

func TestBrowserAcrossNodes(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	c := startCluster(t, 3)
	a, b := bt.TwoTabs(t, browser, "alice", c.URL(1), c.URL(3))

	t.Run("each tab is served by and connected to its own node", func(t *testing.T) {
		for _, tc := range []struct {
			tab  *bt.Tab
			node int
		}{{a, 1}, {b, 3}} {
			name := fmt.Sprintf("node%d", tc.node)
			page := bt.Eval[struct{ Origin, Node string }](t, tc.tab,
				`({origin: location.origin, node: document.body.dataset.node})`)
			if page.Origin != c.URL(tc.node) || page.Node != name {
				t.Errorf("%s: page at %s served by %q, want %s served by %s", tc.tab.Name, page.Origin, page.Node, c.URL(tc.node), name)
			}
			state, text := tc.tab.ConnStatus(t)
			if state != "open" {
				t.Errorf("%s: #conn-status data-state = %q, want open", tc.tab.Name, state)
			}
			if !strings.Contains(text, name) || !strings.Contains(text, "local") {
				t.Errorf("%s: #conn-status text %q does not name node %s and region local", tc.tab.Name, text, name)
			}
		}
	})

	t.Run("every node lists the members alike: the primary first, then by name, in the panel and in /api/cluster", func(t *testing.T) {
		checkMemberOrder(t, c, b)
	})

	t.Run("the panel shows each member's position, that each replica holds the answered writes, and who acknowledged them", func(t *testing.T) {
		// cells[6]: the TXID column, after Conns and Tabs.
		bt.CreateNote(t, b, "Acknowledged")
		b.WaitFor(t, 15*time.Second, "both replicas holding every answered write", `(() => {
			const rows = [...document.querySelectorAll('#cluster-panel tr[data-member]')];
			const ack = document.querySelector('#cluster-panel .cluster-ack');
			return rows.filter((r) => r.dataset.holds === 'true').length === 2 &&
				rows.every((r) => /^[0-9]+$/.test(r.cells[6].textContent)) &&
				!!ack && ack.dataset.acknowledgedBy === 'node2, node3';
		})()`)
	})

	t.Run("the cluster view passes axe at both widths", func(t *testing.T) {
		b.WaitFor(t, 10*time.Second, "the cluster panel", `!!document.querySelector('#cluster-panel table')`)
		bt.Look(t, b, "notes page on a cluster")
	})

	if *readmeScreenshot != "" {
		t.Run("the README's picture: two tabs in sync, on node1 and on node3", func(t *testing.T) {
			for _, tab := range []*bt.Tab{a, b} {
				tab.SetViewport(t, bt.Viewport{Name: "README", Width: 660, Height: 760})
			}
			w := bt.CreateNote(t, b, "Pick up the bike from the shop")
			a.WaitFor(t, 5*time.Second, "the note from tab B", bt.HasNote(w.ID))
			bt.SideBySide(t, *readmeScreenshot, a, b)
			for _, tab := range []*bt.Tab{a, b} {
				tab.SetViewport(t, bt.Desktop)
			}
		})
	}

	var noteID int64
	t.Run("a note created in tab B on node3 appears in background tab A on node1 with a glow", func(t *testing.T) {
		bt.CheckBackground(t, a)
		noteID = bt.ExpectNoteSynced(t, b, a, "Written on node3")
	})

	t.Run("a note deleted in background tab A on node1 fades out in both tabs before it is removed", func(t *testing.T) {
		if noteID == 0 {
			t.Skip("needs the note of the earlier step")
		}
		bt.CheckBackground(t, a)
		b.MarkDocument(t)
		// The DELETE's answer, by tab A's clock: the last resource-timing
		// entry of /api/notes/ID (a retried DELETE makes two).
		a.Exec(t, `performance.clearResourceTimings()`)
		a.Click(t, bt.NoteSelector(noteID)+` [data-action="delete"]`)
		starts := bt.ExpectFadeOut(t, noteID, a, b)
		b.CheckDocumentKept(t)

		deleted := bt.Eval[float64](t, a, fmt.Sprintf(`(() => {
			const e = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname === '/api/notes/%d').pop();
			return e ? performance.timeOrigin + e.responseEnd : 0;
		})()`, noteID))
		switch {
		case deleted == 0:
			t.Errorf("tab A: no record of its DELETE /api/notes/%d", noteID)
		case starts[1] != 0:
			lag := starts[1] - deleted
			if lag > 1000 {
				t.Errorf("tab B: the note started fading %.0f ms after the DELETE returned in tab A, want within 1 s", lag)
			}
			t.Logf("tab B: the note started fading %.0f ms after the DELETE returned in tab A", lag)
		}
	})

	checkPresence(t, a, b)
	bt.CheckEditsAreNeverLost(t, a, b)
	bt.CheckEditsMerge(t, a, b)
}

// checkPresence checks #presence and note-editing-elsewhere in tab a on
// node1 and tab b on node3.
func checkPresence(t *testing.T, a, b *bt.Tab) {
	t.Run("#presence in each tab counts both tabs on both nodes, naming the nodes", func(t *testing.T) {
		for _, tab := range []*bt.Tab{a, b} {
			tab.WaitFor(t, 5*time.Second, "#presence to count 2 tabs", `document.querySelector('#presence').dataset.tabs === '2'`)
			p := bt.Eval[struct{ Text, Names string }](t, tab,
				`({text: document.querySelector('#presence').textContent, names: document.querySelector('#presence-nodes').textContent})`)
			if p.Text != "2 tabs on 2 nodes" || !strings.Contains(p.Names, "node1: 1") || !strings.Contains(p.Names, "node3: 1") {
				t.Errorf("%s: #presence %q, node names %q", tab.Name, p.Text, p.Names)
			}
		}
		// The names show on focus, for a keyboard.
		b.Exec(t, `document.querySelector('#presence').focus()`)
		if !bt.Eval[bool](t, b, `getComputedStyle(document.querySelector('#presence-nodes')).display !== 'none'`) {
			t.Errorf("%s: the node names do not show when #presence has the focus", b.Name)
		}
	})

	t.Run("a note open in the other tab's editor gets note-editing-elsewhere, and loses it when the editor closes", func(t *testing.T) {
		id := bt.CreateNote(t, b, "Open in tab A's editor").ID
		a.WaitFor(t, 5*time.Second, "the new note", bt.HasNote(id))
		a.ClickNote(t, id, "edit")
		b.WaitNote(t, id, 5*time.Second, "note-editing-elsewhere", func(s bt.NoteState) bool { return s.Has("note-editing-elsewhere") })
		if s := a.Note(t, id); s.Has("note-editing-elsewhere") {
			t.Errorf("%s: its own editor marks the note as edited elsewhere", a.Name)
		}
		a.ClickNote(t, id, "edit-cancel")
		b.WaitNote(t, id, 5*time.Second, "note-editing-elsewhere to go", func(s bt.NoteState) bool { return !s.Has("note-editing-elsewhere") })
	})
}

// checkMemberOrder checks that every node of c answers /api/cluster with
// its members in one order, the primary first and then by name, again and
// again (gossip's own order changes), and that tab's cluster panel shows
// them so.
func checkMemberOrder(t *testing.T, c *localCluster, tab *bt.Tab) {
	want := []string{"node1", "node2", "node3"} // node1, the first primary, holds the lease
	cookie := tab.CookieHeader(t, c.URL(3))
	for i := 1; i <= 3; i++ {
		for range 5 {
			req, _ := http.NewRequest("GET", c.URL(i)+"/api/cluster", nil)
			req.Header.Set("Cookie", cookie)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				Members []struct{ Name, Role string }
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /api/cluster on node%d: %d %v", i, resp.StatusCode, err)
			}
			var got []string
			for _, m := range st.Members {
				got = append(got, m.Name)
			}
			if !slices.Equal(got, want) || st.Members[0].Role != "primary" {
				t.Fatalf("node%d lists the members as %+v, want %v with the primary first", i, st.Members, want)
			}
		}
	}
	tab.WaitFor(t, 10*time.Second, "the panel to list three members", `document.querySelectorAll('#cluster-panel tr[data-member]').length === 3`)
	if got := bt.Eval[[]string](t, tab, `[...document.querySelectorAll('#cluster-panel tr[data-member]')].map((r) => r.dataset.member)`); !slices.Equal(got, want) {
		t.Errorf("%s: the panel lists %v, want %v", tab.Name, got, want)
	}
}
