package e2e

// The Assistant on a cluster: POST /api/assistant sent to a
// replica is forwarded to the primary and streams back through the
// forwarder; the note it creates reaches a WebSocket of the same user on
// another node.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeChatServer is an OpenAI-compatible chat-completions server: the first
// round asks for create_note (its name and arguments split across chunks),
// the second answers with text, after delay when the user's message starts
// with "slowly", after a minute when it starts with "hang".
func fakeChatServer(t *testing.T, delay time.Duration, gaveUp chan<- struct{}) *httptest.Server {
	chunk := func(delta map[string]any, finish any) string {
		b, _ := json.Marshal(map[string]any{"object": "chat.completion.chunk",
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}})
		return string(b)
	}
	tool := func(id, name, args string) map[string]any {
		tc := map[string]any{"index": 0, "function": map[string]any{"name": name, "arguments": args}}
		if id != "" {
			tc["id"], tc["type"] = id, "function"
		}
		return map[string]any{"tool_calls": []any{tc}}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		send := func(s string) { fmt.Fprintf(w, "data: %s\n\n", s); _ = rc.Flush() }
		last := req.Messages[len(req.Messages)-1]
		if last.Role == "user" {
			body := strings.TrimPrefix(strings.TrimPrefix(last.Content, "slowly "), "hang ")
			args, _ := json.Marshal(map[string]string{"body": body})
			send(chunk(map[string]any{"content": "On it. "}, nil))
			send(chunk(tool("call_1", "create", string(args[:5])), nil))
			send(chunk(tool("", "_note", string(args[5:])), nil))
			send(chunk(map[string]any{}, "tool_calls"))
		} else {
			if first := req.Messages[1].Content; strings.HasPrefix(first, "slowly ") || strings.HasPrefix(first, "hang ") {
				wait := delay
				if strings.HasPrefix(first, "hang ") {
					wait = time.Minute
				}
				send(chunk(map[string]any{"content": "Thinking… "}, nil))
				select {
				case <-time.After(wait):
				case <-r.Context().Done():
					select {
					case gaveUp <- struct{}{}:
					default:
					}
					return
				}
			}
			send(chunk(map[string]any{"content": "Created."}, nil))
			send(chunk(map[string]any{}, "stop"))
		}
		send("[DONE]")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// assistantEvents posts a message and returns the event types and the
// time each arrived.
func (u *user) assistantEvents(t *testing.T, base, msg string) ([]string, []time.Duration) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"message": msg})
	req, _ := http.NewRequest("POST", base+"/api/assistant", strings.NewReader(string(body)))
	req.Header.Set("Cookie", u.Cookie())
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /api/assistant on %s: %d", base, resp.StatusCode)
	}
	var types []string
	var at []time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if typ, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			types = append(types, typ)
			at = append(at, time.Since(start))
		}
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(line, `"error"`) {
			t.Logf("event data: %s", line)
		}
	}
	return types, at
}

func TestClusterAssistantForwardedStream(t *testing.T) {
	const delay = 6 * time.Second // longer than a forwarded write's 4.5 s bound
	gaveUp := make(chan struct{}, 1)
	fake := fakeChatServer(t, delay, gaveUp)
	c := startCluster(t, 3, "ASSISTANT_BASE_URL="+fake.URL, "ASSISTANT_MODEL=fake", "ASSISTANT_API_KEY=sk-e2e")
	alice := signup(t, c.URL(2), "alice")
	ws, err := alice.Dial(c.URL(3), "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if h, err := read(ws, 5*time.Second); err != nil || h.Type != "hello" {
		t.Fatalf("hello: %+v %v", h, err)
	}

	// Sent to node2, a replica: forwarded to node1, streamed back.
	types, _ := alice.assistantEvents(t, c.URL(2), "buy milk")
	if got := strings.Join(types, ","); got != "token,tool_call,tool_result,token,done" {
		t.Fatalf("events through the replica: %s", got)
	}
	e, err := read(ws, 10*time.Second)
	if err != nil || e.Type != "note_changed" || e.Op != "created" || e.Node != "node1" {
		t.Fatalf("node3 WebSocket: %+v %v", e, err)
	}

	t.Run("a stream longer than a forwarded write's time bound", func(t *testing.T) {
		types, at := alice.assistantEvents(t, c.URL(2), "slowly call mom")
		got := strings.Join(types, ",")
		if got != "token,tool_call,tool_result,token,token,done" {
			t.Errorf("events of a slow answer through the replica: %s (at %v)", got, at)
		}
		if len(at) > 0 && at[len(at)-1] < delay {
			t.Errorf("the answer ended after %v, before the model's %v", at[len(at)-1], delay)
		}
	})

	t.Run("a client that leaves after the time bound stops the agent on the primary", func(t *testing.T) {
		if testing.Short() {
			t.Skip("slow")
		}
		body, _ := json.Marshal(map[string]string{"message": "hang water the plants"})
		req, _ := http.NewRequest("POST", c.URL(2)+"/api/assistant", strings.NewReader(string(body)))
		req.Header.Set("Cookie", alice.Cookie())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // past the forwarded write's 4.5 s bound
		resp.Body.Close()           // the client leaves
		select {
		case <-gaveUp:
		case <-time.After(8 * time.Second):
			t.Fatal("the agent went on calling the model after its client left")
		}
		// The model saw its caller go; the handler unwinds and frees the
		// user's slot a moment later.
		var (
			status int
			out    string
		)
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			status, out, _, err = alice.Try("POST", c.URL(2)+"/api/assistant", `{"message":"list my notes"}`)
			if err != nil || status != http.StatusConflict || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || status != 200 {
			t.Fatalf("the next request: %d %s %v", status, out, err)
		}
	})
}
