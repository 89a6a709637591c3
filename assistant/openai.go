package assistant

// An agent driven by any OpenAI-compatible chat-completions server (OpenAI,
// llama.cpp's server, Ollama, vLLM) with streaming and tool calling.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

var assistantSystemPrompt = `You are the notesync assistant. You work on the signed-in user's notes, ` +
	`only through the tools ` + toolNames() + `. ` +
	`To change or delete notes described in words, search for them first and use their ids and revs. ` +
	`When a tool reports a conflict, tell the user what the note says now and do not retry unless they ask. ` +
	`Answer briefly in plain language and say what you changed.`

// Model is an OpenAI-compatible chat-completions server (OpenAI, llama.cpp's
// server, Ollama, vLLM), called with streaming and tool calling. Zero limits
// take their defaults.
type Model struct {
	BaseURL    string        // e.g. https://api.openai.com/v1
	Name       string        // empty: the server's default model
	APIKey     string        // never logged, never shown
	HTTPClient *http.Client  // nil: http.DefaultClient
	Timeout    time.Duration // per model call (DefaultTimeout)
	MaxRounds  int           // model calls per message (DefaultMaxRounds)
}

type chatMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content"`
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// streamChunk is one `data:` chunk of a streamed chat completion.
type streamChunk struct {
	Choices []struct {
		Delta struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    *int   `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func strp(s string) *string { return &s }

// run answers msg, executing the model's tool calls through run, for at
// most MaxRounds model calls.
func (m *Model) run(ctx context.Context, msg string, run *agentRun) error {
	rounds := orDefault(m.MaxRounds, DefaultMaxRounds)
	tools := make([]map[string]any, len(assistantTools))
	for i, t := range assistantTools {
		tools[i] = map[string]any{"type": "function", "function": map[string]any{
			"name": t.Name, "description": t.Description, "parameters": t.Parameters}}
	}
	messages := []chatMessage{
		{Role: "system", Content: strp(assistantSystemPrompt)},
		{Role: "user", Content: strp(msg)},
	}
	for round := 0; round < rounds; round++ {
		text, calls, err := m.complete(ctx, messages, tools, run.em)
		if err != nil {
			return err
		}
		if len(calls) == 0 {
			return nil
		}
		asst := chatMessage{Role: "assistant", ToolCalls: calls}
		if text != "" {
			asst.Content = strp(text)
		}
		messages = append(messages, asst)
		overBudget := false
		for _, c := range calls {
			if run.calls >= run.maxCalls {
				overBudget = true
			}
			out, err := run.call(ctx, c.ID, c.Function.Name, c.Function.Arguments)
			if err != nil {
				return err
			}
			content, _ := json.Marshal(out)
			messages = append(messages, chatMessage{Role: "tool", ToolCallID: c.ID, Content: strp(string(content))})
		}
		if overBudget {
			return agentErrorf("stopped: the model asked for more than %d tool calls", run.maxCalls)
		}
	}
	return agentErrorf("stopped: the model was still calling tools after %d rounds", rounds)
}

// complete makes one streamed chat-completions call: its text is streamed
// as tokens, and the tool calls it asked for are returned.
func (m *Model) complete(ctx context.Context, messages []chatMessage, tools []map[string]any, em *sseEmitter) (string, []chatToolCall, error) {
	timeout := orDefault(m.Timeout, DefaultTimeout)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	payload := map[string]any{"messages": messages, "tools": tools, "stream": true}
	if m.Name != "" {
		payload["model"] = m.Name
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return "", nil, err
	}
	url := strings.TrimRight(m.BaseURL, "/") + "/chat/completions"
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", nil, agentErrorf("the assistant's model server URL is not valid")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if m.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+m.APIKey)
	}
	client := m.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err() // the request ended
		}
		if errors.Is(err, context.DeadlineExceeded) || cctx.Err() != nil {
			return agentErrorf("the model server did not answer within %s", timeout)
		}
		return agentErrorf("could not reach the model server")
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", nil, fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, m.httpError(resp)
	}

	var text strings.Builder
	type partial struct {
		id, name string
		args     strings.Builder
	}
	calls := map[int]*partial{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	finished := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data:") {
			continue // blank separators, comments, event:/id: lines
		}
		data := strings.TrimSpace(strings.TrimPrefix(line, "data:"))
		if data == "[DONE]" {
			finished = true
			break
		}
		if data == "" {
			continue
		}
		var ch streamChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return "", nil, agentErrorf("the model server sent a malformed stream chunk")
		}
		if ch.Error != nil {
			return "", nil, agentErrorf("the model server reported an error: %s", m.redact(ch.Error.Message))
		}
		if len(ch.Choices) == 0 {
			continue
		}
		c := ch.Choices[0]
		if c.Delta.Content != nil && *c.Delta.Content != "" {
			text.WriteString(*c.Delta.Content)
			em.token(*c.Delta.Content)
		}
		for i, tc := range c.Delta.ToolCalls {
			idx := i
			if tc.Index != nil {
				idx = *tc.Index
			} else if p := calls[idx]; p != nil && tc.ID != "" && p.id != "" && p.id != tc.ID {
				// Servers that omit index (some Ollama versions) send each
				// call whole: a new id is a new call.
				idx = len(calls)
				for calls[idx] != nil {
					idx++
				}
			}
			p := calls[idx]
			if p == nil {
				if len(calls) >= 64 {
					return "", nil, agentErrorf("the model server sent too many tool calls")
				}
				p = &partial{}
				calls[idx] = p
			}
			if tc.ID != "" {
				p.id = tc.ID
			}
			p.name += tc.Function.Name
			p.args.WriteString(tc.Function.Arguments)
			if p.args.Len() > 256<<10 {
				return "", nil, agentErrorf("the model server sent tool arguments over 256 KiB")
			}
		}
		if c.FinishReason != nil && *c.FinishReason != "" {
			finished = true // some servers send a usage chunk, then [DONE]
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return "", nil, agentErrorf("the model server sent a stream line over 1 MiB")
		}
		return "", nil, fail(err)
	}
	if !finished {
		if ctx.Err() != nil || cctx.Err() != nil {
			return "", nil, fail(cctx.Err())
		}
		return "", nil, agentErrorf("the model server's stream ended early")
	}
	idxs := make([]int, 0, len(calls))
	for i := range calls {
		idxs = append(idxs, i)
	}
	sort.Ints(idxs)
	out := make([]chatToolCall, 0, len(idxs))
	for n, i := range idxs {
		p := calls[i]
		var c chatToolCall
		c.ID, c.Type = p.id, "function"
		if c.ID == "" {
			c.ID = fmt.Sprintf("call_%d", n+1)
		}
		c.Function.Name, c.Function.Arguments = p.name, p.args.String()
		out = append(out, c)
	}
	return text.String(), out, nil
}

// httpError describes an upstream error answer plainly, never with the key.
func (m *Model) httpError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return agentErrorf("the model server refused the assistant's API key (HTTP %d)", resp.StatusCode)
	}
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	detail := ""
	if json.Unmarshal(raw, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		var s string
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			detail = obj.Message
		} else if json.Unmarshal(e.Error, &s) == nil {
			detail = s
		}
	}
	detail = m.redact(detail)
	if r := []rune(detail); len(r) > 300 {
		detail = string(r[:300]) + "…"
	}
	if detail != "" {
		return agentErrorf("the model server answered HTTP %d: %s", resp.StatusCode, detail)
	}
	return agentErrorf("the model server answered HTTP %d", resp.StatusCode)
}

// redact removes the API key from upstream text.
func (m *Model) redact(s string) string {
	if m.APIKey != "" {
		s = strings.ReplaceAll(s, m.APIKey, "[redacted]")
	}
	return s
}
