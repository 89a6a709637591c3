package assistant

// The built-in planner: what answers the Assistant when no model server is
// configured. It understands a small command language (README "Assistant")
// and turns each command into the same tool calls a model would make.

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// plannerHelp is the answer to a message the planner does not understand.
const plannerHelp = `I am the built-in planner and understand these commands:
• "create a note to buy milk", "add a note: call mom", "note pick up keys" — create a note
• "list my notes", "show notes" — list your notes
• "search for milk", "find notes about the dentist" — search your notes
• "update note 12 to buy oat milk" — replace a note's text
• "delete note 12", "delete my notes about the dentist", "delete notes containing milk" — delete notes`

// plan is one parsed command.
type plan struct {
	Op    string // create, list, search, update, delete, delete_matching
	ID    int64
	Body  string
	Query string
}

var (
	reList = regexp.MustCompile(`(?is)^(?:please\s+)?(?:list|show)(?:\s+me)?(?:\s+all)?(?:\s+(?:of\s+)?(?:my|the))?\s+notes$`)
	reUpd  = regexp.MustCompile(`(?is)^(?:please\s+)?(?:update|change|edit|set)\s+note\s+#?(\d+)\s*(?:to|with|:|=)\s*(.+)$`)
	reDel  = regexp.MustCompile(`(?is)^(?:please\s+)?(?:delete|remove)\s+note\s+#?(\d+)$`)
	reDelQ = regexp.MustCompile(`(?is)^(?:please\s+)?(?:delete|remove)\s+(?:all\s+)?(?:(?:of\s+)?(?:my|the)\s+)?notes?\s+(?:about|containing|with|mentioning|matching|that\s+mention|that\s+contain)\s+(.+)$`)
	reFind = regexp.MustCompile(`(?is)^(?:please\s+)?(?:find|search|look\s+for|look\s+up)(?:\s+for)?(?:\s+(?:all\s+)?(?:(?:my|the)\s+)?notes?\s+(?:about|containing|with|mentioning|matching|for))?\s+(.+)$`)
	reNew  = regexp.MustCompile(`(?is)^(?:please\s+)?(?:create|add|make|write|new|take)\s+(?:me\s+)?(?:a\s+|an\s+)?(?:new\s+)?note(?:\s*:\s*|\s+(?:to\s+say|to|that\s+says|saying|reading|about|with)\s+|\s+)(.+)$`)
	reNote = regexp.MustCompile(`(?is)^(?:note|remember)\s*(?::\s*|\s+(?:to\s+)?)(.+)$`)
	// Leading words of a topic that are not part of it.
	reTopic = regexp.MustCompile(`(?i)^(?:the|a|an|my)\s+`)
)

// parseCommand turns a message into a plan; ok is false when it is not one
// of the commands.
func parseCommand(msg string) (p plan, ok bool) {
	msg = strings.TrimSpace(msg)
	cmd := strings.TrimRight(msg, ".!? ") // trailing punctuation of the sentence
	topic := func(s string) string {
		s = strings.Trim(strings.TrimSpace(s), `"'“”‘’`)
		s = strings.TrimRight(s, ".!? ")
		if t := reTopic.ReplaceAllString(s, ""); t != "" {
			s = t
		}
		return strings.Trim(s, `"'“”‘’ `)
	}
	body := func(s string) string {
		s = strings.TrimSpace(s)
		if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
			s = strings.TrimSpace(s[1 : len(s)-1])
		}
		return s
	}
	if reList.MatchString(cmd) {
		return plan{Op: "list"}, true
	}
	if m := reUpd.FindStringSubmatch(msg); m != nil {
		id, _ := strconv.ParseInt(m[1], 10, 64)
		return plan{Op: "update", ID: id, Body: body(m[2])}, true
	}
	if m := reDel.FindStringSubmatch(cmd); m != nil {
		id, _ := strconv.ParseInt(m[1], 10, 64)
		return plan{Op: "delete", ID: id}, true
	}
	if m := reDelQ.FindStringSubmatch(cmd); m != nil {
		if q := topic(m[1]); q != "" {
			return plan{Op: "delete_matching", Query: q}, true
		}
	}
	if m := reFind.FindStringSubmatch(cmd); m != nil {
		if q := topic(m[1]); q != "" {
			return plan{Op: "search", Query: q}, true
		}
	}
	if m := reNew.FindStringSubmatch(msg); m != nil {
		if b := body(m[1]); b != "" {
			return plan{Op: "create", Body: b}, true
		}
	}
	if m := reNote.FindStringSubmatch(msg); m != nil {
		if b := body(m[1]); b != "" {
			return plan{Op: "create", Body: b}, true
		}
	}
	return plan{}, false
}

