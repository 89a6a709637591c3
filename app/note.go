package app

import (
	"time"
	"unicode/utf8"
)

// MaxNoteChars is the longest note body, in characters (runes).
const MaxNoteChars = 10000

// Note is one note of a user.
type Note struct {
	ID        int64     `json:"id"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// Change ops recorded in the change log and pushed as note_changed.
const (
	OpCreated = "created"
	OpUpdated = "updated"
	OpDeleted = "deleted"
	OpSync    = "sync"
)

// Change is one row of the change log: the user's notes reached Version by
// Op on NoteID. Seq orders all changes of all users in commit order.
type Change struct {
	Seq       int64
	UserID    int64
	Version   int64
	Op        string
	NoteID    int64
	Node      string
	CreatedAt time.Time
}

// ValidateNoteBody checks a note body: 1–10,000 characters of valid UTF-8.
func ValidateNoteBody(body string) error {
	if !utf8.ValidString(body) {
		return Errorf(EINVALID, "body must be valid UTF-8")
	}
	n := utf8.RuneCountInString(body)
	if n == 0 {
		return Errorf(EINVALID, "body must not be empty")
	}
	if n > MaxNoteChars {
		return Errorf(EINVALID, "body is %d characters; the limit is %d", n, MaxNoteChars)
	}
	return nil
}
