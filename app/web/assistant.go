package web

// The Assistant's page (GET /assistant) and its endpoint (POST
// /api/assistant), which reads the user's message and hands it to the
// agent in package assistant. The agent acts on the user's notes through
// assistantNotes, the Store's methods of the JSON API, so every change bumps
// the version and the change feed pushes note_changed to every tab on every
// node.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/assistant"
)

// Assistant limits.
const (
	assistantMaxBody         = 16 << 10 // request body of POST /api/assistant
	assistantMaxMessageChars = 2000
	plannerLabel             = "built-in planner"
)

// assistantPage is the data of assistant.html: the chat, and beside it the
// user's notes, kept live as on the notes page (docs/PROTOCOL.md §9).
type assistantPage struct {
	pageFrame
	notesList
	Model string
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
	u, list, ok := s.pageNotes(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "assistant.html", assistantPage{
		pageFrame: s.frame(u, "assistant"), notesList: list, Model: s.assistantLabel(),
	})
}

// readAssistantMessage reads {"message": "..."}: 1–2,000 characters of
// valid UTF-8 once trimmed.
func readAssistantMessage(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, assistantMaxBody)
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return "", app.Errorf(app.EUNSUPPORTED, "Content-Type must be application/json")
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return "", bodyError(err, "unreadable body")
	}
	if !utf8.Valid(raw) {
		return "", app.Errorf(app.EINVALID, "message must be valid UTF-8")
	}
	var in struct {
		Message *string `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&in); err != nil {
		return "", bodyError(err, "malformed JSON")
	}
	if dec.More() {
		return "", app.Errorf(app.EINVALID, "malformed JSON: more than one value")
	}
	if in.Message == nil {
		return "", app.Errorf(app.EINVALID, `missing "message"`)
	}
	msg := strings.TrimSpace(*in.Message)
	n := utf8.RuneCountInString(msg)
	if n == 0 {
		return "", app.Errorf(app.EINVALID, "message must not be empty")
	}
	if n > assistantMaxMessageChars {
		return "", app.Errorf(app.EINVALID, "message is %d characters; the limit is %d", n, assistantMaxMessageChars)
	}
	return msg, nil
}

// handleAssistant runs the agent for the user on their message and streams
// its events.
func (s *Server) handleAssistant(w http.ResponseWriter, r *http.Request, u *User) {
	msg, err := readAssistantMessage(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// One running agent per user on this node; every POST runs on the
	// primary (replicas forward writes), so that is one per user.
	if _, busy := s.assistantRuns.LoadOrStore(u.ID, struct{}{}); busy {
		s.writeError(w, r, app.Errorf(app.ECONFLICT, "the assistant is already working for you in another tab; wait for it or cancel it"))
		return
	}
	defer s.assistantRuns.Delete(u.ID)

	agent := &assistant.Agent{
		Notes:  assistantNotes{s.Store},
		UserID: u.ID,
		Model: assistant.Model{
			BaseURL: s.AssistantBaseURL, Name: s.AssistantModel, APIKey: s.AssistantAPIKey,
			HTTPClient: s.AssistantHTTPClient,
			Timeout:    s.AssistantTimeout,
			MaxRounds:  s.AssistantMaxRounds,
		},
		MaxToolCalls: s.AssistantMaxToolCalls,
		Logger:       s.Logger,
	}
	agent.Answer(w, r, msg)
}

// assistantNotes is the Store as the agent uses it (assistant.Notes): the
// same methods in the assistant's types, with the Store's errors turned
// into the two the agent tells the model about.
type assistantNotes struct{ store *sqlite.Store }

var _ assistant.Notes = assistantNotes{}

func (n assistantNotes) ListNotes(ctx context.Context, userID int64) ([]assistant.Note, int64, error) {
	notes, version, err := n.store.ListNotes(ctx, userID)
	if err != nil {
		return nil, 0, assistantError(err)
	}
	out := make([]assistant.Note, len(notes))
	for i, note := range notes {
		out[i] = assistantNote(note)
	}
	return out, version, nil
}

func (n assistantNotes) GetNote(ctx context.Context, userID, noteID int64) (assistant.Note, int64, error) {
	note, version, err := n.store.GetNote(ctx, userID, noteID)
	return assistantNote(note), version, assistantError(err)
}

func (n assistantNotes) CreateNote(ctx context.Context, userID int64, body string, idem assistant.Idempotency) (assistant.NoteWrite, error) {
	return assistantWrite(n.store.CreateNote(ctx, userID, body, app.Idempotency(idem)))
}

func (n assistantNotes) UpdateNote(ctx context.Context, userID, noteID int64, body string, rev int64, idem assistant.Idempotency) (assistant.NoteWrite, error) {
	return assistantWrite(n.store.UpdateNote(ctx, userID, noteID, body, app.Revs{rev}, app.Idempotency(idem)))
}

func (n assistantNotes) DeleteNote(ctx context.Context, userID, noteID, rev int64, idem assistant.Idempotency) (assistant.NoteWrite, error) {
	return assistantWrite(n.store.DeleteNote(ctx, userID, noteID, app.Revs{rev}, app.Idempotency(idem)))
}

// assistantNote is a note as the assistant sees it: without its place in
// the list, which only the list's pages use.
func assistantNote(n app.Note) assistant.Note {
	return assistant.Note{ID: n.ID, Body: n.Body, CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt, Rev: n.Rev}
}

func assistantWrite(w app.NoteWrite, err error) (assistant.NoteWrite, error) {
	return assistant.NoteWrite{Note: assistantNote(w.Note), Version: w.Version, Merged: w.Merged}, assistantError(err)
}

// assistantError turns a Store error into the assistant's: ESTALE with the
// note as it is now, and every other error with a message safe to show,
// become errors the model is told; internal ones stay as they are.
func assistantError(err error) error {
	var e *app.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &e) || e.Code == app.EINTERNAL:
		return err
	case e.Code == app.ESTALE && e.Note != nil:
		return &assistant.StaleError{Note: assistantNote(*e.Note)}
	}
	return &assistant.RefusedError{Message: e.Message}
}
