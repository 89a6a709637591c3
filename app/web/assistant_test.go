package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
	"notesync/assistant"
	"notesync/internal/ssetest"
)

// ---------------------------------------------------------------- helpers

// ask posts a message to the assistant and returns its events.
func (b *browser) ask(msg string) []ssetest.Event {
	b.T.Helper()
	req, _ := http.NewRequest("POST", b.Base+"/api/assistant", strings.NewReader(mustJSON(map[string]string{"message": msg})))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.HTTP.Do(req)
	if err != nil {
		b.T.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		b.T.Fatalf("assistant: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return ssetest.Read(b.T, resp.Body)
}

func (ts *testServer) notesOf(t *testing.T, b *browser) []app.Note {
	t.Helper()
	resp, body := b.Do("GET", "/api/notes", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	var r struct {
		Notes []app.Note `json:"notes"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return r.Notes
}

// ---------------------------------------------------------------- fake model

// fakeModel is an OpenAI-compatible chat-completions server that answers
// each call with the next of its scripted replies.
type fakeModel struct {
	*httptest.Server
	mu       sync.Mutex
	replies  []func(w http.ResponseWriter, r *http.Request)
	requests []map[string]any
	auth     []string
}

func newFakeModel(t *testing.T, replies ...func(w http.ResponseWriter, r *http.Request)) *fakeModel {
	f := &fakeModel{replies: replies}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "not found", 404)
			return
		}
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		n := len(f.requests)
		f.requests = append(f.requests, req)
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		var reply func(http.ResponseWriter, *http.Request)
		if n < len(f.replies) {
			reply = f.replies[n]
		}
		f.mu.Unlock()
		if reply == nil {
			http.Error(w, `{"error":{"message":"no more scripted replies"}}`, 500)
			return
		}
		reply(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeModel) calls() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.requests...)
}

// stream answers with the chunks as SSE data lines, flushing each, then
// [DONE].
func stream(chunks ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for _, c := range chunks {
			fmt.Fprintf(w, "data: %s\n\n", c)
			_ = rc.Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}
}

func contentChunk(text string) string {
	return mustJSON(map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake",
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": text}, "finish_reason": nil}}})
}

func finishChunk(reason string) string {
	return mustJSON(map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake",
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": reason}}})
}

// toolChunk carries one piece of tool call index: id and type only in the
// first piece, as OpenAI sends them.
func toolChunk(index int, id, name, args string) string {
	tc := map[string]any{"index": index, "function": map[string]any{"name": name, "arguments": args}}
	if id != "" {
		tc["id"], tc["type"] = id, "function"
	}
	return mustJSON(map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake",
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"tool_calls": []any{tc}}, "finish_reason": nil}}})
}

// toolCallReply asks for one tool call, its name and arguments split.
func toolCallReply(id, name, args string) func(http.ResponseWriter, *http.Request) {
	half, argHalf := len(name)/2, len(args)/2
	return stream(
		toolChunk(0, id, name[:half], ""),
		toolChunk(0, "", name[half:], args[:argHalf]),
		toolChunk(0, "", "", args[argHalf:]),
		finishChunk("tool_calls"),
	)
}

func textReply(parts ...string) func(http.ResponseWriter, *http.Request) {
	var chunks []string
	for _, p := range parts {
		chunks = append(chunks, contentChunk(p))
	}
	return stream(append(chunks, finishChunk("stop"))...)
}

// useModel points the server at the fake model.
func (ts *testServer) useModel(f *fakeModel) {
	ts.srv.AssistantBaseURL = f.URL + "/v1"
	ts.srv.AssistantModel = "fake-model"
	ts.srv.AssistantAPIKey = "sk-test-secret-key"
	ts.srv.AssistantTimeout = 2 * time.Second
	ts.srv.AssistantMaxRounds = 0
	ts.srv.AssistantMaxToolCalls = 0
}

// ---------------------------------------------------------------- tests

func TestAssistantModelEndToEnd(t *testing.T) {
	ts := newTestServer(t)
	fake := newFakeModel(t,
		stream(
			contentChunk("Sure, "),
			contentChunk("adding it."),
			toolChunk(0, "call_abc", "create", ""),
			toolChunk(0, "", "_note", `{"bo`),
			toolChunk(0, "", "", `dy": "buy`),
			toolChunk(0, "", "", ` milk"}`),
			finishChunk("tool_calls"),
		),
		textReply("Created ", "the note."),
	)
	ts.useModel(fake)
	b := ts.browser(t)
	b.signup("alice")

	// A WebSocket of the same user, as another tab.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, _ := url.Parse(ts.URL)
	hdr := http.Header{}
	for _, c := range b.HTTP.Jar.Cookies(u) {
		hdr.Add("Cookie", c.Name+"="+c.Value)
	}
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	readMsg := func() map[string]any {
		t.Helper()
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				t.Fatalf("ws read: %v", err)
			}
			var m map[string]any
			_ = json.Unmarshal(data, &m)
			if m["type"] != "presence" {
				return m
			}
		}
	}
	if m := readMsg(); m["type"] != "hello" {
		t.Fatalf("first ws message %v", m)
	}

	evs := b.ask("remember to buy milk")
	want := []string{"token", "tool_call", "tool_result", "token", "done"}
	if got := ssetest.Types(evs); !reflect.DeepEqual(got, want) {
		t.Fatalf("events %v, want %v\n%v", got, want, evs)
	}
	if got := ssetest.Tokens(evs); got != "Sure, adding it.Created the note." {
		t.Errorf("tokens %q", got)
	}
	call := ssetest.Of(evs, "tool_call")[0].Data
	if call["id"] != "call_abc" || call["name"] != "create_note" || !reflect.DeepEqual(call["arguments"], map[string]any{"body": "buy milk"}) {
		t.Errorf("tool_call %v", call)
	}
	res := ssetest.Of(evs, "tool_result")[0].Data
	if res["id"] != "call_abc" || res["name"] != "create_note" || res["error"] != nil {
		t.Fatalf("tool_result %v", res)
	}
	note := res["result"].(map[string]any)["note"].(map[string]any)
	if note["body"] != "buy milk" {
		t.Errorf("result %v", res)
	}

	notes := ts.notesOf(t, b)
	if len(notes) != 1 || notes[0].Body != "buy milk" {
		t.Fatalf("notes %+v", notes)
	}
	m := readMsg()
	if m["type"] != "note_changed" || m["op"] != "created" || int64(m["note_id"].(float64)) != notes[0].ID {
		t.Fatalf("ws message %v, want note_changed created %d", m, notes[0].ID)
	}

	// What the model server was sent.
	reqs := fake.calls()
	if len(reqs) != 2 {
		t.Fatalf("%d upstream calls, want 2", len(reqs))
	}
	if reqs[0]["model"] != "fake-model" || reqs[0]["stream"] != true || len(reqs[0]["tools"].([]any)) != len(assistant.ToolNames()) {
		t.Errorf("first upstream request %v", reqs[0])
	}
	if fake.auth[0] != "Bearer sk-test-secret-key" {
		t.Errorf("Authorization %q", fake.auth[0])
	}
	msgs := reqs[1]["messages"].([]any)
	last2 := msgs[len(msgs)-2].(map[string]any)
	last := msgs[len(msgs)-1].(map[string]any)
	tcs := last2["tool_calls"].([]any)
	fn := tcs[0].(map[string]any)["function"].(map[string]any)
	if last2["role"] != "assistant" || fn["name"] != "create_note" || fn["arguments"] != `{"body": "buy milk"}` {
		t.Errorf("assistant message %v", last2)
	}
	if last["role"] != "tool" || last["tool_call_id"] != "call_abc" || !strings.Contains(last["content"].(string), "buy milk") {
		t.Errorf("tool message %v", last)
	}

	// The page names the model and never carries the key.
	resp, page := b.Do("GET", "/assistant", "", "")
	if resp.StatusCode != 200 || !strings.Contains(page, "fake-model") || strings.Contains(page, "sk-test-secret-key") {
		t.Errorf("assistant page %d: model named %v, key shown %v", resp.StatusCode, strings.Contains(page, "fake-model"), strings.Contains(page, "sk-test-secret-key"))
	}
}

func TestAssistantModelFailures(t *testing.T) {
	ts := newTestServer(t)
	type check func(t *testing.T, evs []ssetest.Event)
	errorSays := func(sub string) check {
		return func(t *testing.T, evs []ssetest.Event) {
			errs := ssetest.Of(evs, "error")
			if len(errs) != 1 || !strings.Contains(errs[0].Data["error"].(string), sub) {
				t.Fatalf("want one error event containing %q, got %v", sub, evs)
			}
			if strings.Contains(mustJSON(evs), "sk-test-secret-key") {
				t.Fatal("the key leaked into the events")
			}
		}
	}
	toolErrorSays := func(subs ...string) check {
		return func(t *testing.T, evs []ssetest.Event) {
			rs := ssetest.Of(evs, "tool_result")
			if len(rs) != len(subs) {
				t.Fatalf("want %d tool_result, got %v", len(subs), evs)
			}
			for i, sub := range subs {
				e, _ := rs[i].Data["error"].(string)
				if !strings.Contains(e, sub) {
					t.Errorf("tool_result %d: error %q, want it to contain %q", i, e, sub)
				}
			}
			if len(ssetest.Of(evs, "error")) != 0 {
				t.Errorf("unexpected error event: %v", evs)
			}
		}
	}
	stall := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	cases := []struct {
		name    string
		timeout time.Duration
		replies []func(http.ResponseWriter, *http.Request)
		check   check
	}{
		{"HTTP 500", 0, []func(http.ResponseWriter, *http.Request){func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(500)
			io.WriteString(w, `{"error":{"message":"model overloaded"}}`)
		}}, errorSays("HTTP 500: model overloaded")},
		{"HTTP 401 never echoes the key", 0, []func(http.ResponseWriter, *http.Request){func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided: sk-test-secret-key"}}`)
		}}, errorSays("refused the assistant's API key")},
		{"no answer before the timeout", 300 * time.Millisecond, []func(http.ResponseWriter, *http.Request){stall}, errorSays("did not answer within")},
		{"stream stalls before the timeout", 300 * time.Millisecond, []func(http.ResponseWriter, *http.Request){func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: %s\n\n", toolChunk(0, "call_1", "create_", `{"body":`))
			_ = http.NewResponseController(w).Flush()
			stall(w, r)
		}}, errorSays("did not answer within")},
		{"malformed chunk", 0, []func(http.ResponseWriter, *http.Request){stream(
			toolChunk(0, "call_1", "create_note", `{"body":"x"}`),
			`{"choices":[{"delta":`,
			finishChunk("tool_calls"),
		)}, errorSays("malformed")},
		{"stream cut before [DONE]", 0, []func(http.ResponseWriter, *http.Request){func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "data: %s\n\n", toolChunk(0, "call_1", "create_note", `{"body":"x"}`))
		}}, errorSays("ended early")},
		{"unknown tool", 0, []func(http.ResponseWriter, *http.Request){
			toolCallReply("call_1", "drop_database", `{}`),
			textReply("Sorry."),
		}, toolErrorSays(`unknown tool "drop_database"`)},
		{"bad arguments", 0, []func(http.ResponseWriter, *http.Request){
			stream(
				toolChunk(0, "c1", "create_note", `{"body":""}`),
				toolChunk(1, "c2", "update_note", `{"id":-3,"body":"x"}`),
				toolChunk(2, "c3", "delete_note", `not json`),
				toolChunk(3, "c4", "create_note", `{"body":42}`),
				toolChunk(4, "c5", "delete_note", `{"id":999,"rev":1}`),
				toolChunk(5, "c6", "search_notes", `{}`),
				toolChunk(6, "c7", "update_note", `{"id":1,"body":"x"}`),
				finishChunk("tool_calls"),
			),
			textReply("I could not."),
		}, toolErrorSays("The note is empty", "positive integer", "must be a JSON object", `"body" must be a string`, "not found", `missing "query"`, `missing "rev"`)},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := newFakeModel(t, c.replies...)
			ts.useModel(fake)
			if c.timeout > 0 {
				ts.srv.AssistantTimeout = c.timeout
			}
			b := ts.browser(t)
			b.signup(fmt.Sprintf("fail%d", i))
			keep := b.createNote("keep me")
			start := time.Now()
			evs := b.ask("create a note x")
			if time.Since(start) > 3*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if evs[len(evs)-1].Type != "done" {
				t.Errorf("last event %v, want done", evs[len(evs)-1])
			}
			c.check(t, evs)
			if notes := ts.notesOf(t, b); len(notes) != 1 || notes[0].ID != keep || notes[0].Body != "keep me" {
				t.Errorf("notes changed: %+v", notes)
			}
		})
	}
}

