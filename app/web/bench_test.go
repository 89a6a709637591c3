package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

// BenchmarkWriteWithParkedReads measures the CPU a note write costs this
// node, from its commit until the change feed has pushed it, while other
// users' min_version reads wait (docs/PROTOCOL.md §8): a parked read wakes
// for its own user's changes only, so the others should cost nothing.
func BenchmarkWriteWithParkedReads(b *testing.B) {
	for _, parked := range []int{0, 200} {
		b.Run(fmt.Sprintf("parked-%d", parked), func(b *testing.B) {
			ts := newTestServer(b, func(c *Config) { c.MinVersionWait = time.Hour })
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			for i := 0; i < parked; i++ {
				cookie, _ := mustLogIn(b, ts.srv.Sessions, sqlitetest.User(b, ts.store, fmt.Sprintf("reader%d", i)))
				wg.Go(func() {
					req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/notes?min_version=1000000", nil)
					req.AddCookie(cookie)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
				})
			}
			for ts.srv.parkedCount() < parked {
				time.Sleep(time.Millisecond)
			}
			w := sqlitetest.User(b, ts.store, "writer")
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pushed, done := ts.srv.Feed.Await(w.ID)
				if _, err := ts.store.CreateNote(context.Background(), w.ID, "a note body", app.Idempotency{}); err != nil {
					b.Fatal(err)
				}
				<-pushed
				done()
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/write")
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAPICreateNote measures one note write end to end over HTTP on
// plain disk, one at a time, as a tab sends it: POST /api/notes with the
// session cookie and an Idempotency-Key. With one user the session is in
// the node's cache; with 2,000 taking turns it is read from the database
// every time, as for users who write now and then.
func BenchmarkAPICreateNote(b *testing.B) {
	for _, users := range []int{1, 2000} {
		b.Run(fmt.Sprintf("users-%d", users), func(b *testing.B) {
			ts := newTestServer(b)
			cookies := make([]*http.Cookie, users)
			for i := range cookies {
				cookies[i], _ = mustLogIn(b, ts.srv.Sessions, sqlitetest.User(b, ts.store, fmt.Sprintf("writer%d", i)))
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest("POST", ts.URL+"/api/notes", strings.NewReader(`{"body":"a note body"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", i))
				req.AddCookie(cookies[i%users])
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatalf("POST /api/notes: %d", resp.StatusCode)
				}
			}
		})
	}
}
