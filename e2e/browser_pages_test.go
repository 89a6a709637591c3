package e2e

// The notes list in pages, in Chromium (docs/PROTOCOL.md §3, §5): a user
// with 1,000 notes sees the first page at once, and the rest as they
// scroll or press "Show older notes"; a refresh keeps the older pages
// shown, in order, and the note in view where it is.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"notesync/internal/apitest"
	bt "notesync/internal/browsertest"
)

const manyNotes = 1000

// shownIDsJS is the ids of the tab's notes, in the list's order.
const shownIDsJS = `Array.from(document.querySelectorAll('#notes-list > [data-note-id]'), (el) => Number(el.dataset.noteId))`

func TestBrowserPages(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	// The notes are made at once, past the default write budget of 20 a second.
	node := startNode(t, "-write-rate", "0")
	a, b := bt.TwoTabs(t, browser, "erin", node.URL, node.URL)
	cookie := b.CookieHeader(t, node.URL)
	ids := createNotes(t, node.URL, cookie, manyNotes)
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)

	b.Navigate(t, node.URL+"/")
	b.WaitNotesPage(t)
	b.WaitConnected(t)
	b.RecordList(t)

	t.Run("the first page shows at once, with a button for the older notes", func(t *testing.T) {
		shown := bt.Eval[[]int64](t, b, shownIDsJS)
		if !slices.Equal(shown, newestFirst[:200]) {
			t.Fatalf("the page shows %d notes, want the newest 200 in order", len(shown))
		}
		if !bt.Eval[bool](t, b, `(() => { const el = document.querySelector('#notes-older');
				return !!el && !el.hidden && el.getBoundingClientRect().height > 0 && el.textContent.trim() === 'Show older notes'; })()`) {
			t.Fatal(`no "Show older notes" button below the first page`)
		}
		bt.CheckAccessibility(t, b, "the notes page with older notes to load")
	})

	t.Run(`"Show older notes" adds the next page`, func(t *testing.T) {
		b.Exec(t, `document.querySelector('#notes-older').click()`)
		b.WaitFor(t, 10*time.Second, "a second page", shownIDsJS+`.length >= 400`)
	})

	t.Run("scrolling to the end loads the rest, in order", func(t *testing.T) {
		deadline := time.Now().Add(60 * time.Second)
		for bt.Eval[bool](t, b, `!!document.querySelector('#notes-list > .notes-more')`) {
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s of scrolling the page shows %d notes", len(bt.Eval[[]int64](t, b, shownIDsJS)))
			}
			b.Exec(t, `window.scrollTo(0, document.documentElement.scrollHeight)`)
			time.Sleep(100 * time.Millisecond)
		}
		if shown := bt.Eval[[]int64](t, b, shownIDsJS); !slices.Equal(shown, newestFirst) {
			t.Fatalf("the page shows %d notes, want all %d newest first", len(shown), manyNotes)
		}
		if !bt.Eval[bool](t, b, `document.querySelector('#notes-older').hidden`) {
			t.Error(`"Show older notes" is still shown with every note loaded`)
		}
	})

	t.Run("a note pushed while scrolled down glows at the top, and the note in view keeps its place", func(t *testing.T) {
		anchor := newestFirst[600]
		sel := bt.JSString(bt.NoteSelector(anchor))
		// Chromium's own scroll anchoring would keep the note in place
		// by itself; off, as in a browser without it, the page must.
		b.Exec(t, `document.documentElement.style.overflowAnchor = 'none'`)
		b.Exec(t, `document.querySelector(`+sel+`).scrollIntoView({block: 'start'})`)
		before := bt.Eval[float64](t, b, `document.querySelector(`+sel+`).getBoundingClientRect().top`)
		w := bt.CreateNote(t, a, "Pushed while scrolled down")
		b.WaitFor(t, 5*time.Second, "the pushed note", bt.HasNote(w.ID))
		after := bt.Eval[float64](t, b, `document.querySelector(`+sel+`).getBoundingClientRect().top`)
		height := bt.Eval[float64](t, b, `document.querySelector(`+bt.JSString(bt.NoteSelector(w.ID))+`).getBoundingClientRect().height`)
		if math.Abs(after-before) > height/2 {
			t.Errorf("the note in view moved from %.0f px to %.0f px when a note of %.0f px arrived above it", before, after, height)
		}
		if _, ok := bt.GlowStart(b.Events(t, w.ID)); !ok {
			t.Error("the pushed note did not glow (note-flash)")
		}
		if shown := bt.Eval[[]int64](t, b, shownIDsJS); !slices.Equal(shown, append([]int64{w.ID}, newestFirst...)) {
			t.Errorf("after the push the page shows %d notes, want the new one on top of all %d in order", len(shown), manyNotes)
		}
	})

	t.Run("a note deleted elsewhere among the older pages fades out", func(t *testing.T) {
		id := ids[100] // on the fifth page
		resp, body := apitest.New(t, node.URL).Do("DELETE", fmt.Sprintf("/api/notes/%d", id), "", "", "Cookie", cookie)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE /api/notes/%d: %d %s", id, resp.StatusCode, body)
		}
		bt.ExpectFadeOut(t, id, b)
		if n := len(bt.Eval[[]int64](t, b, shownIDsJS)); n != manyNotes {
			t.Errorf("after the delete the page shows %d notes, want %d", n, manyNotes)
		}
	})
}

// createNotes makes n notes through the API with the session in cookie, a
// few at a time, and returns their ids, oldest first.
func createNotes(t *testing.T, base, cookie string, n int) []int64 {
	t.Helper()
	c := apitest.New(t, base)
	var (
		mu   sync.Mutex
		made [][2]int64 // version, id
		wg   sync.WaitGroup
		errs = make(chan string, n)
		next = make(chan int)
	)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				status, body, _, err := c.Try("POST", "/api/notes", fmt.Sprintf(`{"body":"Note %04d"}`, i), "Cookie", cookie)
				if err != nil || status != http.StatusCreated {
					errs <- fmt.Sprintf("note %d: %d %v %.200s", i, status, err, body)
					continue
				}
				var r struct {
					Note    struct{ ID int64 }
					Version int64
				}
				if json.Unmarshal([]byte(body), &r) != nil || r.Note.ID == 0 {
					errs <- fmt.Sprintf("note %d: no id in %.200s", i, body)
					continue
				}
				mu.Lock()
				made = append(made, [2]int64{r.Version, r.Note.ID})
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i + 1
	}
	close(next)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	// Ids are random: the versions the creates were answered with give
	// their order.
	slices.SortFunc(made, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	ids := make([]int64, len(made))
	for i, m := range made {
		ids[i] = m[1]
	}
	return ids
}
