package assistant

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"notesync/internal/ssetest"
)

// answerWith is a chat-completions server that answers every call with
// the data lines, then [DONE], and records each call's headers.
func answerWith(t *testing.T, calls *[]http.Header, data ...string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls = append(*calls, r.Header.Clone())
		w.Header().Set("Content-Type", "text/event-stream")
		for _, d := range data {
			fmt.Fprintf(w, "data: %s\n\n", d)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// ask runs the model on msg with tools that do nothing, and returns the
// run's error and events.
func ask(t *testing.T, m *Model, msg string) (error, []ssetest.Event) {
	t.Helper()
	var out bytes.Buffer
	run := &agentRun{tools: &recordingTools{}, em: &sseEmitter{w: &out}, maxCalls: DefaultMaxToolCalls}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.run(ctx, msg, run)
	return err, ssetest.Read(t, &out)
}

func TestModelTakesNothingFromTheEnvironment(t *testing.T) {
	var calls []http.Header
	srv := answerWith(t, &calls, `{"choices":[{"index":0,"delta":{"content":"Hello."},"finish_reason":"stop"}]}`)
	// OpenAI's key, organization or headers in the environment must never
	// reach another server, nor may the environment move the model
	// elsewhere.
	t.Setenv("OPENAI_API_KEY", "sk-from-the-environment")
	t.Setenv("OPENAI_ORG_ID", "org-from-the-environment")
	t.Setenv("OPENAI_CUSTOM_HEADERS", "X-From: the-environment")
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	err, evs := ask(t, &Model{BaseURL: srv.URL + "/v1"}, "hi")
	if err != nil {
		t.Fatal(err)
	}
	if got := ssetest.Tokens(evs); got != "Hello." {
		t.Errorf("answer %q, want %q", got, "Hello.")
	}
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	for name, values := range calls[0] {
		if name == "Authorization" || strings.Contains(strings.Join(values, " "), "environment") {
			t.Errorf("header %s: %q came from the environment", name, values)
		}
	}
}

func TestModelAnswerOverTheLimit(t *testing.T) {
	var calls []http.Header
	huge := strings.Repeat("x", maxAnswerBytes)
	srv := answerWith(t, &calls, `{"choices":[{"index":0,"delta":{"content":"`+huge+`"},"finish_reason":"stop"}]}`)
	err, evs := ask(t, &Model{BaseURL: srv.URL}, "hi")
	if err == nil || !strings.Contains(err.Error(), "over 8 MiB") {
		t.Fatalf("error %v, want one saying the answer is over 8 MiB", err)
	}
	if len(evs) != 0 {
		t.Errorf("events %v, want none", evs)
	}
}