func argsJSON(v map[string]any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// say streams a sentence as word-sized tokens, as a model would.
func say(em *sseEmitter, text string) {
	for len(text) > 0 {
		i := strings.IndexByte(text[1:], ' ')
		if i < 0 {
			em.token(text)
			return
		}
		em.token(text[:i+1])
		text = text[i+1:]
	}
}

// quote shortens a note body for an answer.
func quote(s string) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) > 60 {
		r = append(r[:57], '…')
	}
	return "“" + string(r) + "”"
}

// runPlanner answers msg with the built-in planner.
func runPlanner(ctx context.Context, msg string, run *agentRun) error {
	p, ok := parseCommand(msg)
	if !ok {
		say(run.em, plannerHelp)
		return nil
	}
	switch p.Op {
	case "create":
		return plannerCreate(ctx, run, p)
	case "list", "search":
		return plannerList(ctx, run, p)
	case "update":
		return plannerUpdate(ctx, run, p)
	case "delete":
		return plannerDelete(ctx, run, p)
	case "delete_matching":
		return plannerDeleteMatching(ctx, run, p)
	}
	return nil
}

// resultOf reads a tool call's result into a value of type T.
func resultOf[T any](out callOutcome) T {
	var r T
	b, _ := json.Marshal(out.Result)
	_ = json.Unmarshal(b, &r)
	return r
}

// notesOf reads the notes of a list or search result.
func notesOf(out callOutcome) []Note {
	return resultOf[struct {
		Notes []Note `json:"notes"`
	}](out).Notes
}

// noteOf reads the note of a read or write result.
func noteOf(out callOutcome) Note {
	return resultOf[struct {
		Note Note `json:"note"`
	}](out).Note
}

func plannerCreate(ctx context.Context, run *agentRun, p plan) error {
	say(run.em, "Creating a note. ")
	out, err := run.call(ctx, "", createNote, argsJSON(map[string]any{"body": p.Body}))
	if err != nil {
		return err
	}
	if out.Error != "" {
		say(run.em, "I could not create it: "+out.Error)
		return nil
	}
	say(run.em, fmt.Sprintf("Done: note %d says %s.", noteOf(out).ID, quote(p.Body)))
	return nil
}

// plannerList lists the notes, or those a search finds.
func plannerList(ctx context.Context, run *agentRun, p plan) error {
	em := run.em
	name, args := listNotes, map[string]any{}
	if p.Op == "search" {
		name, args = searchNotes, map[string]any{"query": p.Query}
		say(em, fmt.Sprintf("Searching your notes for %s. ", quote(p.Query)))
	} else {
		say(em, "Listing your notes. ")
	}
	out, err := run.call(ctx, "", name, argsJSON(args))
	if err != nil {
		return err
	}
	if out.Error != "" {
		say(em, "That failed: "+out.Error)
		return nil
	}
	notes := notesOf(out)
	switch {
	case len(notes) == 0 && p.Op == "search":
		say(em, "No note matches.")
	case len(notes) == 0:
		say(em, "You have no notes yet.")
	default:
		say(em, fmt.Sprintf("Found %d:", len(notes)))
		for _, n := range notes {
			say(em, fmt.Sprintf("\n• note %d: %s", n.ID, quote(n.Body)))
		}
	}
	return nil
}

