package app

// The Assistant (issue 5): POST /api/assistant runs an agent for the
// signed-in user and streams its steps as Server-Sent Events. The agent is
// either an OpenAI-compatible chat-completions server (assistant_openai.go)
// or, with nothing configured, the built-in planner
// (assistant_planner.go). Both act on the user's notes only through the
// tools below, which call the same Store methods as the JSON API, so every
// change bumps the version and the change feed pushes note_changed to
// every tab on every node.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"notesync/realtime"
)

// Assistant limits and defaults.
const (
	assistantMaxBody         = 16 << 10 // request body of POST /api/assistant
	assistantMaxMessageChars = 2000
	assistantMaxSearchChars  = 200
	assistantMaxListed       = 100 // notes returned by one list/search
	defaultAssistantTimeout  = 60 * time.Second
	defaultAssistantRounds   = 6
	defaultAssistantCalls    = 20
	plannerLabel             = "built-in planner"
)

// assistantPage is the data of assistant.html: the chat, and beside it the
// user's notes, kept live as on the notes page (docs/PROTOCOL.md §9).
type assistantPage struct {
	pageFrame
	Model   string
	Notes   []Note
	Version int64
}

// assistantLabel names what answers: the configured model or the planner.
func (s *Server) assistantLabel() string {
	if s.AssistantBaseURL == "" {
		return plannerLabel
	}
	if s.AssistantModel == "" {
		return "the model server's default model"
	}
	return s.AssistantModel
}

func (s *Server) handleAssistantPage(w http.ResponseWriter, r *http.Request) {
	u, err := s.identify(r)
	if err != nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	notes, version, err := s.Store.ListNotes(r.Context(), u.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "assistant.html", assistantPage{
		pageFrame: s.frame(u, "assistant"), Model: s.assistantLabel(), Notes: notes, Version: version,
	})
}

