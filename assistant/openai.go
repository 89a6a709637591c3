package assistant

// An agent driven by any OpenAI-compatible chat-completions server (OpenAI,
// llama.cpp's server, Ollama, vLLM) with streaming and tool calling. The
// openai-go library builds the requests, authenticates and decodes the
// streamed chunks; this file assembles the tool calls from their pieces,
// runs them, and says in plain words what went wrong.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"
)

var systemPrompt = `You are the notesync assistant. You work on the signed-in user's notes, ` +
	`only through the tools ` + toolNames() + `. ` +
	`To change or delete notes described in words, search for them first and use their ids and revs. ` +
	`When a tool reports a conflict, tell the user what the note says now and do not retry unless they ask. ` +
	`Answer briefly in plain language and say what you changed.`

// Model is an OpenAI-compatible chat-completions server, called with
// streaming and tool calling. Zero limits take their defaults.
type Model struct {
	BaseURL    string        // e.g. https://api.openai.com/v1
	Name       string        // empty: the server's default model
	APIKey     string        // never logged, never shown
	HTTPClient *http.Client  // nil: http.DefaultClient
	Timeout    time.Duration // per model call (DefaultTimeout)
	MaxRounds  int           // model calls per message (DefaultMaxRounds)
}

// Bounds on what one model call may send back, so that a runaway server
// cannot fill the node's memory.
const (
	maxAnswerBytes = 8 << 20   // the whole answer, an error answer included
	maxCallArgs    = 256 << 10 // one tool call's arguments
	maxAnswerCalls = 64        // tool calls
)

// modelCall is a tool call a model asked for.
type modelCall struct{ id, name, args string }

// run answers msg, executing the model's tool calls through run, for at
// most MaxRounds model calls.
func (m *Model) run(ctx context.Context, msg string, run *agentRun) error {
	chat, err := m.client()
	if err != nil {
		return err
	}
	rounds := orDefault(m.MaxRounds, DefaultMaxRounds)
	params := openai.ChatCompletionNewParams{
		Model:    m.Name,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(systemPrompt), openai.UserMessage(msg)},
		Tools:    toolParams(),
	}
	for range rounds {
		text, calls, err := m.complete(ctx, chat, params, run.em)
		if err != nil {
			return err
		}
		if len(calls) == 0 {
			return nil
		}
		params.Messages = append(params.Messages, assistantMessage(text, calls))
		overBudget := false
		for _, c := range calls {
			if run.calls >= run.maxCalls {
				overBudget = true
			}
			out, err := run.call(ctx, c.id, c.name, c.args)
			if err != nil {
				return err
			}
			content, _ := json.Marshal(out)
			params.Messages = append(params.Messages, openai.ToolMessage(string(content), c.id))
		}
		if overBudget {
			return agentErrorf("stopped: the model asked for more than %d tool calls", run.maxCalls)
		}
	}
	return agentErrorf("stopped: the model was still calling tools after %d rounds", rounds)
}

// client is the chat-completions service at BaseURL. It is built from
// options alone, so that nothing comes from the environment (OPENAI_API_KEY
// and its kin): a key meant for OpenAI is never sent to another server. A
// failed call is not retried: the round and tool-call limits count calls.
func (m *Model) client() (openai.ChatCompletionService, error) {
	if _, err := url.Parse(m.BaseURL); err != nil {
		return openai.ChatCompletionService{}, agentErrorf("the assistant's model server URL is not valid")
	}
	opts := []option.RequestOption{
		option.WithBaseURL(m.BaseURL),
		option.WithAPIKey(m.APIKey),
		option.WithMaxRetries(0),
		option.WithHeader("Accept", "text/event-stream"),
		option.WithMiddleware(capAnswer),
	}
	if m.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(m.HTTPClient))
	}
	return openai.NewChatCompletionService(opts...), nil
}

// toolParams describes assistantTools to the model.
func toolParams() []openai.ChatCompletionToolUnionParam {
	out := make([]openai.ChatCompletionToolUnionParam, len(assistantTools))
	for i, t := range assistantTools {
		out[i] = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: t.Name, Description: openai.String(t.Description), Parameters: t.Parameters,
		})
	}
	return out
}

// assistantMessage is the model's answer as the next call's history holds
// it: its text, if any, and the tool calls it asked for.
func assistantMessage(text string, calls []modelCall) openai.ChatCompletionMessageParamUnion {
	var msg openai.ChatCompletionAssistantMessageParam
	if text != "" {
		msg.Content.OfString = openai.String(text)
	}
	for _, c := range calls {
		msg.ToolCalls = append(msg.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
			OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
				ID:       c.id,
				Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: c.name, Arguments: c.args},
			},
		})
	}
	return openai.ChatCompletionMessageParamUnion{OfAssistant: &msg}
}