func TestAssistantModelLimits(t *testing.T) {
	ts := newTestServer(t)
	t.Run("tool calls per request", func(t *testing.T) {
		fake := newFakeModel(t, stream(
			toolChunk(0, "a", "list_notes", `{}`),
			toolChunk(1, "b", "list_notes", `{}`),
			toolChunk(2, "c", "create_note", `{"body":"over the limit"}`),
			finishChunk("tool_calls"),
		))
		ts.useModel(fake)
		ts.srv.AssistantMaxToolCalls = 2
		b := ts.browser(t)
		b.signup("limits1")
		evs := b.ask("go")
		rs := ssetest.Of(evs, "tool_result")
		if len(rs) != 3 || rs[2].Data["error"] == nil || !strings.Contains(rs[2].Data["error"].(string), "limit") {
			t.Fatalf("events %v", evs)
		}
		if len(ssetest.Of(evs, "error")) != 1 || len(ts.notesOf(t, b)) != 0 {
			t.Fatalf("events %v", evs)
		}
	})
	t.Run("rounds", func(t *testing.T) {
		var replies []func(http.ResponseWriter, *http.Request)
		for range 5 {
			replies = append(replies, toolCallReply("x", "list_notes", `{}`))
		}
		fake := newFakeModel(t, replies...)
		ts.useModel(fake)
		ts.srv.AssistantMaxRounds = 3
		b := ts.browser(t)
		b.signup("limits2")
		evs := b.ask("go")
		if len(fake.calls()) != 3 {
			t.Errorf("%d upstream calls, want 3", len(fake.calls()))
		}
		errs := ssetest.Of(evs, "error")
		if len(errs) != 1 || !strings.Contains(errs[0].Data["error"].(string), "3 rounds") {
			t.Fatalf("events %v", evs)
		}
	})
}