// readAssistantMessage reads {"message": "..."}: 1–2,000 characters of
// valid UTF-8 once trimmed.
func readAssistantMessage(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, assistantMaxBody)
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return "", Errorf(EUNSUPPORTED, "Content-Type must be application/json")
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return "", bodyError(err, "unreadable body")
	}
	if !utf8.Valid(raw) {
		return "", Errorf(EINVALID, "message must be valid UTF-8")
	}
	var in struct {
		Message *string `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&in); err != nil {
		return "", bodyError(err, "malformed JSON")
	}
	if dec.More() {
		return "", Errorf(EINVALID, "malformed JSON: more than one value")
	}
	if in.Message == nil {
		return "", Errorf(EINVALID, `missing "message"`)
	}
	msg := strings.TrimSpace(*in.Message)
	n := utf8.RuneCountInString(msg)
	if n == 0 {
		return "", Errorf(EINVALID, "message must not be empty")
	}
	if n > assistantMaxMessageChars {
		return "", Errorf(EINVALID, "message is %d characters; the limit is %d", n, assistantMaxMessageChars)
	}
	return msg, nil
}

// assistantKeepAlive is how often an idle stream gets an SSE comment.
const assistantKeepAlive = 5 * time.Second

// handleAssistant runs one agent for the user and streams its events.
func (s *Server) handleAssistant(w http.ResponseWriter, r *http.Request, u *Session) {
	msg, err := readAssistantMessage(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// One running agent per user on this node; every POST runs on the
	// primary (replicas forward writes), so that is one per user.
	if _, busy := s.assistantRuns.LoadOrStore(u.ID, struct{}{}); busy {
		s.writeError(w, r, Errorf(ECONFLICT, "the assistant is already working for you in another tab; wait for it or cancel it"))
		return
	}
	defer s.assistantRuns.Delete(u.ID)

	realtime.WriteSSEHeader(w)
	em := &sseEmitter{w: w, rc: http.NewResponseController(w)}
	em.flush()

	// The agent stops when the client goes away (the page's Cancel, a
	// closed tab), seen as the request ending or as a failed write; the
	// keep-alive comments make a write, and so a dead peer's error, happen
	// even while the model is thinking.
	ctx, stop := context.WithCancel(r.Context())
	em.onFail = stop
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(assistantKeepAlive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				em.comment("keep-alive")
			}
		}
	}()
	run := &agentRun{
		tools:    &noteTools{store: s.Store, userID: u.ID, request: newRequestID()},
		em:       em,
		maxCalls: cmp0(s.AssistantMaxToolCalls, defaultAssistantCalls),
	}
	if s.AssistantBaseURL == "" {
		err = runPlanner(ctx, msg, run)
	} else {
		m := &openAIModel{
			BaseURL: s.AssistantBaseURL, Model: s.AssistantModel, APIKey: s.AssistantAPIKey,
			Client:    s.AssistantHTTPClient,
			Timeout:   s.AssistantTimeout,
			MaxRounds: s.AssistantMaxRounds,
		}
		err = m.Run(ctx, msg, run)
	}
	if ctx.Err() != nil {
		return // the client went away: nobody to tell
	}
	if err != nil {
		var ae *agentError
		if errors.As(err, &ae) {
			em.event("error", map[string]string{"error": ae.msg})
		} else {
			s.Logger.Error("assistant", "user", u.ID, "err", err)
			em.event("error", map[string]string{"error": "internal error"})
		}
	}
	em.event("done", struct{}{})
}

func cmp0(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// agentError is an error whose message is plain and safe to show the user.
type agentError struct{ msg string }

func (e *agentError) Error() string { return e.msg }

func agentErrorf(format string, args ...any) error {
	return &agentError{msg: fmt.Sprintf(format, args...)}
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ---------------------------------------------------------------- events

// sseEmitter writes Server-Sent Events and flushes each one. A failed
// write (the client is gone) calls onFail.
type sseEmitter struct {
	mu     sync.Mutex
	w      io.Writer
	rc     *http.ResponseController
	onFail func()
	failed bool
}

func (e *sseEmitter) flush() {
	if e.rc != nil {
		if err := e.rc.Flush(); err != nil {
			e.fail()
		}
	}
}

func (e *sseEmitter) fail() {
	if !e.failed && e.onFail != nil {
		e.onFail()
	}
	e.failed = true
}

func (e *sseEmitter) write(frame []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed {
		return
	}
	if _, err := e.w.Write(frame); err != nil {
		e.fail()
		return
	}
	e.flush()
}

func (e *sseEmitter) event(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte(`{}`)
	}
	e.write(realtime.AppendSSEEvent(nil, name, data, 0))
}

// comment writes an SSE comment, which clients ignore: a keep-alive.
func (e *sseEmitter) comment(text string) { e.write(realtime.AppendSSEComment(nil, text)) }

// token streams a piece of the answer text.
func (e *sseEmitter) token(text string) {
	if text != "" {
		e.event("token", map[string]string{"text": text})
	}
}

// ---------------------------------------------------------------- tools

// agentRun is one request's agent: its tools, its event stream and its
// tool-call budget.
type agentRun struct {
	tools    toolRunner
	em       *sseEmitter
	maxCalls int
	calls    int
}

// toolRunner executes one tool call. A failure the model can act on (bad
// arguments, unknown tool, no such note) is returned as errMsg; err is for
// the rest (the request ended).
type toolRunner interface {
	run(ctx context.Context, callID, name string, args json.RawMessage) (result any, errMsg string, err error)
}

// callOutcome is what a tool call came to, as the model is told it.
type callOutcome struct {
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

// call executes a tool call and streams its tool_call and tool_result
// events. It refuses calls over the budget.
func (a *agentRun) call(ctx context.Context, id, name, arguments string) (callOutcome, error) {
	if id == "" {
		id = "call_" + strconv.Itoa(a.calls+1)
	}
	var argsEvent any = arguments
	raw := json.RawMessage(strings.TrimSpace(arguments))
	if len(raw) == 0 {
		raw = json.RawMessage(`{}`)
	}
	if json.Valid(raw) {
		argsEvent = raw
	}
	a.em.event("tool_call", map[string]any{"id": id, "name": name, "arguments": argsEvent})
	var out callOutcome
	if a.calls >= a.maxCalls {
		out.Error = fmt.Sprintf("tool call limit reached (%d per request); nothing was done", a.maxCalls)
	} else {
		a.calls++
		res, msg, err := a.tools.run(ctx, id, name, raw)
		if err != nil {
			return out, err
		}
		out = callOutcome{Result: res, Error: msg}
		if msg != "" {
			out.Result = nil
		}
	}
	if out.Error != "" {
		a.em.event("tool_result", map[string]any{"id": id, "name": name, "error": out.Error})
	} else {
		a.em.event("tool_result", map[string]any{"id": id, "name": name, "result": out.Result})
	}
	return out, nil
}

// toolSpec describes a tool to a model.
type toolSpec struct {
	Name        string
	Description string
	Parameters  map[string]any
}

var assistantTools = []toolSpec{
	{"list_notes", "List the user's notes, newest first, each with its id and rev (revision).", map[string]any{
		"type": "object", "properties": map[string]any{}, "additionalProperties": false}},
	{"search_notes", "Find the user's notes whose text contains the query (case-insensitive), each with its id and rev.", map[string]any{
		"type": "object", "properties": map[string]any{
			"query": map[string]any{"type": "string", "description": "text to look for"}},
		"required": []string{"query"}, "additionalProperties": false}},
	{"read_note", "Read the note with the given id, with its rev.", map[string]any{
		"type": "object", "properties": map[string]any{
			"id": map[string]any{"type": "integer", "description": "the note's id"}},
		"required": []string{"id"}, "additionalProperties": false}},
	{"create_note", "Create a note with the given text.", map[string]any{
		"type": "object", "properties": map[string]any{
			"body": map[string]any{"type": "string", "description": "the note's text, 1 to 10000 characters"}},
		"required": []string{"body"}, "additionalProperties": false}},
	{"update_note", "Replace the text of the note with the given id. If the note changed since you read it, nothing is changed and the error says how it reads now.", map[string]any{
		"type": "object", "properties": map[string]any{
			"id":   map[string]any{"type": "integer", "description": "the note's id"},
			"rev":  map[string]any{"type": "integer", "description": "the note's rev as you read it"},
			"body": map[string]any{"type": "string", "description": "the new text, 1 to 10000 characters"}},
		"required": []string{"id", "rev", "body"}, "additionalProperties": false}},
	{"delete_note", "Delete the note with the given id. If the note changed since you read it, nothing is deleted and the error says how it reads now.", map[string]any{
		"type": "object", "properties": map[string]any{
			"id":  map[string]any{"type": "integer", "description": "the note's id"},
			"rev": map[string]any{"type": "integer", "description": "the note's rev as you read it"}},
		"required": []string{"id", "rev"}, "additionalProperties": false}},
}

// toolNames lists the tools' names for messages, as "a, b and c".
func toolNames() string {
	names := make([]string, len(assistantTools))
	for i, t := range assistantTools {
		names[i] = t.Name
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// isTool reports whether name is one of assistantTools.
func isTool(name string) bool {
	return slices.ContainsFunc(assistantTools, func(t toolSpec) bool { return t.Name == name })
}

// noteTools runs the tools against the Store as one user.
type noteTools struct {
	store   *Store
	userID  int64
	request string // random per request: scopes the idempotency keys
}

// toolArgs are every tool's arguments; which are required depends on the
// tool.
type toolArgs struct {
	Query *string         `json:"query"`
	Body  *string         `json:"body"`
	ID    json.RawMessage `json:"id"`
	Rev   json.RawMessage `json:"rev"`
}

func (a toolArgs) id() (int64, string) { return positiveArg("id", a.ID) }

func (a toolArgs) rev() (int64, string) { return positiveArg("rev", a.Rev) }

// positiveArg reads a positive integer argument, tolerating "12" and 12.0.
func positiveArg(name string, raw json.RawMessage) (int64, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Sprintf("missing %q", name)
	}
	s := strings.Trim(string(raw), `"`)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && f == float64(int64(f)) {
			v, err = int64(f), nil
		}
	}
	if err != nil || v <= 0 {
		return 0, fmt.Sprintf("%q must be a positive integer", name)
	}
	return v, ""
}

