package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

// BenchmarkAPIListNotes measures GET /api/notes over HTTP for a user who
// keeps 10,000 notes of 1,000 characters: the first page, the largest
// page a client may ask for, and, for comparison, the whole list in one
// answer as the node gave it before it answered in pages (the same JSON,
// read and encoded in the process, without HTTP). answer-bytes is the
// size of one answer.
func BenchmarkAPIListNotes(b *testing.B) {
	const notes = 10_000
	ts := newTestServer(b)
	u := sqlitetest.User(b, ts.store, "keeper")
	body := strings.Repeat("a long note ", 84)[:1000]
	for i := range notes {
		if _, err := ts.store.CreateNote(context.Background(), u.ID, fmt.Sprint(i, body), app.Idempotency{}); err != nil {
			b.Fatal(err)
		}
	}
	cookie, _ := mustLogIn(b, ts.srv.Sessions, u)
	for _, query := range []string{"", "?limit=1000"} {
		b.Run("GET /api/notes"+query, func(b *testing.B) {
			var size int64
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("GET", ts.URL+"/api/notes"+query, nil)
				req.AddCookie(cookie)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				size, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET /api/notes%s: %d", query, resp.StatusCode)
				}
			}
			b.ReportMetric(float64(size), "answer-bytes")
		})
	}
	b.Run("the whole list in one answer", func(b *testing.B) {
		var size int
		b.ReportAllocs()
		for b.Loop() {
			all, version, err := ts.store.ListNotes(context.Background(), u.ID)
			if err != nil {
				b.Fatal(err)
			}
			out, err := json.Marshal(map[string]any{"version": version, "notes": all})
			if err != nil {
				b.Fatal(err)
			}
			size = len(out)
		}
		b.ReportMetric(float64(size), "answer-bytes")
	})
}
