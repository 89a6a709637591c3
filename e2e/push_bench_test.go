package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkClusterPush measures, on three LiteFS nodes, the time from
// sending a write to the primary to its note_changed arriving on a socket of
// the same node and on a socket of a replica. The difference is the time
// the replica took to hold the change (replication lag plus its feed).
func BenchmarkClusterPush(b *testing.B) {
	c := startCluster(b, 3)
	u := signup(b, c.URL(1), "bench")
	same, err := u.dial(c.URL(1), "")
	if err != nil {
		b.Fatal(err)
	}
	defer same.CloseNow()
	cross, err := u.dial(c.URL(3), "")
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
				if _, _, err := ws.Read(context.Background()); err != nil {
					return
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
		status, body, _, err := u.do("POST", c.URL(1)+"/api/notes", fmt.Sprintf(`{"body":"bench %d"}`, i), "Idempotency-Key", "b-"+strconv.Itoa(i))
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