func (a toolArgs) body() (string, string) {
	if a.Body == nil {
		return "", `missing "body"`
	}
	if err := ValidateNoteBody(*a.Body); err != nil {
		return "", ErrorMessage(err)
	}
	return *a.Body, ""
}

// idem is the idempotency of one tool call's write: the request and the
// call id name it, the tool and its arguments fingerprint it.
func (t *noteTools) idem(callID, name string, args json.RawMessage) Idempotency {
	sum := sha256.Sum256(args)
	key := "assistant:" + t.request + ":" + callID
	if len(key) > 255 {
		k := sha256.Sum256([]byte(key))
		key = "assistant:" + hex.EncodeToString(k[:])
	}
	return Idempotency{Key: key, Fingerprint: "ASSISTANT " + name + " " + hex.EncodeToString(sum[:])}
}

func (t *noteTools) run(ctx context.Context, callID, name string, raw json.RawMessage) (any, string, error) {
	if !isTool(name) {
		return nil, fmt.Sprintf("unknown tool %q; the tools are %s", name, toolNames()), nil
	}
	var args toolArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, "arguments must be a JSON object: " + plainJSONError(err), nil
	}
	switch name {
	case "list_notes", "search_notes":
		return t.list(ctx, name, args)
	case "read_note":
		id, msg := args.id()
		if msg != "" {
			return nil, msg, nil
		}
		note, version, err := t.store.GetNote(ctx, t.userID, id)
		if err != nil {
			return t.failed(ctx, err)
		}
		return NoteWrite{Note: note, Version: version}, "", nil
	case "create_note":
		body, msg := args.body()
		if msg != "" {
			return nil, msg, nil
		}
		res, err := t.store.CreateNote(ctx, t.userID, body, t.idem(callID, name, raw))
		return t.wrote(ctx, res, err)
	}
	// update_note and delete_note change a note as it was read.
	id, msg := args.id()
	if msg != "" {
		return nil, msg, nil
	}
	rev, msg := args.rev()
	if msg != "" {
		return nil, msg, nil
	}
	if name == "delete_note" {
		res, err := t.store.DeleteNote(ctx, t.userID, id, Revs{rev}, t.idem(callID, name, raw))
		if err != nil {
			return t.failed(ctx, err)
		}
		return map[string]any{"deleted": id, "version": res.Version}, "", nil
	}
	body, msg := args.body()
	if msg != "" {
		return nil, msg, nil
	}
	res, err := t.store.UpdateNote(ctx, t.userID, id, body, Revs{rev}, t.idem(callID, name, raw))
	return t.wrote(ctx, res, err)
}

