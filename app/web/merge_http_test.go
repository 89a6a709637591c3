package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// TestAPIMerge: a PATCH whose If-Match names an earlier revision is
// merged with what was saved since when the two changed different lines,
// and pushed like any update; the same lines changed answer 412 as
// before (docs/PROTOCOL.md §12).
func TestAPIMerge(t *testing.T) {
	ts := newTestServer(t)
	b := ts.browser(t)
	b.signup("alice")
	patch := func(t *testing.T, path, body, rev string) (*http.Response, string) {
		t.Helper()
		js, _ := json.Marshal(map[string]string{"body": body})
		return b.Do("PATCH", path, "application/json", string(js), "If-Match", rev)
	}

	t.Run("different lines: 200 with the merged note, pushed to the user's tabs", func(t *testing.T) {
		id := b.createNote("buy milk\nwalk the dog\ncall mum")
		path := fmt.Sprintf("/api/notes/%d", id)
		ws := dialWS(t, ts, b)
		defer ws.CloseNow()
		if resp, body := patch(t, path, "buy oat milk\nwalk the dog\ncall mum", `"1"`); resp.StatusCode != 200 {
			t.Fatalf("first edit: %d %s", resp.StatusCode, body)
		}
		resp, body := patch(t, path, "buy milk\nwalk the dog\ncall mum on Sunday", `"1"`)
		var a struct {
			noteAnswer
			Merged bool `json:"merged"`
		}
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatal(err)
		}
		want := "buy oat milk\nwalk the dog\ncall mum on Sunday"
		if resp.StatusCode != 200 || !a.Merged || a.Note == nil || a.Note.Body != want || a.Note.Rev != 3 || resp.Header.Get("ETag") != `"3"` {
			t.Fatalf("second edit from revision 1: %d %s ETag %s; want 200 merged %q at rev 3", resp.StatusCode, body, resp.Header.Get("ETag"), want)
		}
		_, body = b.Do("GET", path, "", "")
		if got := decodeNote(t, body).Note.Body; got != want {
			t.Fatalf("stored %q, want %q", got, want)
		}
		var ops []string
		for len(ops) < 2 {
			m := readWS(t, ws)
			if m["type"] == "note_changed" && m["op"] == "updated" && int64(m["note_id"].(float64)) == id {
				ops = append(ops, fmt.Sprint(m["version"]))
			}
		}
		if ops[1] != fmt.Sprint(a.Version) {
			t.Fatalf("pushed versions %v, want the merge's %d last", ops, a.Version)
		}
	})

	t.Run("the same line: 412 with the note as it is, nothing changed", func(t *testing.T) {
		id := b.createNote("buy milk\nwalk the dog\ncall mum")
		path := fmt.Sprintf("/api/notes/%d", id)
		if resp, body := patch(t, path, "buy oat milk\nwalk the dog\ncall mum", `"1"`); resp.StatusCode != 200 {
			t.Fatalf("first edit: %d %s", resp.StatusCode, body)
		}
		resp, body := patch(t, path, "buy soy milk\nwalk the dog\ncall mum", `"1"`)
		a := decodeNote(t, body)
		if resp.StatusCode != http.StatusPreconditionFailed || a.Note == nil || a.Note.Body != "buy oat milk\nwalk the dog\ncall mum" || a.Note.Rev != 2 {
			t.Fatalf("an edit of the same line from revision 1: %d %s, want 412 with revision 2", resp.StatusCode, body)
		}
	})
}
