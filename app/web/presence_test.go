package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// nextPresence reads until a presence message and decodes it.
func nextPresence(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for presence: %v", err)
		}
		var m map[string]any
		if json.Unmarshal(p, &m) == nil && m["type"] == "presence" {
			return m
		}
	}
}

// dialConn opens another WebSocket of b's and returns it with the
// connection id its hello announces.
func dialConn(t *testing.T, ctx context.Context, ts *testServer, b *browser) (*websocket.Conn, string) {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", &websocket.DialOptions{HTTPClient: b.HTTP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	_, p, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hello struct{ Type, Conn string }
	if json.Unmarshal(p, &hello); hello.Type != "hello" || hello.Conn == "" {
		t.Fatalf("hello %s carries no conn", p)
	}
	return ws, hello.Conn
}

// signedInTab starts a server, signs a browser up as name and opens its
// first WebSocket, closed when the test ends.
func signedInTab(t *testing.T, name string) (*testServer, *browser, *websocket.Conn) {
	t.Helper()
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup(name)
	ws := dialWS(t, ts, b)
	t.Cleanup(func() { ws.CloseNow() })
	return ts, b, ws
}

func TestEditingReports(t *testing.T) {
	ts, b, ws := signedInTab(t, "alice")
	if m := nextPresence(t, ws); m["tabs"] != 1.0 {
		t.Fatalf("first presence %v, want 1 tab", m)
	}
	// A second tab, whose hello announces its connection id.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	second, conn := dialConn(t, ctx, ts, b)

	t.Run("a WebSocket tab's editing message counts in every tab's presence", func(t *testing.T) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"editing","note_id":12}`)); err != nil {
			t.Fatal(err)
		}
		for {
			m := nextPresence(t, second)
			if ed, _ := m["editing"].(map[string]any); ed["12"] == 1.0 && m["tabs"] == 2.0 {
				if m["own_editing"] != nil {
					t.Errorf("the second tab is told it edits %v", m["own_editing"])
				}
				break
			}
		}
	})

	t.Run("POST /api/editing reports for the tab's own connection", func(t *testing.T) {
		resp, body := b.Do("POST", "/api/editing", "application/json", fmt.Sprintf(`{"conn":%q,"note_id":3}`, conn))
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		for {
			m := nextPresence(t, second)
			if ed, _ := m["editing"].(map[string]any); ed["3"] == 1.0 {
				if m["own_editing"] != "3" {
					t.Errorf("own_editing %v, want 3", m["own_editing"])
				}
				break
			}
		}
		resp, body = b.Do("POST", "/api/editing", "application/json", fmt.Sprintf(`{"conn":%q,"note_id":null}`, conn))
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("closing the editor: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("reports are validated", func(t *testing.T) {
		other := ts.browser(t)
		other.signup("mallory")
		for _, c := range []struct {
			b         *browser
			ct, body  string
			status    int
			errorSays string
		}{
			{b, "application/json", fmt.Sprintf(`{"conn":%q,"note_id":-1}`, conn), 400, "positive integer"},
			{b, "application/json", fmt.Sprintf(`{"conn":%q,"note_id":"x"}`, conn), 400, "positive integer"},
			{b, "application/json", fmt.Sprintf(`{"conn":%q}`, conn), 400, "note_id"},
			{b, "application/json", fmt.Sprintf(`{"conn":%q,"note_id":1,"extra":1}`, conn), 400, "malformed"},
			{b, "text/plain", `{}`, 415, "Content-Type"},
			{b, "application/json", `{"conn":"nope","note_id":1}`, 404, "no open connection"},
			{other, "application/json", fmt.Sprintf(`{"conn":%q,"note_id":1}`, conn), 404, "no open connection"},
		} {
			resp, body := c.b.Do("POST", "/api/editing", c.ct, c.body)
			if resp.StatusCode != c.status || !strings.Contains(body, c.errorSays) {
				t.Errorf("%s %s: %d %s, want %d saying %q", c.ct, c.body, resp.StatusCode, body, c.status, c.errorSays)
			}
		}
	})

	t.Run("a tab that reports too fast is slowed down", func(t *testing.T) {
		var last int
		for i := 0; i < 60 && last != http.StatusTooManyRequests; i++ {
			resp, _ := b.Do("POST", "/api/editing", "application/json", fmt.Sprintf(`{"conn":%q,"note_id":%d}`, conn, i+1))
			last = resp.StatusCode
		}
		if last != http.StatusTooManyRequests {
			t.Fatalf("60 reports at once: last answered %d, want 429", last)
		}
	})
}

// TestTabsReports: the tabs of a browser that share one connection report
// each tab's editor, and presence counts the tabs and the connections
// (docs/PROTOCOL.md §13).
func TestTabsReports(t *testing.T) {
	ts, b, single := signedInTab(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shared, conn := dialConn(t, ctx, ts, b)

	// waitFor reads presence on ws until it holds tabs tabs in browsers
	// connections with editing, and returns it.
	waitFor := func(t *testing.T, ws *websocket.Conn, tabs, browsers float64, editing string) map[string]any {
		t.Helper()
		for {
			m := nextPresence(t, ws)
			ed, _ := json.Marshal(m["editing"])
			if m["tabs"] == tabs && m["browsers"] == browsers && string(ed) == editing {
				return m
			}
		}
	}

	t.Run("a tabs report over the WebSocket: three tabs, two browsers, each tab's editor its own", func(t *testing.T) {
		report := `{"type":"tabs","tabs":{"t1":12,"t2":null,"t3":7}}`
		if err := shared.Write(ctx, websocket.MessageText, []byte(report)); err != nil {
			t.Fatal(err)
		}
		m := waitFor(t, single, 4, 2, `{"12":1,"7":1}`)
		if m["own_editing"] != nil || m["own_editing_by_tab"] != nil {
			t.Errorf("the single tab is told it edits: %v", m)
		}
		m = waitFor(t, shared, 4, 2, `{"12":1,"7":1}`)
		if by, _ := json.Marshal(m["own_editing_by_tab"]); string(by) != `{"t1":"12","t3":"7"}` || m["own_editing"] != nil {
			t.Errorf("the shared connection is told %v, want its tabs' own editors by tab", m)
		}
	})

	t.Run("POST /api/editing takes a tabs report for the connection", func(t *testing.T) {
		resp, body := b.Do("POST", "/api/editing", "application/json", fmt.Sprintf(`{"conn":%q,"tabs":{"t1":null,"t2":null}}`, conn))
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		waitFor(t, single, 3, 2, `{}`)
	})

	t.Run("tabs reports are validated", func(t *testing.T) {
		many := map[string]any{}
		for i := range 101 {
			many[fmt.Sprintf("t%d", i)] = nil
		}
		tooMany, _ := json.Marshal(map[string]any{"conn": conn, "tabs": many})
		for _, c := range []struct{ body, errorSays string }{
			{fmt.Sprintf(`{"conn":%q,"tabs":{}}`, conn), "1 to 100 tabs"},
			{string(tooMany), "1 to 100 tabs"},
			{fmt.Sprintf(`{"conn":%q,"tabs":{"t1":0}}`, conn), "positive integer"},
			{fmt.Sprintf(`{"conn":%q,"tabs":{"%s":null}}`, conn, strings.Repeat("x", 33)), "tab id"},
			{fmt.Sprintf(`{"conn":%q,"note_id":1,"tabs":{"t1":null}}`, conn), "not both"},
		} {
			resp, body := b.Do("POST", "/api/editing", "application/json", c.body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.errorSays) {
				t.Errorf("%.80s: %d %s, want 400 saying %q", c.body, resp.StatusCode, body, c.errorSays)
			}
		}
	})

	t.Run("the cluster view counts the user's connections and tabs apart", func(t *testing.T) {
		resp, body := b.Do("GET", "/api/cluster", "", "")
		var st struct {
			Members []struct{ Connections, Tabs int }
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil || resp.StatusCode != http.StatusOK || len(st.Members) != 1 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if m := st.Members[0]; m.Connections != 2 || m.Tabs != 3 {
			t.Errorf("connections %d, tabs %d; want 2 and 3", m.Connections, m.Tabs)
		}
	})
}
