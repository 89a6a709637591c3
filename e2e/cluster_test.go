// Package e2e runs notesync as users do: the built binary, one node or
// three, each under a real LiteFS mount started from the repository's
// litefs.yml, over HTTP and in a real browser; and the files the Fly.io
// image is made of, with the real LiteFS.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/cluster"
	"notesync/cluster/local"
	"notesync/internal/apitest"
	"notesync/internal/localcluster"
	"notesync/internal/testenv"
)

// localCluster is a cluster of real nodes under LiteFS for one test.
type localCluster struct {
	*local.Launcher
}

// startCluster builds the binary and starts n nodes on a loopback address
// of their own, node1 primary, with a supervisor that restarts dead nodes.
func startCluster(t testing.TB, n int, env ...string) *localCluster {
	t.Helper()
	return runLauncher(t, newLauncher(t, n, env...))
}

// noWriteBudget lifts the budget of writes a user may make (20/s with
// bursts of 100 by default, counted on the primary), for a test whose one
// user writes faster than a person does.
const noWriteBudget = "WRITE_RATE=0"

// newLauncher builds the binary and describes n nodes on a loopback
// address of their own (a run of its own: parallel runs never collide),
// with their state in a temporary directory.
func newLauncher(t testing.TB, n int, env ...string) *local.Launcher {
	t.Helper()
	testenv.NeedFUSE(t)
	return localcluster.Launcher(buildBinaries(t), n, filepath.Join(t.TempDir(), "nodes"),
		append([]string{"LOG_LEVEL=warn"}, nonEmpty(env)...)...)
}

// runLauncher starts l and its supervisor, and stops both when the test
// ends, checking that no mount is left behind.
func runLauncher(t testing.TB, l *local.Launcher) *localCluster {
	t.Helper()
	stop, err := localcluster.Run(context.Background(), l)
	if err != nil {
		dumpLogs(t, l.Dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			dumpLogs(t, l.Dir)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mounts), l.Dir) {
			t.Errorf("a LiteFS mount under %s is left behind", l.Dir)
		}
	})
	return &localCluster{Launcher: l}
}

// buildBinaries builds notesync from the repository into a temporary
// directory and finds the LiteFS binary pinned in go.mod.
func buildBinaries(t testing.TB) localcluster.Binaries {
	t.Helper()
	exe, err := localcluster.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := localcluster.Find(exe)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dumpLogs(t testing.TB, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "node.log"))
	for _, p := range logs {
		b, _ := os.ReadFile(p)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("--- %s (tail)\n%s", p, b)
	}
}

// user is one person with a cookie valid on every node; its helpers are
// e2e's own.
type user struct{ *apitest.Client }

// signup creates an account on base.
func signup(t testing.TB, base, name string) *user {
	t.Helper()
	c := apitest.New(t, base)
	c.SignUp(name, "password1")
	return &user{c}
}

type event = apitest.Event

// read reads one message within d, passing over presence (whose tests
// look at it on their own).
func read(ws *websocket.Conn, d time.Duration) (event, error) {
	p, err := apitest.Next(ws, d)
	if err != nil {
		return event{}, err
	}
	var e event
	err = json.Unmarshal(p, &e)
	return e, err
}

// notesVersion reads the user's version from a node.
func (u *user) notesVersion(base string) (int64, error) {
	status, body, _, err := u.Try("GET", base+"/api/notes", "")
	if err != nil {
		return 0, err
	}
	if status != 200 {
		return 0, fmt.Errorf("GET /api/notes: %d %s", status, body)
	}
	var out struct{ Version int64 }
	err = json.Unmarshal([]byte(body), &out)
	return out.Version, err
}

