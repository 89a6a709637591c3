package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"notesync/app"
)

// maxWriteBody bounds a note write's request body: 10,000 characters of up
// to 4 bytes each, JSON-escaped, fit well within it.
const maxWriteBody = 128 << 10

// pageFrame is what every signed-in page shows around its content: the
// account, which page is current (for the navigation), and the node that
// served it.
type pageFrame struct {
	UserID   int64 // the key of what the page keeps in the browser (docs/PROTOCOL.md §12)
	Username string
	Current  string // "notes" or "assistant"
	Node     string
	Region   string
}

// frame is the pageFrame of page current for user u.
func (s *Server) frame(u *User, current string) pageFrame {
	return pageFrame{UserID: u.ID, Username: u.Username, Current: current, Node: s.Node, Region: s.Region}
}

// notesPage is the data of notes.html.
type notesPage struct {
	pageFrame
	notesList
}

// notesList is the data of the notes_list fragment: a page of notes, and
// Next, the before of the page after it (0: none).
type notesList struct {
	Notes   []app.Note
	Version int64
	Next    int64
	// Change names the change at Version ("" when not known), and
	// Diverged says that the request named another (docs/PROTOCOL.md §11).
	Change   string
	Diverged bool
}

// pageNotes starts a page that shows the user's notes: an anonymous
// visitor is sent to /login; ok is false when the answer has been given.
func (s *Server) pageNotes(w http.ResponseWriter, r *http.Request) (u *User, list notesList, ok bool) {
	u, err := s.identify(r)
	if err != nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return nil, list, false
	}
	list.Notes, list.Version, list.Next, err = s.Store.ListNotesPage(r.Context(), u.ID, 0, PageSize)
	if err == nil {
		list, err = s.withChange(r.Context(), u, list, false)
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, list, false
	}
	return u, list, true
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	u, list, ok := s.pageNotes(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "notes.html", notesPage{pageFrame: s.frame(u, "notes"), notesList: list})
}

// PageSize is how many notes a page of the list holds unless ?limit= says
// otherwise, and MaxPageSize the most it may ask for (docs/PROTOCOL.md §3).
const (
	PageSize    = 200
	MaxPageSize = 1000
)

// listPage reads the ?before= and ?limit= of a request for a page of the
// list.
func listPage(r *http.Request) (before int64, limit int, err error) {
	q := r.URL.Query()
	if v := q.Get("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before <= 0 {
			return 0, 0, app.Errorf(app.EINVALID, "before must be the next of a page of the list, a positive integer")
		}
	}
	limit = PageSize
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxPageSize {
			return 0, 0, app.Errorf(app.EINVALID, "limit must be a whole number from 1 to %d", MaxPageSize)
		}
	}
	return before, limit, nil
}

