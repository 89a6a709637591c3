package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/cluster/local/lease"
)

// A history checker in the spirit of Jepsen (docs/PROTOCOL.md §11):
// clients write through every node at about 50/s, each write with an
// Idempotency-Key and retried as the page retries it, while a tab on every
// node listens. At random moments the current primary is stopped (SIGTERM,
// as a deploy does) or killed (SIGKILL, as when its machine dies), in
// turn, ten times. Then:
//
//   - every write answered 201 is stored exactly once, under the id it was
//     answered with, and no id was given to two writes;
//   - every tab's notes equal the cluster's;
//   - each tab's versions only went forward one at a time, or it was told
//     to refetch (a sync) and did;
//   - after each stop or kill, writes were answered again within the
//     lease's TTL plus 2 s (and a forwarded write's retry).
//
// HISTORY_ROUNDS sets the number of rounds (ten by default); the times to a
// new primary are logged, for docs/BENCHMARKS.md.
func TestHistoryAcrossPrimaryMoves(t *testing.T) {
	rounds := 10
	if s := os.Getenv("HISTORY_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	c := startCluster(t, 3, noWriteBudget)
	urls := []string{c.URL(1), c.URL(2), c.URL(3)}
	u := signup(t, urls[0], "jepsen")
	var tabs []*checkedTab
	for _, base := range urls {
		tabs = append(tabs, openCheckedTab(t, u, base))
	}
	w := &pageWriters{u: u, urls: urls, answered: map[string]int64{}}
	w.start(50)
	defer w.stop()

	bound := lease.DefaultTTL + 2*time.Second
	took := map[string][]time.Duration{}
	for round := range rounds {
		cmd := []string{"stop", "kill"}[round%2]
		u.waitPrimaryEverywhere(t, urls, c.Primary(), 90*time.Second) // every node up and agreeing
		time.Sleep(time.Second + rand.N(2*time.Second))               // a random moment, writes flowing
		old := c.Primary()
		start := time.Now()
		if got := c.Command(cmd + " " + old); got != "ok" {
			t.Fatalf("round %d: %s %s: %q", round+1, cmd, old, got)
		}
		// The new primary: another node, or after a kill the same one
		// once its lease has ended (the restarted node may take it back).
		next, ended := "", false
		for next = c.Primary(); next == "" || next == old && !ended; next = c.Primary() {
			ended = ended || next == ""
			if time.Since(start) > bound+10*time.Second {
				t.Fatalf("round %d: no new primary %v after %s of %s", round+1, time.Since(start), cmd, old)
			}
			time.Sleep(10 * time.Millisecond)
		}
		moved := time.Since(start)
		if cmd == "stop" {
			// It hands off, then goes down (the next round waits for it
			// to be back); a killed node is down at once.
			c.waitDown(t, old)
		}
		resumed := w.answeredAfter(start, bound+15*time.Second)
		took[cmd] = append(took[cmd], moved)
		t.Logf("round %d: %s %s: %s primary after %v; writes answered 201 again after %v",
			round+1, cmd, old, next, moved.Round(time.Millisecond), resumed.Round(time.Millisecond))
		if resumed > bound+3*time.Second {
			t.Errorf("round %d: writes answered again %v after the %s, want within the TTL + 2 s (%v) and a forwarded write's retry", round+1, resumed, cmd, bound)
		}
	}
	u.waitPrimaryEverywhere(t, urls, c.Primary(), 90*time.Second)
	time.Sleep(time.Second)
	w.stop()
	for cmd, d := range took {
		slices.Sort(d)
		t.Logf("%s of the primary → new primary: median %v of %v", cmd, d[len(d)/2].Round(time.Millisecond), d)
	}
	t.Logf("%d writes answered 201, %d retried", len(w.answered), w.retried)
	for _, f := range w.failed {
		t.Error(f)
	}
	ids, version := w.checkAnswered(t, u, urls[1])
	for i, tab := range tabs {
		tab.check(t, fmt.Sprintf("the tab on node%d", i+1), version, ids)
	}
}

// pageWriters write notes through every node in turn, each with an
// Idempotency-Key, and retry as the page does (write.js): a 503 or 504 or
// a refused connection is tried again with the same key, after
// Retry-After or half a second, for up to 30 s; a refused connection is
// tried through the next node, as Fly's proxy sends a request to a machine
// that runs.
type pageWriters struct {
	u    *user
	urls []string

	mu       sync.Mutex
	answered map[string]int64 // key → note id, of the writes answered 201
	version  int64            // the highest version a 201 gave
	at       []time.Time      // when each 201 was sent
	sent     []time.Time      // …and the request that got it
	failed   []string
	retried  int

	pace paced
}

func (w *pageWriters) start(perSecond int) { w.pace.start(perSecond, w.write) }

func (w *pageWriters) stop() { w.pace.stop() }

func (w *pageWriters) write(i int) {
	key := fmt.Sprintf("jepsen-%d", i)
	node := i % len(w.urls)
	start := time.Now()
	var status int
	var body string
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		var h http.Header
		var err error
		status, body, h, err = w.u.Try("POST", w.urls[node]+"/api/notes", `{"body":"`+key+`"}`, "Idempotency-Key", key)
		if err == nil && status == http.StatusCreated {
			var created struct {
				Note    struct{ ID int64 }
				Version int64
			}
			if json.Unmarshal([]byte(body), &created) != nil || created.Note.ID == 0 {
				break
			}
			w.mu.Lock()
			w.answered[key] = created.Note.ID
			w.version = max(w.version, created.Version)
			w.at = append(w.at, time.Now())
			w.sent = append(w.sent, sent)
			if attempt > 0 {
				w.retried++
			}
			w.mu.Unlock()
			return
		}
		retry := err != nil || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
		if !retry || time.Since(start) > 30*time.Second {
			if err != nil {
				body = err.Error()
			}
			break
		}
		wait := 500 * time.Millisecond
		if s, _ := strconv.Atoi(h.Get("Retry-After")); s > 0 && err == nil {
			wait = time.Duration(s) * time.Second
		}
		if err != nil {
			node = (node + 1) % len(w.urls)
		}
		time.Sleep(wait)
	}
	w.mu.Lock()
	w.failed = append(w.failed, fmt.Sprintf("write %s failed after %v: %d %s", key, time.Since(start).Round(time.Millisecond), status, strings.TrimSpace(body)))
	w.mu.Unlock()
}