func TestClusterDeliversEveryChangeOnceInOrderWithoutStaleReads(t *testing.T) {
	c := startCluster(t, 3, noWriteBudget) // 210 writes of one user, back to back
	alice := signup(t, c.URL(2), "alice")  // a write on a replica: forwarded

	const writes = 210
	type tab struct {
		node int
		ws   *websocket.Conn
	}
	var tabs []tab
	for i := 1; i <= 3; i++ {
		ws, err := alice.Dial(c.URL(i), "")
		if err != nil {
			t.Fatalf("dial node%d: %v", i, err)
		}
		defer ws.CloseNow()
		if h, err := read(ws, 5*time.Second); err != nil || h.Type != "hello" || h.Version != 0 {
			t.Fatalf("node%d hello: %+v %v", i, h, err)
		}
		tabs = append(tabs, tab{i, ws})
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(tabs))
	for _, tb := range tabs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := c.URL(tb.node)
			for want := int64(1); want <= writes; want++ {
				e, err := read(tb.ws, 15*time.Second)
				if err != nil {
					errs <- fmt.Errorf("node%d: waiting for v%d: %w", tb.node, want, err)
					return
				}
				if e.Type != "note_changed" || e.Version != want || e.Op != "created" {
					errs <- fmt.Errorf("node%d: got %+v, want created v%d (missed, duplicated or out of order)", tb.node, e, want)
					return
				}
				// The refetch that follows a push must never show older data.
				v, err := alice.notesVersion(base)
				if err != nil {
					errs <- fmt.Errorf("node%d: refetch: %w", tb.node, err)
					return
				}
				if v < want {
					errs <- fmt.Errorf("node%d: stale read: pushed v%d, GET answered v%d", tb.node, want, v)
					return
				}
			}
		}()
	}

	for i := 0; i < writes; i++ {
		node := i%3 + 1 // two writes in three land on replicas
		status, body, _, err := alice.Try("POST", c.URL(node)+"/api/notes", fmt.Sprintf(`{"body":"note %d"}`, i),
			"Idempotency-Key", "w-"+strconv.Itoa(i))
		if err != nil || status != http.StatusCreated {
			t.Fatalf("write %d on node%d: %d %s %v", i, node, status, body, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, tb := range tabs {
		if e, err := read(tb.ws, 300*time.Millisecond); err == nil {
			t.Errorf("node%d: extra message after all writes: %+v", tb.node, e)
		}
	}
}

func TestClusterFaults(t *testing.T) {
	l := newLauncher(t, 3)
	l.Lease = local.LeaseStatic // node1 stays primary through its kill and its freeze below
	c := runLauncher(t, l)
	bob := signup(t, c.URL(1), "bob")

	t.Run("a forged forwarding header is refused", func(t *testing.T) {
		status, body, _, err := bob.Try("POST", c.URL(1)+"/api/notes", `{"body":"forged"}`,
			cluster.HeaderFrom, "node2", cluster.HeaderClient, "10.0.0.1", cluster.HeaderDeadline, "99999999999999", cluster.HeaderSignature, "AAAA")
		if err != nil || status != http.StatusForbidden || !strings.Contains(body, "error") {
			t.Fatalf("forged header: %d %s %v", status, body, err)
		}
		if v, _ := bob.notesVersion(c.URL(1)); v != 0 {
			t.Fatalf("version moved to %d", v)
		}
	})

	t.Run("a replica forwards If-Match, and a stale write answers 412 with the note, intact", func(t *testing.T) {
		replica := c.URL(3)
		status, body, _, err := bob.Try("POST", replica+"/api/notes", `{"body":"first"}`, "Idempotency-Key", "rev-1")
		if err != nil || status != http.StatusCreated {
			t.Fatalf("create through node3: %d %s %v", status, body, err)
		}
		var created struct{ Note struct{ ID, Rev int64 } }
		json.Unmarshal([]byte(body), &created)
		path := fmt.Sprintf("%s/api/notes/%d", replica, created.Note.ID)
		status, body, hdr, err := bob.Try("PATCH", path, `{"body":"second"}`, "If-Match", `"1"`)
		if err != nil || status != http.StatusOK || hdr.Get("ETag") != `"2"` {
			t.Fatalf("PATCH with the current revision through node3: %d %s ETag %q %v", status, body, hdr.Get("ETag"), err)
		}
		for _, m := range []struct{ method, body string }{{"PATCH", `{"body":"stale"}`}, {"DELETE", ""}} {
			status, body, hdr, err = bob.Try(m.method, path, m.body, "If-Match", `"1"`)
			var stale struct {
				Error string
				Note  struct {
					ID   int64
					Body string
					Rev  int64
				}
			}
			json.Unmarshal([]byte(body), &stale)
			if err != nil || status != http.StatusPreconditionFailed || stale.Error == "" || stale.Note.ID != created.Note.ID || stale.Note.Body != "second" || stale.Note.Rev != 2 || hdr.Get("ETag") != `"2"` {
				t.Fatalf("stale %s through node3: %d %s %v", m.method, status, body, err)
			}
		}
		status, body, _, err = bob.Try("DELETE", path, "", "If-Match", `"2"`)
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("DELETE through node3: %d %s %v", status, body, err)
		}
		status, body, _, err = bob.Try("POST", path+"/restore", "", "Idempotency-Key", "undo-rev")
		if err != nil || status != http.StatusOK || !strings.Contains(body, `"second"`) {
			t.Fatalf("restore through node3: %d %s %v", status, body, err)
		}
	})

	t.Run("log-out on one node closes the session's sockets on every node", func(t *testing.T) {
		carol := signup(t, c.URL(1), "carol")
		var socks []*websocket.Conn
		for i := 1; i <= 3; i++ {
			ws, err := carol.Dial(c.URL(i), "")
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			read(ws, 5*time.Second)
			socks = append(socks, ws)
		}
		cookie := carol.Cookie() // the jar forgets it at log-out; a thief would not
		if status, _, _, err := carol.Try("POST", c.URL(2)+"/logout", ""); err != nil || status != http.StatusSeeOther {
			t.Fatalf("logout: %d %v, want 303 to /login", status, err)
		}
		for i, ws := range socks {
			_, err := read(ws, 20*time.Second)
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Errorf("node%d: socket ended with %v, want 1008", i+1, err)
			}
		}
		if status, _, _, _ := carol.Try("GET", c.URL(3)+"/api/notes", "", "Cookie", cookie); status != http.StatusUnauthorized {
			t.Errorf("the cookie still works on node3: %d", status)
		}
	})

	t.Run("a killed replica comes back and its tabs converge", func(t *testing.T) {
		ws, err := bob.Dial(c.URL(3), "")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		read(ws, 5*time.Second)
		pid, done := c.Node(3)
		// Kill LiteFS and its app at once, as a crash would.
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-done
		// Writes go on through the other nodes meanwhile.
		var last int64
		for i := 0; i < 5; i++ {
			status, body, _, err := bob.Try("POST", c.URL(2)+"/api/notes", `{"body":"while node3 is down"}`, "Idempotency-Key", "down-"+strconv.Itoa(i))
			if err != nil || status != http.StatusCreated {
				t.Fatalf("write during outage: %d %s %v", status, body, err)
			}
			var r struct{ Version int64 }
			json.Unmarshal([]byte(body), &r)
			last = r.Version
		}
		// The old tab's socket is gone; a reconnect with since catches up.
		deadline := time.Now().Add(60 * time.Second)
		var ws2 *websocket.Conn
		for time.Now().Before(deadline) {
			if ws2, err = bob.Dial(c.URL(3), "?since=0"); err == nil {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if ws2 == nil {
			t.Fatalf("node3 did not come back: %v", err)
		}
		defer ws2.CloseNow()
		h, err := read(ws2, 10*time.Second)
		if err != nil || h.Type != "hello" {
			t.Fatalf("hello after restart: %+v %v", h, err)
		}
		if h.Version < last {
			// Behind: the catch-up sync must carry the current version.
			if e, err := read(ws2, 10*time.Second); err != nil || e.Op != "sync" {
				t.Fatalf("got %+v %v, want sync", e, err)
			}
		}
		status, body, _, err := bob.Try("GET", c.URL(3)+"/api/notes?min_version="+strconv.FormatInt(last, 10), "")
		if err != nil || status != http.StatusOK {
			t.Fatalf("node3 after restart: %d %s %v", status, body, err)
		}
	})

	t.Run("a replica frozen for 10 s converges within 2 s of waking", func(t *testing.T) {
		ws, err := bob.Dial(c.URL(3), "")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		hello, err := read(ws, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := c.Node(3)
		if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(-pid, syscall.SIGCONT)
		var last int64
		frozen := time.Now()
		for i := 0; time.Since(frozen) < 10*time.Second; i++ {
			status, body, _, err := bob.Try("POST", c.URL(1+i%2)+"/api/notes", `{"body":"while node3 sleeps"}`, "Idempotency-Key", "frozen-"+strconv.Itoa(i))
			if err != nil || status != http.StatusCreated {
				t.Fatalf("write while node3 is frozen: %d %s %v", status, body, err)
			}
			var r struct{ Version int64 }
			json.Unmarshal([]byte(body), &r)
			last = r.Version
			time.Sleep(500 * time.Millisecond)
		}
		syscall.Kill(-pid, syscall.SIGCONT)
		woke := time.Now()
		// Every change arrives, once and in order. The socket may also have
		// been dropped: a write deadline armed when the process froze has
		// expired by the time it wakes. Then the tab reconnects with since,
		// as the page does, and a sync brings it to the current version.
		seen := hello.Version
		for seen < last {
			e, err := read(ws, 5*time.Second)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) || websocket.CloseStatus(err) != -1 {
					t.Fatalf("after waking, waiting for v%d of v%d: %v", seen+1, last, err)
				}
				t.Logf("socket dropped on waking (%v); reconnecting with since=%d", err, seen)
				ws.CloseNow()
				if ws, err = bob.Dial(c.URL(3), "?since="+strconv.FormatInt(seen, 10)); err != nil {
					t.Fatalf("reconnect after waking: %v", err)
				}
				defer ws.CloseNow()
				h, err := read(ws, 5*time.Second)
				if err != nil || h.Type != "hello" {
					t.Fatalf("hello after reconnecting: %+v %v", h, err)
				}
				if h.Version > seen {
					s, err := read(ws, 5*time.Second)
					if err != nil || s.Op != "sync" || s.Version != h.Version {
						t.Fatalf("got %+v %v, want sync to v%d", s, err, h.Version)
					}
					seen = h.Version
				}
				continue
			}
			if e.Version != seen+1 {
				t.Fatalf("got v%d, want v%d", e.Version, seen+1)
			}
			seen++
		}
		if d := time.Since(woke); d > 2*time.Second {
			t.Fatalf("converged %v after waking, want within 2 s", d)
		}
	})

	t.Run("with the primary killed, writes get 503 and never appear", func(t *testing.T) {
		pid, done := c.Node(1)
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-done
		// LiteFS is reaped before its app has finished dying; a write sent
		// to a listener that is still closing has an unknown outcome (504).
		// Wait until node1 refuses connections: then it is down for sure.
		if err := apitest.WaitRefused(strings.TrimPrefix(c.URL(1), "http://"), 5*time.Second); err != nil {
			t.Fatalf("node1 after SIGKILL: %v", err)
		}
		start := time.Now()
		status, body, hdr, err := bob.Try("POST", c.URL(2)+"/api/notes", `{"body":"refused while down"}`, "Idempotency-Key", "dead-1")
		if err != nil || status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || time.Since(start) > 5*time.Second {
			t.Fatalf("write with the primary dead: %d %s %v after %v", status, body, err, time.Since(start))
		}
		if v, err := bob.notesVersion(c.URL(3)); err != nil || v == 0 {
			t.Fatalf("read on a replica with the primary dead: v%d %v", v, err)
		}
		// The supervisor brings node1 back; the refused write never shows.
		deadline := time.Now().Add(60 * time.Second)
		for {
			status, _, _, err := bob.Try("POST", c.URL(2)+"/api/notes", `{"body":"after the primary returned"}`, "Idempotency-Key", "back-1")
			if err == nil && status == http.StatusCreated {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("primary did not come back: %d %v", status, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		_, list, _, _ := bob.Try("GET", c.URL(1)+"/api/notes", "")
		if strings.Contains(list, "refused while down") {
			t.Fatal("a write answered 503 was applied")
		}
		if !strings.Contains(list, "after the primary returned") {
			t.Fatalf("acknowledged write missing: %s", list)
		}
	})

	t.Run("with the primary down, writes fail cleanly and reads go on", func(t *testing.T) {
		ws, err := bob.Dial(c.URL(2), "")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		hello, _ := read(ws, 5*time.Second)
		pid, _ := c.Node(1)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(pid, syscall.SIGCONT)
		start := time.Now()
		status, body, hdr, err := bob.Try("POST", c.URL(2)+"/api/notes", `{"body":"during outage"}`, "Idempotency-Key", "outage-1")
		took := time.Since(start)
		if err != nil || (status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout) || hdr.Get("Retry-After") == "" {
			t.Fatalf("write with the primary frozen: %d %s %v", status, body, err)
		}
		if took > 6*time.Second {
			t.Fatalf("answered after %v, want within 5 s", took)
		}
		if v, err := bob.notesVersion(c.URL(2)); err != nil || v < hello.Version {
			t.Fatalf("read on a replica during the outage: v%d %v", v, err)
		}
		syscall.Kill(pid, syscall.SIGCONT)
		// Retried with its key, a 504 ends in exactly one change.
		var final int
		for i := 0; i < 20; i++ {
			final, body, _, err = bob.Try("POST", c.URL(2)+"/api/notes", `{"body":"during outage"}`, "Idempotency-Key", "outage-1")
			if err == nil && final == http.StatusCreated {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if final != http.StatusCreated {
			t.Fatalf("retry after the outage: %d %s", final, body)
		}
		_, list, _, _ := bob.Try("GET", c.URL(1)+"/api/notes", "")
		if n := strings.Count(list, `"during outage"`); n != 1 {
			t.Fatalf("the retried write appears %d times, want once", n)
		}
	})
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
