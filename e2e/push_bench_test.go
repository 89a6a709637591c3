package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkClusterPush measures, on three LiteFS nodes, the time from
// sending a write to the primary to its note_changed arriving on a socket of
// the same node and on a socket of a replica. The difference is the time
// the replica took to hold the change (replication lag plus its feed).
func BenchmarkClusterPush(b *testing.B) {
	c := startCluster(b, 3, os.Getenv("BENCH_NODE_ENV"))
	u := signup(b, c.URL(1), "bench")
	same, err := u.Dial(c.URL(1), "")
	if err != nil {
		b.Fatal(err)
	}
	defer same.CloseNow()
	cross, err := u.Dial(c.URL(3), "")
	if err != nil {
		b.Fatal(err)
	}
	defer cross.CloseNow()
	read(same, 5*time.Second)
	read(cross, 5*time.Second)

	// Each socket's reader stamps arrivals, so neither waits on the other.
	arrivals := func(ws interface {
		Read(ctx context.Context) (websocket.MessageType, []byte, error)
	}) chan time.Time {
		ch := make(chan time.Time, 16)
		go func() {
			defer close(ch)
			for {
				_, p, err := ws.Read(context.Background())
				if err != nil {
					return
				}
				if !bytes.Contains(p, []byte(`"note_changed"`)) {
					continue // presence
				}
				ch <- time.Now()
			}
		}()
		return ch
	}
	sameAt, crossAt := arrivals(same), arrivals(cross)

	var ackLat, sameLat, crossLat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		status, body, _, err := u.Try("POST", c.URL(1)+"/api/notes", fmt.Sprintf(`{"body":"bench %d"}`, i), "Idempotency-Key", "b-"+strconv.Itoa(i))
		if err != nil || status != http.StatusCreated {
			b.Fatalf("write: %d %s %v", status, body, err)
		}
		ackLat = append(ackLat, time.Since(start))
		for _, s := range []struct {
			at  chan time.Time
			lat *[]time.Duration
		}{{sameAt, &sameLat}, {crossAt, &crossLat}} {
			select {
			case at := <-s.at:
				*s.lat = append(*s.lat, at.Sub(start))
			case <-time.After(5 * time.Second):
				b.Fatal("no push within 5 s")
			}
		}
		time.Sleep(20 * time.Millisecond) // 50 writes/s
	}
	b.StopTimer()
	pct := func(l []time.Duration, p float64) float64 {
		s := append([]time.Duration(nil), l...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(ackLat, 0.5), "ack-p50-ms")
	b.ReportMetric(pct(ackLat, 0.99), "ack-p99-ms")
	b.ReportMetric(pct(sameLat, 0.5), "same-node-p50-ms")
	b.ReportMetric(pct(sameLat, 0.99), "same-node-p99-ms")
	b.ReportMetric(pct(crossLat, 0.5), "cross-node-p50-ms")
	b.ReportMetric(pct(crossLat, 0.99), "cross-node-p99-ms")
}

// BenchmarkClusterWrites measures note writes through the HTTP API of the
// LiteFS primary with 64 writers at once: throughput and write latency when
// every commit goes through the FUSE mount.
func BenchmarkClusterWrites(b *testing.B) {
	c := startCluster(b, 3, os.Getenv("BENCH_NODE_ENV"))
	u := signup(b, c.URL(1), "writer")
	u.HTTP.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	const writers = 64
	lat := make([]time.Duration, b.N)
	next := make(chan int, b.N)
	for i := 0; i < b.N; i++ {
		next <- i
	}
	close(next)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				status, body, _, err := u.Try("POST", c.URL(1)+"/api/notes", `{"body":"load"}`, "Idempotency-Key", "lw-"+strconv.Itoa(i))
				if err != nil || status != http.StatusCreated {
					b.Errorf("write: %d %s %v", status, body, err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	if _, m, _, err := u.Try("GET", c.MetricsURL(1)+"/metrics", ""); err == nil {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "notesync_write_batch_size_sum") || strings.HasPrefix(line, "notesync_write_batch_size_count") ||
				strings.HasPrefix(line, "notesync_write_batch_seconds_sum") || strings.HasPrefix(line, "notesync_write_batch_seconds_count") {
				b.Log(line)
			}
		}
	}
}
