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

func TestEditingReports(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("alice")
	ws := dialWS(t, ts, b)
	defer ws.CloseNow()
	if m := nextPresence(t, ws); m["tabs"] != 1.0 {
		t.Fatalf("first presence %v, want 1 tab", m)
	}
	// A second tab, whose hello announces its connection id.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	second, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", &websocket.DialOptions{HTTPClient: b.HTTP})
	if err != nil {
		t.Fatal(err)
	}
	defer second.CloseNow()
	_, p, err := second.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hello struct{ Type, Conn string }
	if json.Unmarshal(p, &hello); hello.Type != "hello" || hello.Conn == "" {
		t.Fatalf("hello %s carries no conn", p)
	}
	conn := hello.Conn

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