// answeredAfter waits until a write sent after t is answered 201, and
// returns how long after t that was.
func (w *pageWriters) answeredAfter(t time.Time, within time.Duration) time.Duration {
	for deadline := t.Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		for i, s := range w.sent {
			if s.After(t) {
				d := w.at[i].Sub(t)
				w.mu.Unlock()
				return d
			}
		}
		w.mu.Unlock()
	}
	return within
}

// checkAnswered checks that every write answered 201 is stored once under
// the id it was answered with and that no id was given to two writes, and
// returns the cluster's note ids and version as base lists them, once it
// holds every answered write.
func (w *pageWriters) checkAnswered(t *testing.T, u *user, base string) (map[int64]bool, int64) {
	t.Helper()
	byKey := map[string][]int64{}
	ids := map[int64]bool{}
	notes, version, _, err := u.tryAllNotes(base, w.version)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range notes {
		byKey[n.Body] = append(byKey[n.Body], n.ID)
		if ids[n.ID] {
			t.Errorf("note id %d is listed twice", n.ID)
		}
		ids[n.ID] = true
	}
	given := map[int64]string{}
	for key, id := range w.answered {
		if got := byKey[key]; len(got) != 1 || got[0] != id {
			t.Errorf("write %s answered 201 with note %d; stored as %v", key, id, got)
		}
		if other, ok := given[id]; ok {
			t.Errorf("note id %d given to writes %s and %s", id, other, key)
		}
		given[id] = key
	}
	for key, got := range byKey {
		if len(got) != 1 {
			t.Errorf("write %s stored %d times: %v", key, len(got), got)
		}
	}
	return ids, version
}

type listedNote struct {
	ID   int64
	Body string
}

// tryAllNotes reads every page of the list from base, at least at version
// min, following the cursor, and returns the notes and the version of the
// first page and the change at that version.
func (u *user) tryAllNotes(base string, min int64) ([]listedNote, int64, string, error) {
	var notes []listedNote
	var version int64
	var change string
	for query := fmt.Sprintf("?min_version=%d&limit=1000", min); ; {
		status, body, _, err := u.Try("GET", base+"/api/notes"+query, "")
		if err != nil || status != http.StatusOK {
			return nil, 0, "", fmt.Errorf("list notes on %s: %d %v", base, status, err)
		}
		var page struct {
			Version int64
			Change  string
			Notes   []listedNote
			Next    json.RawMessage
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			return nil, 0, "", err
		}
		if version == 0 {
			version, change = page.Version, page.Change
		}
		notes = append(notes, page.Notes...)
		if len(page.Next) == 0 || string(page.Next) == "null" {
			return notes, version, change, nil
		}
		var next any
		json.Unmarshal(page.Next, &next)
		query = fmt.Sprintf("?min_version=%d&limit=1000&before=%v", min, next)
	}
}

// checkedTab is a tab as the page keeps it: the notes it shows and the
// version it has seen, kept up to date by pushes and refetched on a sync.
// Every step that breaks §4 or §11 is recorded.
type checkedTab struct {
	u    *user
	base string

	mu         sync.Mutex
	version    int64
	change     string // the change at version, "" when not known
	ids        map[int64]bool
	violations []string
	refetches  int
	diverged   int // refetches after a sync that said the history changed
}