// complete makes one streamed chat-completions call, within Timeout: its
// text is streamed as tokens, and the tool calls it asked for are
// returned.
func (m *Model) complete(ctx context.Context, chat openai.ChatCompletionService, params openai.ChatCompletionNewParams, em *sseEmitter) (string, []modelCall, error) {
	timeout := orDefault(m.Timeout, DefaultTimeout)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var resp *http.Response
	stream := chat.NewStreaming(cctx, params, option.WithResponseInto(&resp))
	defer stream.Close()
	if resp != nil && resp.StatusCode != http.StatusOK {
		return "", nil, m.httpError(resp)
	}
	var text strings.Builder
	var calls callParts
	finished := false
	for stream.Next() {
		chunk := stream.Current()
		if len(chunk.Choices) == 0 {
			continue // a usage chunk
		}
		c := chunk.Choices[0]
		if c.Delta.Content != "" {
			text.WriteString(c.Delta.Content)
			em.token(c.Delta.Content)
		}
		if err := calls.add(c.Delta.ToolCalls); err != nil {
			return "", nil, err
		}
		if c.FinishReason != "" {
			finished = true
		}
	}
	if err := stream.Err(); err != nil {
		return "", nil, m.failure(ctx, cctx, timeout, err)
	}
	if !finished {
		if ctx.Err() != nil || cctx.Err() != nil {
			return "", nil, m.failure(ctx, cctx, timeout, cctx.Err())
		}
		return "", nil, agentErrorf("the model server's stream ended early")
	}
	return text.String(), calls.list(), nil
}

// callParts assembles the tool calls of a streamed answer. A server sends
// a call's id and name first and its arguments in pieces, all under the
// call's index; servers that omit the index (some Ollama versions) send
// each call whole, so there a new id is a new call.
type callParts map[int64]*callPart

type callPart struct {
	id, name string
	args     strings.Builder
}

func (p *callParts) add(deltas []openai.ChatCompletionChunkChoiceDeltaToolCall) error {
	if *p == nil {
		*p = callParts{}
	}
	calls := *p
	for i, tc := range deltas {
		idx := int64(i)
		if tc.JSON.Index.Valid() {
			idx = tc.Index
		} else if c := calls[idx]; c != nil && tc.ID != "" && c.id != "" && c.id != tc.ID {
			idx = int64(len(calls))
			for calls[idx] != nil {
				idx++
			}
		}
		c := calls[idx]
		if c == nil {
			if len(calls) >= maxAnswerCalls {
				return agentErrorf("the model server sent too many tool calls")
			}
			c = &callPart{}
			calls[idx] = c
		}
		if tc.ID != "" {
			c.id = tc.ID
		}
		c.name += tc.Function.Name
		c.args.WriteString(tc.Function.Arguments)
		if c.args.Len() > maxCallArgs {
			return agentErrorf("the model server sent tool arguments over %d KiB", maxCallArgs>>10)
		}
	}
	return nil
}

// list returns the calls in the order of their indexes; a call the server
// gave no id gets one.
func (p callParts) list() []modelCall {
	idxs := make([]int64, 0, len(p))
	for i := range p {
		idxs = append(idxs, i)
	}
	slices.Sort(idxs)
	out := make([]modelCall, len(idxs))
	for n, i := range idxs {
		c := p[i]
		out[n] = modelCall{id: c.id, name: c.name, args: c.args.String()}
		if out[n].id == "" {
			out[n].id = fmt.Sprintf("call_%d", n+1)
		}
	}
	return out
}

// failure says plainly why a model call failed, or ends the run when the
// request is over.
func (m *Model) failure(ctx, cctx context.Context, timeout time.Duration, err error) error {
	var streamErr *ssestream.StreamError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case ctx.Err() != nil:
		return ctx.Err() // the request ended
	case cctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return agentErrorf("the model server did not answer within %s", timeout)
	case errors.As(err, &streamErr):
		if detail := m.redact(errorDetail(streamErr.Event.Data)); detail != "" {
			return agentErrorf("the model server reported an error: %s", detail)
		}
		return agentErrorf("the model server reported an error")
	case errors.As(err, &syntaxErr), errors.As(err, &typeErr):
		return agentErrorf("the model server sent a malformed stream chunk")
	case errors.Is(err, errAnswerTooLarge):
		return agentErrorf("the model server sent over %d MiB in one answer", maxAnswerBytes>>20)
	}
	return agentErrorf("could not reach the model server")
}

// httpError describes an upstream error answer plainly, never with the key.
func (m *Model) httpError(resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return agentErrorf("the model server refused the assistant's API key (HTTP %d)", resp.StatusCode)
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	detail := m.redact(errorDetail(raw))
	if r := []rune(detail); len(r) > 300 {
		detail = string(r[:300]) + "…"
	}
	if detail != "" {
		return agentErrorf("the model server answered HTTP %d: %s", resp.StatusCode, detail)
	}
	return agentErrorf("the model server answered HTTP %d", resp.StatusCode)
}

// errorDetail is the message of {"error": {"message": "..."}} or
// {"error": "..."}, or "".
func errorDetail(raw []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || len(e.Error) == 0 {
		return ""
	}
	var obj struct {
		Message string `json:"message"`
	}
	var s string
	if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	if json.Unmarshal(e.Error, &s) == nil {
		return s
	}
	return ""
}

// redact removes the API key from upstream text.
func (m *Model) redact(s string) string {
	if m.APIKey != "" {
		s = strings.ReplaceAll(s, m.APIKey, "[redacted]")
	}
	return s
}

// errAnswerTooLarge is the read error of an answer over maxAnswerBytes.
var errAnswerTooLarge = errors.New("model server answer over the size limit")

// capAnswer is a middleware that bounds each answer's body to
// maxAnswerBytes.
func capAnswer(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	resp, err := next(req)
	if err == nil && resp.Body != nil {
		resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxAnswerBytes}
	}
	return resp, err
}

type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errAnswerTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
