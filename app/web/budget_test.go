package web

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"notesync/app"
)

func TestWriteBudget(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	ts := newTestServer(t, func(c *Config) {
		c.WriteBudget = &WriteBudget{Rate: 0.5, Burst: 3, now: clock.Now}
	})
	alice, bob := ts.browser(t), ts.browser(t)
	alice.signup("alice")
	bob.signup("bob")
	id := alice.createNote("one")
	alice.createNote("two")
	alice.createNote("three")

	t.Run("past the burst, every note write is 429 with Retry-After and words", func(t *testing.T) {
		for _, w := range []struct{ method, path, body string }{
			{"POST", "/api/notes", `{"body":"four"}`},
			{"PATCH", "/api/notes/" + strconv.FormatInt(id, 10), `{"body":"one!"}`},
			{"DELETE", "/api/notes/" + strconv.FormatInt(id, 10), ""},
			{"POST", "/api/notes/" + strconv.FormatInt(id, 10) + "/restore", ""},
		} {
			resp, body := alice.Do(w.method, w.path, "application/json", w.body)
			jsonError(t, resp, body, http.StatusTooManyRequests)
			if ra := resp.Header.Get("Retry-After"); ra != "2" {
				t.Fatalf("%s %s: Retry-After %q, want 2 (one write at 0.5 a second)", w.method, w.path, ra)
			}
			if !strings.Contains(body, "faster than 0.5 a second") || !strings.Contains(body, "Wait 2 seconds") {
				t.Fatalf("%s %s: %s, want words that say the rate and the wait", w.method, w.path, body)
			}
		}
	})

	t.Run("reads and other users are not held back", func(t *testing.T) {
		if resp, body := alice.Do("GET", "/api/notes", "", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/notes: %d %s", resp.StatusCode, body)
		}
		bob.createNote("bob's")
	})

	t.Run("the budget refills at the rate", func(t *testing.T) {
		clock.Add(2 * time.Second)
		alice.createNote("four")
		resp, body := alice.Do("POST", "/api/notes", "application/json", `{"body":"five"}`)
		jsonError(t, resp, body, http.StatusTooManyRequests)
	})
}

func TestQuotaOverHTTP(t *testing.T) {
	ts := newTestServer(t)
	ts.store.Quota = app.Quota{Notes: 2, Bytes: 1000}
	alice := ts.browser(t)
	alice.signup("alice")
	alice.createNote("one")
	id := alice.createNote("two")

	resp, body := alice.Do("POST", "/api/notes", "application/json", `{"body":"three"}`)
	jsonError(t, resp, body, http.StatusRequestEntityTooLarge)
	if !strings.Contains(body, "You have 2 notes, the most one account may keep") {
		t.Fatalf("413: %s, want words that say the quota", body)
	}
	resp, body = alice.Do("PATCH", "/api/notes/"+strconv.FormatInt(id, 10), "application/json", mustJSON(map[string]string{"body": strings.Repeat("x", 1000)}))
	jsonError(t, resp, body, http.StatusRequestEntityTooLarge)
	if !strings.Contains(body, "more than 0.001 MB") {
		t.Fatalf("413: %s, want words that say the quota", body)
	}
}
