package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/internal/apitest"
)

// A primary told to stop, as a deploy stops it, hands the lease to a
// caught-up candidate first (docs/PROTOCOL.md §11): under writes at about
// 50/s through every node, retried as the page retries them, no write
// fails, every write answered 201 is there exactly once, a tab on a
// replica gets every change once and in order, and the stopped node comes
// back as a replica. Three stops in a row; the times are logged.
func TestHandoff(t *testing.T) {
	c := startCluster(t, 3, noWriteBudget)
	urls := []string{c.URL(1), c.URL(2), c.URL(3)}
	u := signup(t, urls[1], "handoff")
	const tabNode = "node3" // never stopped: the primary moves away first
	tab := openTab(t, u, c.URL(3))

	w := &writers{u: u, urls: urls}
	w.start(50)
	var took []time.Duration
	for round := 1; round <= 3; round++ {
		old := c.Primary()
		if old == tabNode {
			if got := c.Command("promote node1"); got != "ok" {
				t.Fatalf("promote node1: %q", got)
			}
			old = "node1"
		}
		time.Sleep(time.Second) // writes flowing
		start := time.Now()
		if got := c.Command("stop " + old); got != "ok" {
			t.Fatalf("stop %s: %q", old, got)
		}
		next := ""
		for next = c.Primary(); next == "" || next == old; next = c.Primary() {
			if time.Since(start) > 15*time.Second {
				t.Fatalf("round %d: no primary but %s 15 s after the stop", round, old)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took = append(took, time.Since(start))
		t.Logf("round %d: %s primary %v after SIGTERM to %s", round, next, took[round-1].Round(time.Millisecond), old)
		c.waitDown(t, old)
		u.waitPrimaryEverywhere(t, urls, next, 60*time.Second) // the stopped node among them, back
		if p := c.Primary(); p != next {
			t.Fatalf("round %d: the primary moved again, to %q, when %s came back", round, p, old)
		}
	}
	time.Sleep(time.Second)
	w.stop()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("SIGTERM to new primary: median %v of %v; %d writes, %d retried (%d after a 504, the others through another node after a refused connection); longest write %v, longest answer %v",
		took[len(took)/2].Round(time.Millisecond), took, len(w.ids), w.retried, w.timedOut, w.longest.Round(time.Millisecond), w.longestAnswer.Round(time.Millisecond))
	// Each stop moved the lease by LiteFS's handoff, not by a release and
	// an election (and so did each promote).
	if handoffs := countInNodeLogs(c.Dir, "preserving lease for handoff"); handoffs < len(took) {
		t.Errorf("%d handoffs in LiteFS's logs for %d stops", handoffs, len(took))
	}
	for _, f := range w.failed {
		t.Error(f)
	}
	total := w.checkStored(t, urls[2])
	tab.check(t, total)
}

// waitDown waits until node, told to stop, has gone down. A primary that
// handed its lease off still serves for a moment and names the new
// primary meanwhile, so an answer from it then does not say that it was
// started again.
func (c *localCluster) waitDown(t *testing.T, node string) {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(node, "node"))
	if err != nil {
		t.Fatalf("node name %q", node)
	}
	if err := apitest.WaitRefused(strings.TrimPrefix(c.URL(n), "http://"), 30*time.Second); err != nil {
		t.Fatalf("%s did not stop: %v", node, err)
	}
}

// openTab opens a tab of u on base, waits for its hello, and records what
// it is pushed, until the test ends.
func openTab(t *testing.T, u *user, base string) *tabLog {
	t.Helper()
	ws, err := u.Dial(base, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	if h, err := read(ws, 5*time.Second); err != nil || h.Type != "hello" {
		t.Fatalf("hello: %+v %v", h, err)
	}
	return listen(ws, func(since int64) (*websocket.Conn, error) {
		return u.Dial(base, fmt.Sprintf("?since=%d", since))
	})
}

// countInNodeLogs counts s in every node's log (LiteFS's and the app's)
// under dir.
func countInNodeLogs(dir, s string) int {
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "node.log"))
	n := 0
	for _, p := range logs {
		b, _ := os.ReadFile(p)
		n += strings.Count(string(b), s)
	}
	return n
}

// writers write notes through every node in turn, each with an
// Idempotency-Key, and retry less than the page does (write.js, which
// waits out a failover): once, after 800 ms, with the same key, after a
// 504 or a network error, since a handoff needs no more. With patience
// they retry as the page does, after a 503 too, every 800 ms for that
// long. A node that refuses the connection is down, and the retry goes
// through the next node, as Fly's proxy sends a request to a machine that
// runs.
type writers struct {
	u        *user
	urls     []string
	patience time.Duration // 0: one retry

	pace paced

	mu            sync.Mutex
	ids           map[string]int64 // key → note id, of the writes answered 201
	failed        []string
	longest       time.Duration // of a write, with its retry
	longestAnswer time.Duration // of one request
	retried       int           // after a network error (the node was down) or a 504
	timedOut      int           // after a 504
}

func (w *writers) start(perSecond int) {
	w.ids = map[string]int64{}
	w.pace.start(perSecond, w.write)
}

func (w *writers) stop() { w.pace.stop() }

// paced calls write(0), write(1)… perSecond times a second, each in a
// goroutine of its own, from start until stop, which waits for the calls
// still running.
type paced struct {
	done  chan struct{}
	loop  sync.WaitGroup
	calls sync.WaitGroup
	once  sync.Once
}

