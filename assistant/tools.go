package assistant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the tools.
const (
	maxSearchChars = 200
	maxListed      = 100 // notes returned by one list or search
)

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

// The tools' names, as a model calls them.
const (
	listNotes   = "list_notes"
	searchNotes = "search_notes"
	readNote    = "read_note"
	createNote  = "create_note"
	updateNote  = "update_note"
	deleteNote  = "delete_note"
)

// toolSpec describes a tool to a model, and runs it.
type toolSpec struct {
	Name        string
	Description string
	Parameters  map[string]any
	run         func(t *noteTools, ctx context.Context, c toolCall) (any, string, error)
}

// toolCall is one call of a tool, its arguments read.
type toolCall struct {
	id   string
	name string
	args toolArgs
	raw  json.RawMessage
}

// assistantTools are the tools, in the order they are offered: the one list
// their names, descriptions and runners come from.
var assistantTools = []toolSpec{
	{listNotes, "List the user's notes, newest first, each with its id and rev (revision).", map[string]any{
		"type": "object", "properties": map[string]any{}, "additionalProperties": false},
		(*noteTools).list},
	{searchNotes, "Find the user's notes whose text contains the query (case-insensitive), each with its id and rev.", map[string]any{
		"type": "object", "properties": map[string]any{
			"query": map[string]any{"type": "string", "description": "text to look for"}},
		"required": []string{"query"}, "additionalProperties": false},
		(*noteTools).list},
	{readNote, "Read the note with the given id, with its rev.", map[string]any{
		"type": "object", "properties": map[string]any{
			"id": map[string]any{"type": "integer", "description": "the note's id"}},
		"required": []string{"id"}, "additionalProperties": false},
		(*noteTools).read},
	{createNote, "Create a note with the given text.", map[string]any{
		"type": "object", "properties": map[string]any{
			"body": map[string]any{"type": "string", "description": "the note's text, 1 to 10000 characters"}},
		"required": []string{"body"}, "additionalProperties": false},
		(*noteTools).create},
	{updateNote, "Replace the text of the note with the given id. If the note changed since you read it, nothing is changed and the error says how it reads now.", map[string]any{
		"type": "object", "properties": map[string]any{
			"id":   map[string]any{"type": "integer", "description": "the note's id"},
			"rev":  map[string]any{"type": "integer", "description": "the note's rev as you read it"},
			"body": map[string]any{"type": "string", "description": "the new text, 1 to 10000 characters"}},
		"required": []string{"id", "rev", "body"}, "additionalProperties": false},
		(*noteTools).update},
	{deleteNote, "Delete the note with the given id. If the note changed since you read it, nothing is deleted and the error says how it reads now.", map[string]any{
		"type": "object", "properties": map[string]any{
			"id":  map[string]any{"type": "integer", "description": "the note's id"},
			"rev": map[string]any{"type": "integer", "description": "the note's rev as you read it"}},
		"required": []string{"id", "rev"}, "additionalProperties": false},
		(*noteTools).delete},
}

// ToolNames lists the names of the tools offered to a model, in order.
func ToolNames() []string {
	names := make([]string, len(assistantTools))
	for i, t := range assistantTools {
		names[i] = t.Name
	}
	return names
}

