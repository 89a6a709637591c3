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

// Presence (docs/PROTOCOL.md §7): realtime counts each user's connections
// on every node and what each has open; the app's topic is the id of the
// note a tab has open in an editor.

// PresenceMessage encodes a connection's presence as
// {"type":"presence","tabs":N,"nodes":{...},"editing":{"<note_id>":K},"own_editing":"<note_id>"}.
func PresenceMessage(p realtime.Presence) realtime.Message {
	data, _ := json.Marshal(struct {
		Type       string         `json:"type"`
		Tabs       int            `json:"tabs"`
		Nodes      map[string]int `json:"nodes"`
		Editing    map[string]int `json:"editing"`
		OwnEditing string         `json:"own_editing,omitempty"`
	}{"presence", p.Tabs, p.Nodes, p.Topics, p.Own})
	return realtime.Message{Type: "presence", Data: data}
}

// editingReport is what a tab says about its editor: the note open in it,
// or null.
type editingReport struct {
	Type   string          `json:"type"`
	Conn   string          `json:"conn"`
	NoteID json.RawMessage `json:"note_id"`
}

// topic validates a report's note_id: a positive integer, or null for no
// editor. It returns the presence topic ("" for none).
func (r editingReport) topic() (string, error) {
	if len(r.NoteID) == 0 {
		return "", app.Errorf(app.EINVALID, `missing "note_id" (a note id, or null when no editor is open)`)
	}
	if string(r.NoteID) == "null" {
		return "", nil
	}
	id, err := strconv.ParseInt(string(r.NoteID), 10, 64)
	if err != nil || id <= 0 {
		return "", app.Errorf(app.EINVALID, `"note_id" must be a positive integer or null`)
	}
	return strconv.FormatInt(id, 10), nil
}

// onClientMessage handles a WebSocket client's text message: an editing
// report sets the connection's topic. Anything else, or a report that does
// not validate, is ignored (docs/PROTOCOL.md §4).
func onClientMessage(c *realtime.Conn, text []byte) {
	var r editingReport
	if json.Unmarshal(text, &r) != nil || r.Type != "editing" {
		return
	}
	if topic, err := r.topic(); err == nil {
		c.SetTopic(topic)
	}
}

// ServedOnEveryNode reports a write that changes only the receiving node's
// own state, not the database: an editing report is about a connection
// held here, so a replica must not forward it to the primary.
func ServedOnEveryNode(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/api/editing"
}

// maxEditingBody bounds POST /api/editing's body.
const maxEditingBody = 1 << 10

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
	topic, err := rep.topic()
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
	c.SetTopic(topic)
	w.WriteHeader(http.StatusNoContent)
}
