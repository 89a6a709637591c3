package realtime

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeHistory is a user's stream as one node holds it: the change that
// reached each version.
type fakeHistory struct {
	mu      sync.Mutex
	changes map[int64][]string // user → change id at version i+1
}

func (h *fakeHistory) set(user int64, changes ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.changes[user] = changes
}

func (h *fakeHistory) ChangeAt(_ context.Context, user, v int64) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cs := h.changes[user]; v >= 1 && v <= int64(len(cs)) {
		return cs[v-1], nil
	}
	return "", nil
}

func (h *fakeHistory) Diverged(ctx context.Context, user, since int64, change string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.changes[user]
	if since > int64(len(cs)) {
		return true, nil
	}
	return since >= 1 && cs[since-1] != change, nil
}

func (h *fakeHistory) Restart(v int64, change string) Message {
	data, _ := json.Marshal(map[string]any{"type": "note_changed", "op": "sync", "version": v, "change": change, "diverged": true})
	return Message{Type: "note_changed", Version: v, Change: change, Data: data}
}

// historyFixture is a fixture whose user 1 has the stream a, b, c.
func historyFixture(t *testing.T) (*fixture, *fakeHistory) {
	h := &fakeHistory{changes: map[int64][]string{}}
	f := newFixture(t, func(e *Endpoint) { e.History = h })
	h.set(1, "a", "b", "c")
	f.setVersion(1, 3)
	return f, h
}

type historyMsg struct {
	Type     string `json:"type"`
	Op       string `json:"op"`
	Version  int64  `json:"version"`
	Change   string `json:"change"`
	Diverged bool   `json:"diverged"`
}

func readHistory(t *testing.T, c *websocket.Conn) historyMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, p, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m historyMsg
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("not JSON: %q", p)
	}
	return m
}

func TestHistory(t *testing.T) {
	t.Run("hello names the change at the version", func(t *testing.T) {
		f, _ := historyFixture(t)
		if m := readHistory(t, f.dial(t, 1, "")); m.Type != "hello" || m.Version != 3 || m.Change != "c" {
			t.Fatalf("hello %+v, want version 3 change c", m)
		}
	})

	t.Run("a client that resumes from a change this node holds is caught up as before", func(t *testing.T) {
		f, c := resumed(t, "?since=2&change=b")
		if m := readHistory(t, c); m.Op != "sync" || m.Version != 3 || m.Diverged {
			t.Fatalf("after hello %+v, want a plain sync to 3", m)
		}
		pushExpect(t, f, c, 4)
	})

	t.Run("a client that has seen another change at its version is told to start again", func(t *testing.T) {
		_, c := resumed(t, "?since=3&change=x")
		if m := readHistory(t, c); m.Op != "sync" || !m.Diverged || m.Version != 3 || m.Change != "c" {
			t.Fatalf("after hello %+v, want a diverged sync at 3, c", m)
		}
	})

	t.Run("a client ahead of this node's stream is told to start again, below what it has seen", func(t *testing.T) {
		f, c := resumed(t, "?since=5&change=e")
		if m := readHistory(t, c); !m.Diverged || m.Version != 3 {
			t.Fatalf("after hello %+v, want a diverged sync at 3", m)
		}
		// The new stream's next change, at 4, reaches it: its floor is
		// this node's version, not the since it came with.
		pushExpect(t, f, c, 4)
	})

	t.Run("a client that names no change is trusted with since, as before", func(t *testing.T) {
		f, c := resumed(t, "?since=5")
		pushExpect(t, f, c, 6) // and nothing before it
	})

	t.Run("a change id that no server sends is refused", func(t *testing.T) {
		f, _ := historyFixture(t)
		resp, err := http.Get(f.srv.URL + "/ws?since=1&change=a%0Ab")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})

	t.Run("over SSE the id carries the change, and Last-Event-ID presents it", func(t *testing.T) {
		f, _ := historyFixture(t)
		ids, events := sseEvents(t, f, "Last-Event-ID", "3.x")
		if len(ids) < 1 || len(events) < 2 || ids[0] != "3.c" || !strings.Contains(events[1], `"diverged":true`) {
			t.Fatalf("events %q with ids %q, want hello id 3.c then a diverged sync", events, ids)
		}
	})
}

func TestCloseAll(t *testing.T) {
	f := newFixture(t)
	a, b := f.dial(t, 1, ""), f.dial(t, 2, "")
	f.waitConns(t, 2)
	if n := f.hub.CloseAll(StatusServiceRestart, "history changed"); n != 2 {
		t.Fatalf("closed %d connections, want 2", n)
	}
	for _, c := range []*websocket.Conn{a, b} {
		if code, reason := expectClose(t, c); code != websocket.StatusServiceRestart || reason != "history changed" {
			t.Fatalf("closed with %d %q, want 1012 history changed", code, reason)
		}
	}
}

// resumed opens a WebSocket of user 1 of a historyFixture with query,
// and reads its hello.
func resumed(t *testing.T, query string) (*fixture, *websocket.Conn) {
	t.Helper()
	f, _ := historyFixture(t)
	c := f.dial(t, 1, query)
	if m := readHistory(t, c); m.Type != "hello" {
		t.Fatalf("first message %+v, want hello", m)
	}
	return f, c
}

// pushExpect broadcasts a change at version v to user 1, and checks that
// it is the next message c gets.
func pushExpect(t *testing.T, f *fixture, c *websocket.Conn, v int64) {
	t.Helper()
	f.hub.Broadcast(1, Message{Type: "note_changed", Version: v, Data: fmt.Appendf(nil, `{"type":"note_changed","version":%d}`, v)})
	if m := readHistory(t, c); m.Version != v || m.Diverged {
		t.Fatalf("then %+v, want version %d", m, v)
	}
}

// sseEvents opens /events as user 1 with hdr and reads its first two
// events: their ids and data.
func sseEvents(t *testing.T, f *fixture, hdr ...string) (ids, data []string) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+"/events", nil)
	req.Header.Set("X-User", strconv.Itoa(1))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for len(data) < 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		case strings.HasPrefix(line, "id: "):
			ids = append(ids, line[4:])
		}
	}
	return ids, data
}
