package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"notesync/app"
)

func TestNotesInPages(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.browser(t)
	alice.signup("alice")
	u, err := ts.store.Authenticate(context.Background(), "alice", "password1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range PageSize + 5 {
		if _, err := ts.store.CreateNote(context.Background(), u.ID, fmt.Sprint("note ", i+1), app.Idempotency{}); err != nil {
			t.Fatal(err)
		}
	}
	type page struct {
		Version int64      `json:"version"`
		Notes   []app.Note `json:"notes"`
		Next    *int64     `json:"next"`
	}
	get := func(t *testing.T, query string) page {
		t.Helper()
		resp, body := alice.Do("GET", "/api/notes"+query, "", "")
		var p page
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("GET /api/notes%s: %d %.200s", query, resp.StatusCode, body)
		}
		return p
	}

	t.Run("the first page holds PageSize notes, newest first, and the next cursor", func(t *testing.T) {
		p := get(t, "")
		if len(p.Notes) != PageSize || p.Notes[0].Body != fmt.Sprint("note ", PageSize+5) || p.Next == nil {
			t.Fatalf("%d notes, first %q, next %v", len(p.Notes), p.Notes[0].Body, p.Next)
		}
		rest := get(t, fmt.Sprintf("?before=%d", *p.Next))
		if len(rest.Notes) != 5 || rest.Notes[4].Body != "note 1" || rest.Next != nil {
			t.Fatalf("last page: %d notes, next %v", len(rest.Notes), rest.Next)
		}
	})

	t.Run("a limit and min_version hold with pages", func(t *testing.T) {
		p := get(t, fmt.Sprintf("?limit=2&min_version=%d", PageSize+5))
		if len(p.Notes) != 2 || p.Version != PageSize+5 || p.Next == nil {
			t.Fatalf("limit=2: %d notes v%d next %v", len(p.Notes), p.Version, p.Next)
		}
		if rest := get(t, fmt.Sprintf("?limit=2&before=%d", *p.Next)); len(rest.Notes) != 2 || rest.Notes[0].Body != fmt.Sprint("note ", PageSize+3) {
			t.Fatalf("limit=2: %d notes v%d next %v", len(p.Notes), p.Version, p.Next)
		}
		for _, q := range []string{"?limit=0", "?limit=1001", "?before=x", "?before=-1"} {
			resp, body := alice.Do("GET", "/api/notes"+q, "", "")
			jsonError(t, resp, body, http.StatusBadRequest)
		}
	})

	t.Run("the fragment ends in a sentinel with the next cursor, and only when more follow", func(t *testing.T) {
		_, body := alice.Do("GET", "/notes?limit=3", "", "")
		if n := strings.Count(body, `class="note"`); n != 3 {
			t.Fatalf("%d notes in a page of 3", n)
		}
		p := get(t, "?limit=3")
		if want := fmt.Sprintf(`<li class="notes-more" data-next="%d" hidden></li>`, *p.Next); !strings.Contains(body, want) {
			t.Fatalf("no %s in %s", want, body)
		}
		_, body = alice.Do("GET", fmt.Sprintf("/notes?before=%d", *get(t, "").Next), "", "")
		if strings.Contains(body, "notes-more") || strings.Count(body, `class="note"`) != 5 {
			t.Fatalf("the last page: %s", body)
		}
		_, page := alice.Do("GET", "/", "", "")
		if strings.Count(page, `class="note"`) != PageSize || !strings.Contains(page, `class="notes-more"`) {
			t.Fatalf("the page shows %d notes", strings.Count(page, `class="note"`))
		}
	})
}
