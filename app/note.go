// Package app is the notes domain: notes, users, the change a write
// appends to the change log (Change), the one error vocabulary (Error and
// its codes) and validation. It knows nothing of SQL or HTTP: app/sqlite
// stores it, app/feed pushes its changes, app/web serves it.
package app

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxNoteChars is the longest note body, in characters (runes).
const MaxNoteChars = 10000

// Note is one note of a user.
type Note struct {
	ID        int64     `json:"id"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Rev is 1 when the note is created and grows by one with every update
	// (docs/PROTOCOL.md §6). A write made against an older revision fails
	// with ESTALE.
	Rev int64 `json:"rev"`
	// Place orders the user's notes in the list, newest first, and is the
	// cursor of its pages: the user's version when the note was created,
	// which counts the user's own changes and tells nothing of anyone
	// else's (docs/PROTOCOL.md §3). A restored note keeps it. Reads set
	// it; a write's outcome leaves it 0.
	Place int64 `json:"-"`
}

// UndoWindow is how long after its delete a note can be restored.
const UndoWindow = 30 * time.Second

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
	Seq int64
	// ID is random: with Version it names one point of one history, told
	// apart from another change that reached the same version after a
	// failover dropped this one (docs/PROTOCOL.md §11). "" when unknown.
	ID        string
	UserID    int64
	Version   int64
	Op        string
	NoteID    int64
	Node      string
	CreatedAt time.Time
}

// Written is a change with what it takes to apply it again through
// another primary, whose history lacks it (docs/PROTOCOL.md §11).
type Written struct {
	Change
	// Body is the text a create or an update gave its note ("" for a
	// delete, or when no longer known), and Rev the revision it left.
	Body string
	Rev  int64
	// Key is the Idempotency-Key the write came with ("": none), and
	// Fingerprint that of its request.
	Key, Fingerprint string
}

// Snippet is the first words of a note, at most 40 characters: how the
// page names a note's controls and messages (static/page.js has its twin).
func Snippet(body string) string {
	words := strings.Fields(body)
	if len(words) > 6 {
		words = words[:6]
	}
	s := strings.Join(words, " ")
	if r := []rune(s); len(r) > 40 {
		s = string(r[:39]) + "…"
	}
	return s
}

// ValidateNoteBody checks a note body: 1–10,000 characters of valid UTF-8,
// at least one of them visible, and no control character but tab and line
// breaks (docs/PROTOCOL.md §8).
func ValidateNoteBody(body string) error {
	if !utf8.ValidString(body) {
		return Errorf(EINVALID, "The note's text is not valid UTF-8: send it as UTF-8.")
	}
	n := utf8.RuneCountInString(body)
	if n == 0 {
		return Errorf(EINVALID, "The note is empty: write something in it.")
	}
	if strings.TrimSpace(body) == "" {
		return Errorf(EINVALID, "The note is only spaces and line breaks: write something in it.")
	}
	if n > MaxNoteChars {
		return Errorf(EINVALID, "The note is %s characters long; the limit is %s. Shorten it by %s to save it.",
			thousands(n), thousands(MaxNoteChars), thousands(n-MaxNoteChars))
	}
	if at, r := controlChar(body); at > 0 {
		return Errorf(EINVALID, "The note has a control character (U+%04X) at character %s: remove it to save the note.", r, thousands(at))
	}
	if !strings.ContainsFunc(body, visible) {
		return Errorf(EINVALID, "The note has nothing visible in it, only blank or invisible characters: write something in it.")
	}
	return nil
}

// controlChar finds the first control character of body other than tab,
// newline and the carriage return of a CRLF line break (what a browser's
// form sends): its position in characters from 1, or 0.
func controlChar(body string) (at int, r rune) {
	i := 0
	for pos, r := range body {
		i++
		if !unicode.IsControl(r) || r == '\t' || r == '\n' || (r == '\r' && strings.HasPrefix(body[pos+1:], "\n")) {
			continue
		}
		return i, r
	}
	return 0, 0
}

// visible reports whether r shows as something on a page: a letter,
// digit, punctuation or symbol that is not one of the blank-looking
// characters (fillers, the blank Braille pattern). Spaces, marks alone,
// format characters (zero-width space, byte order mark) are not.
func visible(r rune) bool {
	if r == '\u2800' || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) {
		return false
	}
	return unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S)
}

// thousands writes n with commas between thousands: 10,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Idempotency identifies a write that a client may repeat: the first outcome
// of a (user, Key) is stored and replayed for 24 hours. Fingerprint
// describes the request (method, path, body), so a key reused for a
// different request is refused rather than answered with an unrelated
// outcome.
type Idempotency struct {
	Key         string
	Fingerprint string
}

// IdempotencyTTL is how long the first outcome of a keyed write is kept.
const IdempotencyTTL = 24 * time.Hour

// NoteWrite is the outcome of a note write: the note as the write left it
// (for a delete, as it was) and the user's version after it.
type NoteWrite struct {
	Note    Note  `json:"note"`
	Version int64 `json:"version"`
	// Merged reports an edit made from an earlier revision that was merged
	// with what was saved since (docs/PROTOCOL.md §12): Note holds the
	// merge, not the text sent.
	Merged bool `json:"merged,omitempty"`
	// Replayed reports an answer from the idempotency record: nothing was
	// applied this time.
	Replayed bool `json:"-"`
}

// Revs are the revisions a note may be at for a write to apply to it (the
// client's If-Match). Empty: any revision.
type Revs []int64

// Allows reports whether a note at rev may be written.
func (r Revs) Allows(rev int64) bool { return len(r) == 0 || slices.Contains(r, rev) }