// listAtLeast returns the user's notes at min_version or later, waiting a
// bounded time for this node's database to catch up. A read that has to
// wait is parked: it wakes only when this user's notes move, and one
// user parks at most MaxParkedReads reads at a time over all their
// sessions, which cost nothing to make (docs/PROTOCOL.md §8).
func (s *Server) listAtLeast(r *http.Request, u *User) (notesList, error) {
	var min int64
	if q := r.URL.Query().Get("min_version"); q != "" {
		v, err := strconv.ParseInt(q, 10, 64)
		if err != nil || v < 0 {
			return notesList{}, app.Errorf(app.EINVALID, "min_version must be a non-negative integer")
		}
		min = v
	}
	before, limit, err := listPage(r)
	if err != nil {
		return notesList{}, err
	}
	ctx := r.Context()
	var deadline <-chan time.Time
	for {
		// Take the wake-up channel before reading, so a change that lands
		// between the read and the wait is not slept through.
		changed, done := s.Feed.Await(u.ID)
		var l notesList
		l.Notes, l.Version, l.Next, err = s.Store.ListNotesPage(ctx, u.ID, before, limit)
		if err != nil || l.Version >= min {
			done()
			return s.reached(ctx, u, l, err, min, presentedChange(r))
		}
		if deadline == nil {
			if !s.park(u.ID) {
				done()
				return notesList{}, &app.Error{Code: app.ETOOMANY, Message: "too many of your reads are waiting for min_version; try again shortly", RetryAfter: 1}
			}
			defer s.unpark(u.ID)
			t := time.NewTimer(s.MinVersionWait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-changed:
			done()
		case <-deadline:
			done()
			return notesList{}, &app.Error{Code: app.EUNAVAILABLE, Message: "this node has not caught up to min_version yet", RetryAfter: 1}
		case <-ctx.Done():
			done()
			return notesList{}, ctx.Err()
		}
	}
}

// reached finishes a list read that reached min: with the change at its
// version, and marked diverged when the request named another change at
// min than this node holds.
func (s *Server) reached(ctx context.Context, u *User, l notesList, err error, min int64, change string) (notesList, error) {
	if err != nil {
		return l, err
	}
	diverged := false
	if change != "" && min > 0 {
		if diverged, err = s.changedAt(ctx, u.ID, min, change); err != nil {
			return l, err
		}
	}
	return s.withChange(ctx, u, l, diverged)
}

// park counts a parked read of a user; it reports false when the user has
// MaxParkedReads parked already.
func (s *Server) park(userID int64) bool {
	s.parkedMu.Lock()
	defer s.parkedMu.Unlock()
	if s.parked[userID] >= s.MaxParkedReads {
		return false
	}
	s.parked[userID]++
	return true
}

// unpark ends a parked read of a user.
func (s *Server) unpark(userID int64) {
	s.parkedMu.Lock()
	defer s.parkedMu.Unlock()
	if s.parked[userID]--; s.parked[userID] <= 0 {
		delete(s.parked, userID)
	}
}

func (s *Server) handleNotesFragment(w http.ResponseWriter, r *http.Request, u *User) {
	list, err := s.listAtLeast(r, u)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("X-Notes-Version", strconv.FormatInt(list.Version, 10))
	setHistoryHeaders(w, list)
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, "notes_list", list)
}