func (p *paced) start(perSecond int, write func(i int)) {
	p.done = make(chan struct{})
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	p.loop.Go(func() {
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.done:
				return
			case <-tick.C:
			}
			p.calls.Go(func() { write(i) })
		}
	})
}

func (p *paced) stop() {
	p.once.Do(func() {
		close(p.done)
		p.loop.Wait()
		p.calls.Wait()
	})
}

// write makes write i, and its one retry.
func (w *writers) write(i int) {
	key := fmt.Sprintf("handoff-%d", i)
	node := i % len(w.urls)
	start := time.Now()
	status, body, err := w.post(node, key)
	retried, timedOut := false, false
	for tries := 0; w.retry(status, err) && (tries == 0 || time.Since(start) < w.patience); tries++ {
		retried, timedOut = true, timedOut || status == http.StatusGatewayTimeout
		time.Sleep(800 * time.Millisecond)
		if err != nil {
			node = (node + 1) % len(w.urls)
		}
		status, body, err = w.post(node, key)
	}
	took := time.Since(start)
	w.mu.Lock()
	defer w.mu.Unlock()
	if retried {
		w.retried++
	}
	if timedOut {
		w.timedOut++
	}
	w.longest = max(w.longest, took)
	if err != nil || status != http.StatusCreated {
		w.failed = append(w.failed, fmt.Sprintf("write %s through node%d failed after %v: %d %s %v", key, node+1, took.Round(time.Millisecond), status, strings.TrimSpace(body), err))
		return
	}
	var created struct{ Note struct{ ID int64 } }
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.Note.ID == 0 {
		w.failed = append(w.failed, fmt.Sprintf("write %s: answer %q", key, body))
		return
	}
	w.ids[key] = created.Note.ID
}

// retry says whether a write answered status (or err) is sent again.
func (w *writers) retry(status int, err error) bool {
	return err != nil || status == http.StatusGatewayTimeout || w.patience > 0 && status == http.StatusServiceUnavailable
}

func (w *writers) post(node int, key string) (int, string, error) {
	start := time.Now()
	status, body, _, err := w.u.Try("POST", w.urls[node]+"/api/notes", `{"body":"`+key+`"}`, "Idempotency-Key", key)
	w.mu.Lock()
	w.longestAnswer = max(w.longestAnswer, time.Since(start))
	w.mu.Unlock()
	return status, body, err
}

// checkStored checks that every write answered 201 is stored exactly once,
// under the id it was answered with, and returns how many notes there are.
func (w *writers) checkStored(t *testing.T, base string) int {
	t.Helper()
	seen, total := map[string][]int64{}, 0
	// Every page of the list, newest first, following its cursor.
	for query := "?min_version=1&limit=1000"; ; {
		status, body, _, err := w.u.Try("GET", base+"/api/notes"+query, "")
		if err != nil || status != http.StatusOK {
			t.Fatalf("list notes: %d %v", status, err)
		}
		var list struct {
			Notes []struct {
				ID   int64
				Body string
			}
			Next *int64
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatal(err)
		}
		total += len(list.Notes)
		for _, n := range list.Notes {
			seen[n.Body] = append(seen[n.Body], n.ID)
		}
		if list.Next == nil {
			break
		}
		query = fmt.Sprintf("?min_version=1&limit=1000&before=%d", *list.Next)
	}
	for key, id := range w.ids {
		if got := seen[key]; len(got) != 1 || got[0] != id {
			t.Errorf("write %s answered 201 with note %d; stored as %v", key, id, got)
		}
	}
	for key, ids := range seen {
		if len(ids) != 1 {
			t.Errorf("write %s stored %d times: %v", key, len(ids), ids)
		}
	}
	return total
}

// tabLog is what a tab was pushed.
type tabLog struct {
	mu       sync.Mutex
	versions []int64
	err      error
}

// listen records the note_changed versions pushed to ws until it closes.
func listen(ws *websocket.Conn, redial func(since int64) (*websocket.Conn, error)) *tabLog {
	l := &tabLog{}
	go func() {
		for {
			e, err := read(ws, time.Hour)
			l.mu.Lock()
			if err != nil && websocket.CloseStatus(err) == websocket.StatusTryAgainLater && redial != nil {
				// Closed as too slow (docs/PROTOCOL.md §4: more than 64
				// messages queued, as when a node that just took the lease
				// commits the writes it held in one batch): the tab comes
				// back with since, as the page does, and its sync covers
				// what it missed.
				since := int64(len(l.versions))
				l.mu.Unlock()
				if ws, err = redial(since); err == nil {
					continue
				}
				l.mu.Lock()
			}
			if err != nil {
				l.err = err
				l.mu.Unlock()
				return
			}
			switch {
			case e.Type == "note_changed" && e.Op == "sync":
				for v := int64(len(l.versions)) + 1; v <= e.Version; v++ {
					l.versions = append(l.versions, v)
				}
			case e.Type == "note_changed":
				l.versions = append(l.versions, e.Version)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// check waits until the tab has been pushed total changes, and checks that
// it got versions 1..total, each once, in order.
func (l *tabLog) check(t *testing.T, total int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		got, err := slices.Clone(l.versions), l.err
		l.mu.Unlock()
		if len(got) >= total || err != nil || time.Now().After(deadline) {
			for i, v := range got {
				if v != int64(i+1) {
					t.Fatalf("the tab's change %d is v%d, want v%d (missed, duplicated or out of order)", i+1, v, i+1)
				}
			}
			if len(got) != total {
				t.Fatalf("the tab was pushed %d changes, want %d (%v)", len(got), total, err)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
