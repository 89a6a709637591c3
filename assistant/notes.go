package assistant

import (
	"context"
	"fmt"
	"time"
)

// Notes is the notes store as the agent's tools use it. Each method acts on
// the notes of userID only, and each write bumps the user's version, so
// that the change reaches every tab of the user as any other write does.
//
// A failure the model can act on is a *RefusedError (bad input, no such
// note) or, from UpdateNote and DeleteNote, a *StaleError. Any other error
// ends the agent's run: it is logged, and the user is told "internal
// error".
type Notes interface {
	// ListNotes returns the user's notes, newest first, and their version.
	ListNotes(ctx context.Context, userID int64) ([]Note, int64, error)
	// GetNote returns one note and the user's version.
	GetNote(ctx context.Context, userID, noteID int64) (Note, int64, error)
	// CreateNote adds a note.
	CreateNote(ctx context.Context, userID int64, body string, idem Idempotency) (NoteWrite, error)
	// UpdateNote replaces the body of a note that is at revision rev.
	UpdateNote(ctx context.Context, userID, noteID int64, body string, rev int64, idem Idempotency) (NoteWrite, error)
	// DeleteNote deletes a note that is at revision rev; the result holds
	// the note as it was.
	DeleteNote(ctx context.Context, userID, noteID, rev int64, idem Idempotency) (NoteWrite, error)
}

// Note is a note as the model reads it, field for field the JSON API's.
type Note struct {
	ID        int64     `json:"id"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Rev       int64     `json:"rev"`
}

// NoteWrite is the outcome of a write: the note as the write left it and
// the user's version after it. Merged says that an update made from an
// older revision was merged with a change saved meanwhile to other lines:
// Note holds both.
type NoteWrite struct {
	Note    Note  `json:"note"`
	Version int64 `json:"version"`
	Merged  bool  `json:"merged,omitempty"`
}

// Idempotency names one tool call's write (Key) and describes it
// (Fingerprint), so that the store applies it at most once: a write the
// store has seen under Key is answered with its first outcome.
type Idempotency struct {
	Key         string
	Fingerprint string
}

// RefusedError is a store failure the model can act on; Message is plain
// words, safe to show the user.
type RefusedError struct{ Message string }

func (e *RefusedError) Error() string { return e.Message }

// StaleError reports an update or delete made against a revision the note
// is no longer at: nothing was changed. Note is the note as it is now.
type StaleError struct{ Note Note }

func (e *StaleError) Error() string {
	return fmt.Sprintf("note %d changed since it was read: it is at rev %d", e.Note.ID, e.Note.Rev)
}