func (s *Server) handleNotesList(w http.ResponseWriter, r *http.Request, u *User) {
	list, err := s.listAtLeast(r, u)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	var next *int64 // null on the last page
	if list.Next != 0 {
		next = &list.Next
	}
	out := map[string]any{"version": list.Version, "notes": list.Notes, "next": next}
	if list.Change != "" {
		out["change"] = list.Change
	}
	if list.Diverged {
		out["diverged"] = true
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleNoteCreate(w http.ResponseWriter, r *http.Request, u *User) {
	body, idem, err := readNoteWrite(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.Store.CreateNote(r.Context(), u.ID, body, idem)
	s.writeNote(w, r, http.StatusCreated, res, err)
}

func (s *Server) handleNoteGet(w http.ResponseWriter, r *http.Request, u *User) {
	id, err := noteID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	note, version, err := s.Store.GetNote(r.Context(), u.ID, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeNote(w, r, http.StatusOK, app.NoteWrite{Note: note, Version: version}, nil)
}

func (s *Server) handleNoteUpdate(w http.ResponseWriter, r *http.Request, u *User) {
	id, ifRev, err := noteTarget(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, idem, err := readNoteWrite(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.Store.UpdateNote(r.Context(), u.ID, id, body, ifRev, idem)
	s.writeNote(w, r, http.StatusOK, res, err)
}

func (s *Server) handleNoteDelete(w http.ResponseWriter, r *http.Request, u *User) {
	id, ifRev, err := noteTarget(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	idem, err := idempotency(r, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.Store.DeleteNote(r.Context(), u.ID, id, ifRev, idem)
	s.writeNote(w, r, http.StatusNoContent, res, err)
}

func (s *Server) handleNoteRestore(w http.ResponseWriter, r *http.Request, u *User) {
	id, err := noteID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	idem, err := idempotency(r, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.Store.RestoreNote(r.Context(), u.ID, id, idem)
	s.writeNote(w, r, http.StatusOK, res, err)
}

// writeNote answers a note write with its (possibly replayed) outcome:
// {"note", "version"} with status, or no body for 204.
func (s *Server) writeNote(w http.ResponseWriter, r *http.Request, status int, res app.NoteWrite, err error) {
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		s.writeError(w, r, err)
		return
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if res.Version > 0 {
		w.Header().Set("X-Notes-Version", strconv.FormatInt(res.Version, 10))
	}
	if res.Note.Rev > 0 && status != http.StatusNoContent {
		w.Header().Set("ETag", etag(res.Note.Rev))
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, res)
}

// noteTarget parses the {id} path value and the If-Match header of a
// write to one note.
func noteTarget(r *http.Request) (int64, app.Revs, error) {
	id, err := noteID(r)
	if err != nil {
		return 0, nil, err
	}
	revs, err := parseIfMatch(r.Header.Values("If-Match"))
	return id, revs, err
}

// noteID parses the {id} path value.
func noteID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, app.Errorf(app.EINVALID, "note id must be a positive integer")
	}
	return id, nil
}

// readNoteWrite reads the note body of a create or update: JSON
// {"body": "..."} or a form field body.
func readNoteWrite(w http.ResponseWriter, r *http.Request) (string, app.Idempotency, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxWriteBody)
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil && r.Header.Get("Content-Type") != "" {
		return "", app.Idempotency{}, app.Errorf(app.EUNSUPPORTED, "unreadable Content-Type")
	}
	var body string
	switch ct {
	case "application/json":
		var in struct {
			Body *string `json:"body"`
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return "", app.Idempotency{}, bodyError(err, "unreadable body")
		}
		// encoding/json would quietly turn invalid UTF-8 into U+FFFD.
		if !utf8.Valid(raw) {
			return "", app.Idempotency{}, app.Errorf(app.EINVALID, "body must be valid UTF-8")
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&in); err != nil {
			return "", app.Idempotency{}, bodyError(err, "malformed JSON")
		}
		if dec.More() {
			return "", app.Idempotency{}, app.Errorf(app.EINVALID, "malformed JSON: more than one value")
		}
		if in.Body == nil {
			return "", app.Idempotency{}, app.Errorf(app.EINVALID, `missing "body"`)
		}
		body = *in.Body
	case "application/x-www-form-urlencoded", "multipart/form-data":
		if err := parseForm(r, maxWriteBody); err != nil {
			return "", app.Idempotency{}, bodyError(err, "malformed form")
		}
		if _, ok := r.PostForm["body"]; !ok {
			return "", app.Idempotency{}, app.Errorf(app.EINVALID, `missing form field "body"`)
		}
		body = r.PostForm.Get("body")
	default:
		return "", app.Idempotency{}, app.Errorf(app.EUNSUPPORTED, "Content-Type must be application/json or a form")
	}
	// Form values pass bytes through as they came: validated here.
	if err := app.ValidateNoteBody(body); err != nil {
		return "", app.Idempotency{}, err
	}
	idem, err := idempotency(r, body)
	return body, idem, err
}

// parseForm parses a urlencoded or multipart form body. ParseMultipartForm
// alone answers ErrNotMultipart for a urlencoded body and drops the error
// of reading it (a body over the limit, or one that never arrived).
func parseForm(r *http.Request, maxMemory int64) error {
	if err := r.ParseForm(); err != nil {
		return err
	}
	if err := r.ParseMultipartForm(maxMemory); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return err
	}
	return nil
}

// bodyError turns a body read error into a client error.
func bodyError(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return app.Errorf(app.ETOOLARGE, "request body is over %d bytes", mbe.Limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return app.Errorf(app.ETIMEOUT, "the request body did not arrive within %d s; send it again", int(BodyTimeout/time.Second))
	}
	if errors.Is(err, io.EOF) {
		return app.Errorf(app.EINVALID, "%s: empty body", what)
	}
	return app.Errorf(app.EINVALID, "%s", what)
}

// idempotency reads the Idempotency-Key header and fingerprints the request
// it is used for.
func idempotency(r *http.Request, body string) (app.Idempotency, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return app.Idempotency{}, nil
	}
	if len(key) > 255 || strings.IndexFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0 {
		return app.Idempotency{}, app.Errorf(app.EINVALID, "Idempotency-Key must be 1–255 printable ASCII characters")
	}
	sum := sha256.Sum256([]byte(body))
	fp := r.Method + " " + r.URL.Path + " " + hex.EncodeToString(sum[:])
	if im := r.Header.Values("If-Match"); len(im) > 0 {
		// The same key with another precondition is another request.
		fp += " if-match " + strings.Join(im, ",")
	}
	return app.Idempotency{Key: key, Fingerprint: fp}, nil
}

func (s *Server) handleAPINotFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, app.Errorf(app.ENOTFOUND, "no such API route: %s %s", r.Method, r.URL.Path))
}