// openCheckedTab opens a tab on base before any write, and keeps it open,
// reconnecting with since as the page does, until the test ends.
func openCheckedTab(t *testing.T, u *user, base string) *checkedTab {
	t.Helper()
	tab := &checkedTab{u: u, base: base, ids: map[int64]bool{}}
	ws, err := u.Dial(base, "")
	if err != nil {
		t.Fatal(err)
	}
	if h, err := read(ws, 5*time.Second); err != nil || h.Type != "hello" {
		t.Fatalf("hello: %+v %v", h, err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); wg.Wait() })
	wg.Go(func() { tab.follow(ws, done) })
	return tab
}

// follow reads what ws is pushed until done, and when the node goes away
// or closes the tab as too slow, comes back with since, as the page does.
func (tab *checkedTab) follow(ws *websocket.Conn, done chan struct{}) {
	for {
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			for {
				e, err := read(ws, time.Hour)
				if err != nil {
					return
				}
				tab.apply(e)
			}
		}()
		select {
		case <-done:
			ws.CloseNow()
			<-ended
			return
		case <-ended:
			ws.CloseNow()
		}
		for ws = nil; ws == nil; {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			tab.mu.Lock()
			query := fmt.Sprintf("?since=%d", tab.version)
			if tab.change != "" {
				query += "&change=" + tab.change
			}
			tab.mu.Unlock()
			ws, _ = tab.u.Dial(tab.base, query)
		}
	}
}

// apply takes one message as the page does.
func (tab *checkedTab) apply(e event) {
	if e.Type != "note_changed" {
		return
	}
	tab.mu.Lock()
	defer tab.mu.Unlock()
	switch {
	case e.Op == "sync" && e.Diverged:
		// The cluster no longer has what the tab saw: it starts again
		// from the list as it is, whatever its version.
		tab.diverged++
		tab.refetch(e.Version)
	case e.Op == "sync":
		if e.Version < tab.version {
			tab.violate("v%d → sync to v%d: the version went back", tab.version, e.Version)
		}
		tab.refetch(e.Version)
	case e.Version <= tab.version:
		// Covered by a refetch that read a newer list, or a repeat.
		if tab.refetches == 0 {
			tab.violate("v%d pushed again at v%d", e.Version, tab.version)
		}
	case e.Version != tab.version+1:
		tab.violate("v%d → v%d: skipped %d changes", tab.version, e.Version, e.Version-tab.version-1)
		tab.version = e.Version
	default:
		tab.version, tab.change = e.Version, e.Change
		switch e.Op {
		case "created":
			if tab.ids[e.NoteID] {
				tab.violate("note %d created twice (v%d)", e.NoteID, e.Version)
			}
			tab.ids[e.NoteID] = true
		case "deleted":
			delete(tab.ids, e.NoteID)
		}
	}
}

// refetch reads the whole list at least at version v, as the page does
// after a sync. Called with mu held.
func (tab *checkedTab) refetch(v int64) {
	tab.refetches++
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		notes, version, change, err := tab.u.tryAllNotes(tab.base, v)
		if err == nil {
			tab.change = change
			tab.ids = map[int64]bool{}
			for _, n := range notes {
				tab.ids[n.ID] = true
			}
			tab.version = version
			return
		}
		if time.Now().After(deadline) {
			tab.violate("refetch at v%d: %v", v, err)
			return
		}
	}
}

func (tab *checkedTab) violate(format string, args ...any) {
	tab.violations = append(tab.violations, fmt.Sprintf(format, args...))
}

// check waits until the tab has reached version, then checks that it
// broke no rule on the way and shows the cluster's notes.
func (tab *checkedTab) check(t *testing.T, name string, version int64, ids map[int64]bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		tab.mu.Lock()
		reached := tab.version >= version
		tab.mu.Unlock()
		if reached || time.Now().After(deadline) {
			break
		}
	}
	tab.mu.Lock()
	defer tab.mu.Unlock()
	for _, v := range tab.violations {
		t.Errorf("%s: %s", name, v)
	}
	if tab.version != version {
		t.Errorf("%s is at v%d, the cluster at v%d", name, tab.version, version)
	}
	var missing, extra []int64
	for id := range ids {
		if !tab.ids[id] {
			missing = append(missing, id)
		}
	}
	for id := range tab.ids {
		if !ids[id] {
			extra = append(extra, id)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s shows %d notes; lacks %v, shows %v that the cluster lacks", name, len(tab.ids), missing, extra)
	}
	t.Logf("%s: v%d, %d notes, %d refetches (%d after its history was gone)", name, tab.version, len(tab.ids), tab.refetches, tab.diverged)
}
