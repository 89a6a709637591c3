package assistant

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"notesync/internal/ssetest"
)

// recordingTools is a toolRunner that records calls and answers searches
// with canned notes.
type recordingTools struct {
	calls []string
	found []Note
}

func (r *recordingTools) run(_ context.Context, _, name string, args json.RawMessage) (any, string, error) {
	var compact bytes.Buffer
	_ = json.Compact(&compact, args)
	r.calls = append(r.calls, name+" "+compact.String())
	switch name {
	case "search_notes", "list_notes":
		return map[string]any{"notes": r.found, "count": len(r.found)}, "", nil
	case "create_note":
		return map[string]any{"note": Note{ID: 1, Body: "x", Rev: 1}}, "", nil
	case "read_note":
		return map[string]any{"note": Note{ID: 1, Body: "x", Rev: 4}}, "", nil
	}
	return map[string]any{}, "", nil
}

func TestAssistantPlanner(t *testing.T) {
	found := []Note{{ID: 3, Body: "Dentist on Tuesday", Rev: 1}, {ID: 7, Body: "call the dentist", Rev: 2}}
	cases := []struct {
		msg   string
		calls []string
	}{
		{"create a note to buy milk", []string{`create_note {"body":"buy milk"}`}},
		{"Create a note: Buy milk.", []string{`create_note {"body":"Buy milk."}`}},
		{"add a note: call mom", []string{`create_note {"body":"call mom"}`}},
		{"Add note pick up keys", []string{`create_note {"body":"pick up keys"}`}},
		{"new note saying \"hello world\"", []string{`create_note {"body":"hello world"}`}},
		{"note water the plants", []string{`create_note {"body":"water the plants"}`}},
		{"note: water the plants", []string{`create_note {"body":"water the plants"}`}},
		{"list my notes", []string{`list_notes {}`}},
		{"show notes", []string{`list_notes {}`}},
		{"Show me all my notes.", []string{`list_notes {}`}},
		{"search for milk", []string{`search_notes {"query":"milk"}`}},
		{"find notes about the dentist", []string{`search_notes {"query":"dentist"}`}},
		{"find milk", []string{`search_notes {"query":"milk"}`}},
		{"look for \"oat milk\"?", []string{`search_notes {"query":"oat milk"}`}},
		{"update note 12 to buy oat milk", []string{`read_note {"id":12}`, `update_note {"body":"buy oat milk","id":12,"rev":4}`}},
		{"change note #4: call dad", []string{`read_note {"id":4}`, `update_note {"body":"call dad","id":4,"rev":4}`}},
		{"delete note 12", []string{`read_note {"id":12}`, `delete_note {"id":12,"rev":4}`}},
		{"remove note #5.", []string{`read_note {"id":5}`, `delete_note {"id":5,"rev":4}`}},
		{"delete my notes about the dentist", []string{`search_notes {"query":"dentist"}`, `delete_note {"id":3,"rev":1}`, `delete_note {"id":7,"rev":2}`}},
		{"delete notes containing dentist", []string{`search_notes {"query":"dentist"}`, `delete_note {"id":3,"rev":1}`, `delete_note {"id":7,"rev":2}`}},
		{"Remove all notes mentioning the dentist!", []string{`search_notes {"query":"dentist"}`, `delete_note {"id":3,"rev":1}`, `delete_note {"id":7,"rev":2}`}},
		{"what's the weather?", nil},
		{"hello", nil},
		{"delete everything", nil},
	}
	for _, c := range cases {
		t.Run(c.msg, func(t *testing.T) {
			tools := &recordingTools{found: found}
			var out bytes.Buffer
			run := &agentRun{tools: tools, em: &sseEmitter{w: &out}, maxCalls: 20}
			if err := runPlanner(context.Background(), c.msg, run); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tools.calls, c.calls) {
				t.Errorf("calls %q, want %q", tools.calls, c.calls)
			}
			evs := ssetest.Read(t, &out)
			if len(evs) == 0 || evs[0].Type != "token" {
				t.Errorf("no answer text first: %v", evs)
			}
			if c.calls == nil && !strings.Contains(ssetest.Tokens(evs), "create a note to buy milk") {
				t.Errorf("unknown phrasing should explain the commands: %q", ssetest.Tokens(evs))
			}
			if n := len(ssetest.Of(evs, "tool_call")); n != len(c.calls) || len(ssetest.Of(evs, "tool_result")) != n {
				t.Errorf("tool events: %v", evs)
			}
		})
	}
}
