package web

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"

	"notesync/app"
	"notesync/realtime"
)

// Presence (docs/PROTOCOL.md §7, §13): realtime counts each user's tabs
// and connections on every node and what each tab has open; the app's
// topic is the id of the note a tab has open in an editor.

// PresenceMessage encodes a connection's presence as
// {"type":"presence","tabs":N,"browsers":C,"nodes":{...},"editing":{"<note_id>":K},"own_editing":"<note_id>"},
// with "own_editing_by_tab":{"<tab>":"<note_id>"} for a connection that
// its browser's tabs share.
func PresenceMessage(p realtime.Presence) realtime.Message {
	return realtime.PresenceMessage(p, "editing", "own_editing")
}

// editingReport is what a tab says about its editor: the note open in it,
// or null. A connection that the tabs of a browser share says it for
// each of its tabs instead: Tabs maps a tab's id to its note_id
// (docs/PROTOCOL.md §13).
type editingReport struct {
	Type   string                     `json:"type"`
	Conn   string                     `json:"conn"`
	NoteID json.RawMessage            `json:"note_id"`
	Tabs   map[string]json.RawMessage `json:"tabs"`
}

// editingTopic validates a note_id: a positive integer, or null for no
// editor. It returns the presence topic ("" for none).
func editingTopic(noteID json.RawMessage) (string, error) {
	if len(noteID) == 0 {
		return "", app.Errorf(app.EINVALID, `missing "note_id" (a note id, or null when no editor is open)`)
	}
	if string(noteID) == "null" {
		return "", nil
	}
	id, err := strconv.ParseInt(string(noteID), 10, 64)
	if err != nil || id <= 0 {
		return "", app.Errorf(app.EINVALID, `"note_id" must be a positive integer or null`)
	}
	return strconv.FormatInt(id, 10), nil
}

// editing is a report that validated: the topic of a connection that is
// one tab, or the topics of the tabs a connection carries (tabs not nil).
type editing struct {
	topic string
	tabs  map[string]string
}

// parse validates the report.
func (r editingReport) parse() (editing, error) {
	if r.Tabs == nil {
		topic, err := editingTopic(r.NoteID)
		return editing{topic: topic}, err
	}
	switch {
	case len(r.NoteID) > 0:
		return editing{}, app.Errorf(app.EINVALID, `a report has "note_id" or "tabs", not both`)
	case len(r.Tabs) == 0 || len(r.Tabs) > realtime.MaxTabsPerConn:
		return editing{}, app.Errorf(app.EINVALID, `"tabs" names 1 to %d tabs`, realtime.MaxTabsPerConn)
	}
	tabs := make(map[string]string, len(r.Tabs))
	for tab, noteID := range r.Tabs {
		if tab == "" || len(tab) > realtime.MaxTabIDLen {
			return editing{}, app.Errorf(app.EINVALID, "a tab id is 1 to %d bytes", realtime.MaxTabIDLen)
		}
		topic, err := editingTopic(noteID)
		if err != nil {
			return editing{}, app.Errorf(app.EINVALID, "tab %q: %s", tab, app.ErrorMessage(err))
		}
		tabs[tab] = topic
	}
	return editing{tabs: tabs}, nil
}

// apply sets what the report says on c: its tabs' topics, or its own.
func (e editing) apply(c *realtime.Conn) {
	if e.tabs == nil {
		c.SetTopic(e.topic)
		return
	}
	_ = c.SetTabs(e.tabs) // parse checked what SetTabs refuses
}

// onClientMessage handles a WebSocket client's text message: an editing
// report sets the connection's topic, a tabs report its tabs'. Anything
// else, or a report that does not validate, is ignored
// (docs/PROTOCOL.md §4).
func onClientMessage(c *realtime.Conn, text []byte) {
	var r editingReport
	if json.Unmarshal(text, &r) != nil {
		return
	}
	if r.Type != "editing" && r.Type != "tabs" || (r.Type == "tabs") != (r.Tabs != nil) {
		return
	}
	if e, err := r.parse(); err == nil {
		e.apply(c)
	}
}

// maxEditingBody bounds POST /api/editing's body: a report of
// realtime.MaxTabsPerConn tabs fits.
const maxEditingBody = 4 << 10

// handleEditing is POST /api/editing: an SSE tab's editing report, for its
// own connection ({"conn": "<id from hello>", "note_id": N|null}).
func (s *Server) handleEditing(w http.ResponseWriter, r *http.Request, u *User) {
	r.Body = http.MaxBytesReader(w, r.Body, maxEditingBody)
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		s.writeError(w, r, app.Errorf(app.EUNSUPPORTED, "Content-Type must be application/json"))
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		s.writeError(w, r, bodyError(err, "unreadable body"))
		return
	}
	var rep editingReport
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		s.writeError(w, r, bodyError(err, "malformed JSON"))
		return
	}
	e, err := rep.parse()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c, ok := s.Hub.Conn(rep.Conn)
	if !ok || c.Identity().UserID != u.ID {
		// Another user's connection is as unknown as one that is gone.
		s.writeError(w, r, app.Errorf(app.ENOTFOUND, "no open connection %q of yours: report with the conn of your tab's hello", rep.Conn))
		return
	}
	if !c.AllowMessage() {
		s.writeError(w, r, &app.Error{Code: app.ETOOMANY, Message: "too many editing reports from this tab; slow down", RetryAfter: 1})
		return
	}
	e.apply(c)
	w.WriteHeader(http.StatusNoContent)
}
