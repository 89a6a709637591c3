package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"notesync/app"
)

// noteAnswer is the JSON of a note write or read.
type noteAnswer struct {
	Error   string    `json:"error"`
	Note    *app.Note `json:"note"`
	Version int64     `json:"version"`
}

func decodeNote(t *testing.T, body string) noteAnswer {
	t.Helper()
	var a noteAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return a
}

func TestAPIRevisions(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("alice")
	id := b.createNote("first words")
	path := fmt.Sprintf("/api/notes/%d", id)

	t.Run("GET one note answers it with its revision as ETag", func(t *testing.T) {
		resp, body := b.Do("GET", path, "", "")
		a := decodeNote(t, body)
		if resp.StatusCode != 200 || a.Note == nil || a.Note.ID != id || a.Note.Rev != 1 || a.Note.UpdatedAt.IsZero() || resp.Header.Get("ETag") != `"1"` {
			t.Fatalf("%d %s ETag %q", resp.StatusCode, body, resp.Header.Get("ETag"))
		}
	})

	t.Run("a PATCH with the current revision applies and answers the new ETag", func(t *testing.T) {
		resp, body := b.Do("PATCH", path, "application/json", `{"body":"second words"}`, "If-Match", `"1"`)
		a := decodeNote(t, body)
		if resp.StatusCode != 200 || a.Note.Rev != 2 || resp.Header.Get("ETag") != `"2"` {
			t.Fatalf("%d %s ETag %q", resp.StatusCode, body, resp.Header.Get("ETag"))
		}
	})

	t.Run("a PATCH or DELETE with an older revision answers 412 with the current note and changes nothing", func(t *testing.T) {
		for _, req := range []struct{ method, body string }{{"PATCH", `{"body":"stale words"}`}, {"DELETE", ""}} {
			ct := ""
			if req.body != "" {
				ct = "application/json"
			}
			resp, body := b.Do(req.method, path, ct, req.body, "If-Match", `"1"`, "Idempotency-Key", "stale-"+req.method)
			a := decodeNote(t, body)
			if resp.StatusCode != http.StatusPreconditionFailed || a.Error == "" || a.Note == nil || a.Note.Body != "second words" || a.Note.Rev != 2 {
				t.Fatalf("%s: %d %s", req.method, resp.StatusCode, body)
			}
		}
		_, body := b.Do("GET", path, "", "")
		if a := decodeNote(t, body); a.Note.Body != "second words" || a.Note.Rev != 2 || a.Version != 2 {
			t.Fatalf("after the refused writes: %s", body)
		}
	})

	t.Run("the same Idempotency-Key with another If-Match is another request", func(t *testing.T) {
		resp, body := b.Do("PATCH", path, "application/json", `{"body":"third words"}`, "If-Match", `"2"`, "Idempotency-Key", "k-3")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = b.Do("PATCH", path, "application/json", `{"body":"third words"}`, "If-Match", `"2"`, "Idempotency-Key", "k-3")
		if resp.StatusCode != 200 || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("the same request again: %d %s, want the first answer replayed", resp.StatusCode, body)
		}
		resp, body = b.Do("PATCH", path, "application/json", `{"body":"third words"}`, "If-Match", `"3"`, "Idempotency-Key", "k-3")
		jsonError(t, resp, body, http.StatusUnprocessableEntity)
	})

	t.Run("If-Match forms", func(t *testing.T) {
		for _, c := range []struct {
			ifMatch string
			status  int
		}{
			{`"2", "3"`, 200},    // a list that holds the current revision (2)
			{`*`, 200},           // any revision
			{`W/"4"`, 412},       // weak tags never match
			{`"not-a-rev"`, 412}, // a tag, but no revision
			{`4`, 400},           // not quoted
			{`"4`, 400},          // unterminated
			{`"4" "5"`, 400},     // no comma
			{`"4",`, 400},        // a dangling comma
		} {
			_, cur := b.Do("GET", path, "", "")
			before := decodeNote(t, cur).Note.Rev
			ifMatch := strings.ReplaceAll(c.ifMatch, `"2"`, fmt.Sprintf(`"%d"`, before))
			resp, body := b.Do("PATCH", path, "application/json", `{"body":"form test"}`, "If-Match", ifMatch)
			if resp.StatusCode != c.status {
				t.Errorf("If-Match %s: %d %s, want %d", ifMatch, resp.StatusCode, body, c.status)
			}
		}
	})

	t.Run("a note that is not the caller's, or is deleted, is 404", func(t *testing.T) {
		other := ts.browser(t)
		other.signup("bob")
		resp, body := other.Do("GET", path, "", "")
		jsonError(t, resp, body, http.StatusNotFound)
		resp, body = other.Do("POST", path+"/restore", "", "")
		jsonError(t, resp, body, http.StatusNotFound)
		gone := b.createNote("to delete")
		if resp, body := b.Do("DELETE", fmt.Sprintf("/api/notes/%d", gone), "", ""); resp.StatusCode != 204 {
			t.Fatalf("delete: %d %s", resp.StatusCode, body)
		}
		resp, body = b.Do("GET", fmt.Sprintf("/api/notes/%d", gone), "", "")
		jsonError(t, resp, body, http.StatusNotFound)
	})
}

func TestAPIRestore(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("alice")
	id := b.createNote("bring me back")
	path := fmt.Sprintf("/api/notes/%d", id)
	_, body := b.Do("GET", path, "", "")
	before := decodeNote(t, body).Note

	// A tab of the user sees the delete, then the restore. (Connecting it
	// only after the delete would race the feed: the delete's push may
	// still be on its way and reach the new tab first.)
	ws := dialWS(t, ts, b)
	defer ws.CloseNow()
	resp, body := b.Do("DELETE", path, "", "", "If-Match", `"1"`)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	m := readWS(t, ws)
	if m["op"] == "created" {
		m = readWS(t, ws) // the creation's push may still have been on its way
	}
	if m["type"] != "note_changed" || m["op"] != "deleted" || int64(m["note_id"].(float64)) != id {
		t.Fatalf("pushed %v, want note_changed deleted %d", m, id)
	}

	resp, body = b.Do("POST", path+"/restore", "", "", "Idempotency-Key", "undo-1")
	a := decodeNote(t, body)
	if resp.StatusCode != 200 || a.Note == nil || *a.Note != *before || resp.Header.Get("ETag") != `"1"` {
		t.Fatalf("restore: %d %s, want %+v", resp.StatusCode, body, before)
	}
	if m := readWS(t, ws); m["type"] != "note_changed" || m["op"] != "created" || int64(m["note_id"].(float64)) != id {
		t.Fatalf("pushed %v, want note_changed created %d", m, id)
	}
	if resp, body := b.Do("POST", path+"/restore", "", "", "Idempotency-Key", "undo-1"); resp.StatusCode != 200 || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a repeated undo: %d %s, want the first answer replayed", resp.StatusCode, body)
	}
	resp, body = b.Do("POST", path+"/restore", "", "")
	jsonError(t, resp, body, http.StatusNotFound)
	if !strings.Contains(body, "not deleted") {
		t.Errorf("restoring a note that is not deleted says %s", body)
	}
}

// dialWS opens a WebSocket as b's session and reads its hello.
func dialWS(t *testing.T, ts *testServer, b *browser) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", &websocket.DialOptions{HTTPClient: b.HTTP})
	if err != nil {
		t.Fatal(err)
	}
	if m := readWS(t, ws); m["type"] != "hello" {
		t.Fatalf("first message %v, want hello", m)
	}
	return ws
}

// readWS reads the next message other than presence.
func readWS(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if m["type"] != "presence" {
			return m
		}
	}
}