// toolNames lists the tools' names for messages, as "a, b and c".
func toolNames() string {
	names := ToolNames()
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// tool returns the tool called name.
func tool(name string) (toolSpec, bool) {
	i := slices.IndexFunc(assistantTools, func(t toolSpec) bool { return t.Name == name })
	if i < 0 {
		return toolSpec{}, false
	}
	return assistantTools[i], true
}

// noteTools runs the tools against Notes as one user.
type noteTools struct {
	notes   Notes
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

// idRev reads the id and rev arguments of an update or delete.
func (a toolArgs) idRev() (id, rev int64, msg string) {
	if id, msg = a.id(); msg != "" {
		return 0, 0, msg
	}
	rev, msg = positiveArg("rev", a.Rev)
	return id, rev, msg
}

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

// body reads the body argument; the store checks what it says.
func (a toolArgs) body() (string, string) {
	if a.Body == nil {
		return "", `missing "body"`
	}
	return *a.Body, ""
}

// idem is the idempotency of one tool call's write: the request and the
// call id name it, the tool and its arguments fingerprint it.
func (t *noteTools) idem(c toolCall) Idempotency {
	sum := sha256.Sum256(c.raw)
	key := "assistant:" + t.request + ":" + c.id
	if len(key) > 255 {
		k := sha256.Sum256([]byte(key))
		key = "assistant:" + hex.EncodeToString(k[:])
	}
	return Idempotency{Key: key, Fingerprint: "ASSISTANT " + c.name + " " + hex.EncodeToString(sum[:])}
}

func (t *noteTools) run(ctx context.Context, callID, name string, raw json.RawMessage) (any, string, error) {
	spec, ok := tool(name)
	if !ok {
		return nil, fmt.Sprintf("unknown tool %q; the tools are %s", name, toolNames()), nil
	}
	var args toolArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, "arguments must be a JSON object: " + plainJSONError(err), nil
	}
	return spec.run(t, ctx, toolCall{id: callID, name: name, args: args, raw: raw})
}

// read runs read_note.
func (t *noteTools) read(ctx context.Context, c toolCall) (any, string, error) {
	id, msg := c.args.id()
	if msg != "" {
		return nil, msg, nil
	}
	note, version, err := t.notes.GetNote(ctx, t.userID, id)
	if err != nil {
		return t.failed(ctx, err)
	}
	return NoteWrite{Note: note, Version: version}, "", nil
}

// create runs create_note.
func (t *noteTools) create(ctx context.Context, c toolCall) (any, string, error) {
	body, msg := c.args.body()
	if msg != "" {
		return nil, msg, nil
	}
	res, err := t.notes.CreateNote(ctx, t.userID, body, t.idem(c))
	return t.wrote(ctx, res, err)
}

// update runs update_note: it changes the note as it was read, at rev.
func (t *noteTools) update(ctx context.Context, c toolCall) (any, string, error) {
	id, rev, msg := c.args.idRev()
	if msg != "" {
		return nil, msg, nil
	}
	body, msg := c.args.body()
	if msg != "" {
		return nil, msg, nil
	}
	res, err := t.notes.UpdateNote(ctx, t.userID, id, body, rev, t.idem(c))
	return t.wrote(ctx, res, err)
}

// delete runs delete_note: it deletes the note as it was read, at rev.
func (t *noteTools) delete(ctx context.Context, c toolCall) (any, string, error) {
	id, rev, msg := c.args.idRev()
	if msg != "" {
		return nil, msg, nil
	}
	res, err := t.notes.DeleteNote(ctx, t.userID, id, rev, t.idem(c))
	if err != nil {
		return t.failed(ctx, err)
	}
	return map[string]any{"deleted": id, "version": res.Version}, "", nil
}

// wrote turns a write's outcome into a tool result.
func (t *noteTools) wrote(ctx context.Context, res NoteWrite, err error) (any, string, error) {
	if err != nil {
		return t.failed(ctx, err)
	}
	return res, "", nil
}

// list runs list_notes and search_notes.
func (t *noteTools) list(ctx context.Context, c toolCall) (any, string, error) {
	query := ""
	if c.name == searchNotes {
		if c.args.Query == nil || strings.TrimSpace(*c.args.Query) == "" {
			return nil, `missing "query"`, nil
		}
		query = strings.TrimSpace(*c.args.Query)
		if utf8.RuneCountInString(query) > maxSearchChars {
			return nil, fmt.Sprintf(`"query" is over %d characters`, maxSearchChars), nil
		}
	}
	notes, version, err := t.notes.ListNotes(ctx, t.userID)
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
	if len(found) > maxListed {
		found = found[:maxListed]
		out["truncated"] = true
	}
	out["notes"] = found
	return out, "", nil
}

// failed turns a Notes error into a message for the model, or ends the run
// when the request is over or the error is not one the model can act on.
func (t *noteTools) failed(ctx context.Context, err error) (any, string, error) {
	if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	var stale *StaleError
	var refused *RefusedError
	switch {
	case errors.As(err, &stale):
		// Reported, never retried on the model's own: the user's words in
		// the newer revision must not be overwritten unseen.
		return nil, fmt.Sprintf("conflict: note %d was changed elsewhere since it was read, so nothing was changed. It is now at rev %d and says %s. Tell the user; change it only if they ask again.",
			stale.Note.ID, stale.Note.Rev, quote(stale.Note.Body)), nil
	case errors.As(err, &refused):
		return nil, refused.Message, nil
	}
	return nil, "", err
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