func TestAssistantAccess(t *testing.T) {
	ts := newTestServer(t)
	t.Run("no session: 401 for the API, the page redirects to /login", func(t *testing.T) {
		b := ts.browser(t)
		resp, body := b.Do("POST", "/api/assistant", "application/json", `{"message":"list my notes"}`)
		jsonError(t, resp, body, http.StatusUnauthorized)
		resp, _ = b.Do("GET", "/assistant", "", "")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET /assistant: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("cross-site is refused", func(t *testing.T) {
		b := ts.browser(t)
		b.signup("xsite")
		resp, body := b.Do("POST", "/api/assistant", "application/json", `{"message":"create a note to x"}`,
			"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
		jsonError(t, resp, body, http.StatusForbidden)
	})
	t.Run("bad input", func(t *testing.T) {
		b := ts.browser(t)
		b.signup("badinput")
		for _, c := range []struct {
			ct, body string
			status   int
		}{
			{"application/json", `{"message":""}`, 400},
			{"application/json", `{"message":"   "}`, 400},
			{"application/json", `{}`, 400},
			{"application/json", `{"message":`, 400},
			{"application/json", mustJSON(map[string]string{"message": strings.Repeat("é", 2001)}), 400},
			{"application/json", mustJSON(map[string]string{"message": strings.Repeat("a", 17<<10)}), 413},
			{"text/plain", `{"message":"hi"}`, 415},
		} {
			resp, body := b.Do("POST", "/api/assistant", c.ct, c.body)
			jsonError(t, resp, body, c.status)
		}
	})
	t.Run("one running agent per user: 409; cancelling stops the agent", func(t *testing.T) {
		started := make(chan struct{}, 1)
		stopped := make(chan struct{}, 1)
		fake := newFakeModel(t, func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			<-r.Context().Done()
			stopped <- struct{}{}
		})
		ts.useModel(fake)
		ts.srv.AssistantTimeout = 10 * time.Second
		b := ts.browser(t)
		b.signup("busy")
		other := ts.browser(t)
		other.signup("notbusy")

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/api/assistant", strings.NewReader(`{"message":"hi"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("the agent did not call the model")
		}
		r2, body := b.Do("POST", "/api/assistant", "application/json", `{"message":"list my notes"}`)
		jsonError(t, r2, body, http.StatusConflict)

		// Another user is not held up (the planner answers them).
		ts.srv.AssistantBaseURL = ""
		if evs := other.ask("list my notes"); ssetest.Types(evs)[len(ssetest.Types(evs))-1] != "done" {
			t.Errorf("other user: %v", evs)
		}

		cancel() // the client goes away
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("the agent's upstream call went on after the client left")
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, body := b.Do("POST", "/api/assistant", "application/json", `{"message":"list my notes"}`)
			if resp.StatusCode == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still refused after the cancel: %d %s", resp.StatusCode, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestAssistantPlannerEndToEnd(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("planner")
	resp, page := b.Do("GET", "/assistant", "", "")
	if resp.StatusCode != 200 || !strings.Contains(page, "built-in planner") || !strings.Contains(page, `id="event-log"`) {
		t.Fatalf("page: %d %s", resp.StatusCode, page)
	}
	other := b.createNote("renew passport")

	evs := b.ask("create a note to buy milk")
	if got, want := ssetest.Types(evs), []string{"token", "tool_call", "tool_result", "token", "done"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	b.ask("add a note: dentist on Tuesday")
	b.ask("note: call the Dentist back")

	evs = b.ask("find notes about the dentist")
	res := ssetest.Of(evs, "tool_result")[0].Data["result"].(map[string]any)
	if res["count"].(float64) != 2 {
		t.Fatalf("search result %v", res)
	}

	evs = b.ask("delete my notes about the dentist")
	if n := len(ssetest.Of(evs, "tool_call")); n != 3 {
		t.Fatalf("want search + 2 deletes, got %v", evs)
	}
	if !strings.Contains(ssetest.Tokens(evs), "Deleted 2") {
		t.Errorf("answer %q", ssetest.Tokens(evs))
	}
	notes := ts.notesOf(t, b)
	var bodies []string
	for _, n := range notes {
		bodies = append(bodies, n.Body)
	}
	if !reflect.DeepEqual(bodies, []string{"buy milk", "renew passport"}) {
		t.Fatalf("notes %q", bodies)
	}

	evs = b.ask(fmt.Sprintf("update note %d to renew passport in May", other))
	if r := ssetest.Of(evs, "tool_result")[0].Data; r["error"] != nil {
		t.Fatalf("update: %v", r)
	}
	evs = b.ask("delete note 99999")
	if r := ssetest.Of(evs, "tool_result")[0].Data; r["error"] == nil || !strings.Contains(ssetest.Tokens(evs), "could not") {
		t.Fatalf("delete of a missing note: %v", evs)
	}
	evs = b.ask("list my notes")
	if !strings.Contains(ssetest.Tokens(evs), "renew passport in May") {
		t.Errorf("list: %q", ssetest.Tokens(evs))
	}
	if len(ts.notesOf(t, b)) != 2 {
		t.Errorf("notes %+v", ts.notesOf(t, b))
	}
}

func TestAssistantModelToolCallsWithoutIndex(t *testing.T) {
	ts := newTestServer(t)
	noIndex := func(id, name, args string) string {
		return mustJSON(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{
			"tool_calls": []any{map[string]any{"id": id, "type": "function", "function": map[string]any{"name": name, "arguments": args}}},
		}, "finish_reason": nil}}})
	}
	fake := newFakeModel(t,
		stream(noIndex("a", "create_note", `{"body":"one"}`), noIndex("b", "create_note", `{"body":"two"}`), finishChunk("tool_calls")),
		textReply("Done."),
	)
	ts.useModel(fake)
	b := ts.browser(t)
	b.signup("noindex")
	evs := b.ask("two notes")
	if n := len(ssetest.Of(evs, "tool_result")); n != 2 {
		t.Fatalf("events %v", evs)
	}
	if notes := ts.notesOf(t, b); len(notes) != 2 {
		t.Fatalf("notes %+v", notes)
	}
}

// editsBetween is the Store as the agent uses it, except that another tab
// edits a note right after the agent has read it. It records the agent's
// writes by the names of their tools.
type editsBetween struct {
	assistant.Notes
	edit  func()
	calls []string
}

func (e *editsBetween) GetNote(ctx context.Context, userID, noteID int64) (assistant.Note, int64, error) {
	defer e.edit()
	return e.Notes.GetNote(ctx, userID, noteID)
}

func (e *editsBetween) ListNotes(ctx context.Context, userID int64) ([]assistant.Note, int64, error) {
	defer e.edit()
	return e.Notes.ListNotes(ctx, userID)
}

func (e *editsBetween) UpdateNote(ctx context.Context, userID, noteID int64, body string, rev int64, idem assistant.Idempotency) (assistant.NoteWrite, error) {
	e.calls = append(e.calls, "update_note")
	return e.Notes.UpdateNote(ctx, userID, noteID, body, rev, idem)
}

func (e *editsBetween) DeleteNote(ctx context.Context, userID, noteID, rev int64, idem assistant.Idempotency) (assistant.NoteWrite, error) {
	e.calls = append(e.calls, "delete_note")
	return e.Notes.DeleteNote(ctx, userID, noteID, rev, idem)
}

func TestAssistantReportsConflicts(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.NewStore(t)
	for i, c := range []struct{ msg, tool string }{
		{"update note %d to the assistant's words", "update_note"},
		{"delete note %d", "delete_note"},
		{"delete my notes about kept", "delete_note"},
	} {
		u := sqlitetest.User(t, s, fmt.Sprintf("user%d", i))
		w, _ := s.CreateNote(ctx, u.ID, "kept words", app.Idempotency{})
		id := w.Note.ID
		msg := c.msg
		if strings.Contains(msg, "%d") {
			msg = fmt.Sprintf(msg, id)
		}
		t.Run(msg, func(t *testing.T) {
			tools := &editsBetween{
				Notes: assistantNotes{s},
				edit: func() {
					if _, err := s.UpdateNote(ctx, u.ID, id, "kept words, edited in a tab meanwhile", nil, app.Idempotency{}); err != nil {
						t.Error(err)
					}
				},
			}
			out := httptest.NewRecorder()
			agent := &assistant.Agent{Notes: tools, UserID: u.ID}
			agent.Answer(out, httptest.NewRequest("POST", "/api/assistant", nil), msg)
			evs := ssetest.Read(t, out.Body)
			var toolErr string
			for _, e := range ssetest.Of(evs, "tool_result") {
				if e.Data["name"] == c.tool {
					toolErr, _ = e.Data["error"].(string)
				}
			}
			if !strings.Contains(toolErr, "conflict") || !strings.Contains(toolErr, "edited in a tab meanwhile") {
				t.Errorf("%s's result: %q, want a conflict naming the newer text", c.tool, toolErr)
			}
			if n := strings.Count(strings.Join(tools.calls, " "), c.tool); n != 1 {
				t.Errorf("calls %v: %s tried %d times, want once (no blind retry)", tools.calls, c.tool, n)
			}
			if answer := ssetest.Tokens(evs); !strings.Contains(answer, "changed elsewhere") {
				t.Errorf("the answer does not tell the user: %q", answer)
			}
			n, _, err := s.GetNote(ctx, u.ID, id)
			if err != nil || n.Body != "kept words, edited in a tab meanwhile" {
				t.Errorf("the note is now %+v (%v): the tab's words were overwritten or deleted", n, err)
			}
		})
	}
}