// wrote turns a write's outcome into a tool result.
func (t *noteTools) wrote(ctx context.Context, res NoteWrite, err error) (any, string, error) {
	if err != nil {
		return t.failed(ctx, err)
	}
	return res, "", nil
}

// list runs list_notes and search_notes.
func (t *noteTools) list(ctx context.Context, name string, args toolArgs) (any, string, error) {
	query := ""
	if name == "search_notes" {
		if args.Query == nil || strings.TrimSpace(*args.Query) == "" {
			return nil, `missing "query"`, nil
		}
		query = strings.TrimSpace(*args.Query)
		if utf8.RuneCountInString(query) > assistantMaxSearchChars {
			return nil, fmt.Sprintf(`"query" is over %d characters`, assistantMaxSearchChars), nil
		}
	}
	notes, version, err := t.store.ListNotes(ctx, t.userID)
	if err != nil {
		return t.failed(ctx, err)
	}
	found := make([]Note, 0, len(notes))
	lq := strings.ToLower(query)
	for _, n := range notes {
		if query == "" || strings.Contains(strings.ToLower(n.Body), lq) {
			found = append(found, n)
		}
	}
	out := map[string]any{"version": version, "count": len(found)}
	if len(found) > assistantMaxListed {
		found = found[:assistantMaxListed]
		out["truncated"] = true
	}
	out["notes"] = found
	return out, "", nil
}

// failed turns a Store error into a message for the model, or ends the run
// when the request is over.
func (t *noteTools) failed(ctx context.Context, err error) (any, string, error) {
	if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	var e *Error
	switch {
	case ErrorCode(err) == EINTERNAL:
		return nil, "", err
	case errors.As(err, &e) && e.Code == ESTALE && e.Note != nil:
		// Reported, never retried on the model's own: the user's words in
		// the newer revision must not be overwritten unseen.
		return nil, fmt.Sprintf("conflict: note %d was changed elsewhere since it was read, so nothing was changed. It is now at rev %d and says %s. Tell the user; change it only if they ask again.",
			e.Note.ID, e.Note.Rev, quote(e.Note.Body)), nil
	}
	return nil, ErrorMessage(err), nil
}

// plainJSONError shortens an encoding/json error for the model.
func plainJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%q must be a %s", te.Field, jsonKind(te.Field))
	}
	return "malformed JSON"
}

func jsonKind(field string) string {
	if field == "id" {
		return "positive integer"
	}
	return "string"
}