func plannerUpdate(ctx context.Context, run *agentRun, p plan) error {
	say(run.em, fmt.Sprintf("Updating note %d. ", p.ID))
	note, ok, err := plannerRead(ctx, run, p.ID, "update")
	if err != nil || !ok {
		return err
	}
	out, err := run.call(ctx, "", updateNote, argsJSON(map[string]any{"id": p.ID, "rev": note.Rev, "body": p.Body}))
	if err != nil {
		return err
	}
	if out.Error != "" {
		say(run.em, "I could not update it: "+out.Error)
		return nil
	}
	say(run.em, fmt.Sprintf("Done: note %d now says %s.", p.ID, quote(p.Body)))
	return nil
}

func plannerDelete(ctx context.Context, run *agentRun, p plan) error {
	say(run.em, fmt.Sprintf("Deleting note %d. ", p.ID))
	note, ok, err := plannerRead(ctx, run, p.ID, "delete")
	if err != nil || !ok {
		return err
	}
	out, err := run.call(ctx, "", deleteNote, argsJSON(map[string]any{"id": p.ID, "rev": note.Rev}))
	if err != nil {
		return err
	}
	if out.Error != "" {
		say(run.em, "I could not delete it: "+out.Error)
		return nil
	}
	say(run.em, fmt.Sprintf("Done: note %d is deleted.", p.ID))
	return nil
}

// plannerDeleteMatching deletes the notes a search finds, each at the
// revision the search saw, within the tool-call budget.
func plannerDeleteMatching(ctx context.Context, run *agentRun, p plan) error {
	em := run.em
	say(em, fmt.Sprintf("Looking for notes about %s. ", quote(p.Query)))
	out, err := run.call(ctx, "", searchNotes, argsJSON(map[string]any{"query": p.Query}))
	if err != nil {
		return err
	}
	if out.Error != "" {
		say(em, "The search failed: "+out.Error)
		return nil
	}
	notes := notesOf(out)
	if len(notes) == 0 {
		say(em, "No note matches, so nothing was deleted.")
		return nil
	}
	deleted, failed := 0, []string{}
	for _, n := range notes {
		if run.calls >= run.maxCalls {
			break
		}
		out, err := run.call(ctx, "", deleteNote, argsJSON(map[string]any{"id": n.ID, "rev": n.Rev}))
		if err != nil {
			return err
		}
		if out.Error != "" {
			failed = append(failed, fmt.Sprintf("\n• note %d: %s", n.ID, out.Error))
		} else {
			deleted++
		}
	}
	answer := fmt.Sprintf("Deleted %d of %d matching notes.", deleted, len(notes))
	if deleted == len(notes) {
		answer = fmt.Sprintf("Deleted %d matching note%s.", deleted, plural(deleted))
	}
	if left := len(notes) - deleted - len(failed); left > 0 {
		answer += fmt.Sprintf(" I stopped at the limit of %d tool calls per request; ask again for the rest.", run.maxCalls)
	}
	if len(failed) > 0 {
		answer += " Not deleted:" + strings.Join(failed, "")
	}
	say(em, answer)
	return nil
}

// plannerRead reads a note before the planner changes it, so that the
// change names the revision it was made against. ok is false when the read
// failed; the user has been told why.
func plannerRead(ctx context.Context, run *agentRun, id int64, what string) (Note, bool, error) {
	out, err := run.call(ctx, "", readNote, argsJSON(map[string]any{"id": id}))
	if err != nil || out.Error != "" {
		if err == nil {
			say(run.em, fmt.Sprintf("I could not %s it: %s", what, out.Error))
		}
		return Note{}, false, err
	}
	return noteOf(out), true, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
