package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

func woken(c *Changes) bool {
	select {
	case <-c.C():
		return true
	default:
		return false
	}
}

func TestChangesReplica(t *testing.T) {
	var mu sync.Mutex
	var lags []time.Duration
	c := &Changes{Node: "node2", IsPrimary: func() bool { return false },
		ObserveLag: func(d time.Duration) { mu.Lock(); lags = append(lags, d); mu.Unlock() }}
	t0 := time.Unix(1000, 0)

	if woken(c) {
		t.Fatal("woken before any transaction")
	}
	c.Applied(Tx{At: t0}) // the stream started
	if !woken(c) {
		t.Fatal("the stream's start did not wake the feed")
	}

	// The announcement first, then LiteFS's event: the lag is between them.
	c.Announced(Changed{From: "node1", TXID: 5, At: t0.UnixNano()})
	if woken(c) {
		t.Fatal("an announcement woke the feed before the replica held the transaction")
	}
	c.Applied(Tx{TXID: 5, At: t0.Add(3 * time.Millisecond)})
	if !woken(c) {
		t.Fatal("an applied transaction did not wake the feed")
	}
	// The event first (the announcement was slower): timed as well.
	c.Applied(Tx{TXID: 6, At: t0.Add(10 * time.Millisecond)})
	c.Announced(Changed{From: "node1", TXID: 6, At: t0.Add(8 * time.Millisecond).UnixNano()})
	// One event covers every transaction up to its TXID.
	c.Announced(Changed{From: "node1", TXID: 7, At: t0.Add(20 * time.Millisecond).UnixNano()})
	c.Announced(Changed{From: "node1", TXID: 8, At: t0.Add(21 * time.Millisecond).UnixNano()})
	c.Applied(Tx{TXID: 8, At: t0.Add(25 * time.Millisecond)})

	mu.Lock()
	got := slices.Clone(lags)
	mu.Unlock()
	slices.Sort(got)
	want := []time.Duration{2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("lags %v, want %v", got, want)
	}
	if txid, from := c.PrimaryTXID(); txid != 8 || from != "node1" {
		t.Fatalf("primary at %d from %q, want 8 from node1", txid, from)
	}
	c.Announced(Changed{From: "node1", TXID: 7}) // late, and older
	if txid, _ := c.PrimaryTXID(); txid != 8 {
		t.Fatalf("an older announcement moved the primary's position back to %d", txid)
	}
}

func TestChangesPrimaryAnnounces(t *testing.T) {
	c := &Changes{Node: "node1", IsPrimary: func() bool { return true }}
	t0 := time.Unix(2000, 0)
	// Three commits before the sender runs: one announcement, the newest.
	for i := uint64(1); i <= 3; i++ {
		c.Applied(Tx{TXID: i, At: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	if woken(c) {
		t.Fatal("the primary's own commit woke its feed through LiteFS's event (its writer hands changes over)")
	}
	sent := make(chan Changed, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx, func(a Changed) { sent <- a }) }()
	defer func() { cancel(); <-done }()

	want := Changed{From: "node1", TXID: 3, At: t0.Add(3 * time.Millisecond).UnixNano()}
	if got := <-sent; got != want {
		t.Fatalf("announced %+v, want %+v", got, want)
	}
	c.Applied(Tx{TXID: 4, At: t0.Add(4 * time.Millisecond)})
	if got := <-sent; got.TXID != 4 {
		t.Fatalf("announced %+v, want TXID 4", got)
	}
	c.Applied(Tx{TXID: 4, At: t0.Add(5 * time.Millisecond)}) // the same again
	select {
	case got := <-sent:
		t.Fatalf("announced %+v twice", got)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestFollowEvents reads an event stream as LiteFS writes it.
func TestFollowEvents(t *testing.T) {
	lines := []string{
		`{"type":"init","data":{"isPrimary":false,"hostname":"node1"}}`,
		`{"type":"tx","db":"notesync.db","data":{"txID":"00000000000000ff","postApplyChecksum":"8000000000000000","pageSize":4096,"commit":3,"timestamp":"2026-01-01T00:00:00Z"}}`,
		`{"type":"tx","db":"other.db","data":{"txID":"0000000000000100"}}`,
		`{"type":"primaryChange","data":{"isPrimary":true}}`,
		`{"type":"tx","db":"notesync.db","data":{"txID":"0000000000000101"}}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, l := range lines {
			fmt.Fprintln(w, l)
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	l := &LiteFS{Dir: t.TempDir(), DB: "notesync.db", API: srv.URL}
	got := make(chan Tx, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.FollowEvents(ctx, func(tx Tx) { got <- tx }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()

	var txids []uint64
	for len(txids) < 3 {
		select {
		case tx := <-got:
			if tx.At.IsZero() {
				t.Fatalf("%+v has no arrival time", tx)
			}
			txids = append(txids, tx.TXID)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v from the stream, want 3 transactions", txids)
		}
	}
	if !slices.Equal(txids, []uint64{0, 0xff, 0x101}) {
		t.Fatalf("transactions %v, want [0 255 257] (start, then this database's only)", txids)
	}
	if !l.IsPrimary() {
		t.Fatal("primaryChange did not make the node primary")
	}
}
