package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// news returns what the feed would take from c now.
func news(c *Changes) []string {
	var out []string
	for {
		select {
		case d := <-c.C():
			if d == nil {
				out = append(out, "read")
			} else {
				out = append(out, string(d))
			}
		default:
			return out
		}
	}
}

// liteFSAs returns a LiteFS whose event stream said this node's role.
func liteFSAs(primary bool) *LiteFS {
	l := &LiteFS{Dir: "/nonexistent", API: "http://127.0.0.1:1"}
	l.role.Store(&role{primary: primary, hostname: "node1"})
	return l
}

func TestChangesReplica(t *testing.T) {
	var mu sync.Mutex
	var lags []time.Duration
	c := &Changes{Node: "node2", LiteFS: liteFSAs(false),
		ObserveLag: func(d time.Duration) { mu.Lock(); lags = append(lags, d); mu.Unlock() }}
	t0 := time.Unix(1000, 0)
	at := func(ms int) int64 { return t0.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	check := func(what string, want ...string) {
		t.Helper()
		if got := news(c); !slices.Equal(got, want) {
			t.Fatalf("%s: the feed got %q, want %q", what, got, want)
		}
	}

	check("before any transaction")
	c.Applied(Tx{At: t0}) // the stream started
	check("the stream's start", "read")

	// Announced first (gossip is faster than LiteFS): kept until LiteFS
	// has applied the transaction, then its data goes to the feed.
	c.Announced(Changed{From: "node1", TXID: 5, At: at(0), Data: []byte(`"five"`)})
	check("an announcement before the replica holds it")
	c.Applied(Tx{TXID: 5, At: t0.Add(3 * time.Millisecond)})
	check("transaction 5 applied", `"five"`)

	// Applied first: the feed reads, and the data that comes later is
	// handed over too (the feed drops what it pushed).
	c.Applied(Tx{TXID: 6, At: t0.Add(10 * time.Millisecond)})
	check("transaction 6 applied, not announced", "read")
	c.Announced(Changed{From: "node1", TXID: 6, At: at(8), Data: []byte(`"six"`)})
	check("transaction 6 announced late", `"six"`)

	// One event covers every transaction up to its TXID, in order; one
	// announced without data (too big for a packet) means a read.
	c.Announced(Changed{From: "node1", TXID: 8, At: at(21), Data: []byte(`"eight"`)})
	c.Announced(Changed{From: "node1", TXID: 7, At: at(20)})
	c.Applied(Tx{TXID: 8, At: t0.Add(25 * time.Millisecond)})
	check("transactions 7 and 8 applied", `"eight"`, "read")

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
	c.Announced(Changed{From: "node1", TXID: 7}) // a duplicate, late
	if txid, _ := c.PrimaryTXID(); txid != 8 {
		t.Fatalf("an older announcement moved the primary's position back to %d", txid)
	}
}

func TestChangesPrimaryAnnounces(t *testing.T) {
	c := &Changes{Node: "node1", LiteFS: liteFSAs(true)}
	// Announced before the sender runs: sent in order, all of them.
	c.Announce(3, []byte(`"three"`))
	c.Announce(4, []byte(`"`+strings.Repeat("x", MaxData)+`"`)) // too big: announced without
	c.Announce(0, []byte(`"unknown position"`))                 // not announced
	c.Applied(Tx{TXID: 4, At: time.Now()})
	if got := news(c); len(got) != 0 {
		t.Fatalf("the primary's own transaction reached its feed through LiteFS's event: %q (its writer hands changes over)", got)
	}
	sent := make(chan Changed, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx, func(a Changed) { sent <- a }) }()
	defer func() { cancel(); <-done }()

	for _, want := range []struct {
		txid uint64
		data string
	}{{3, `"three"`}, {4, ""}} {
		got := <-sent
		if got.From != "node1" || got.TXID != want.txid || string(got.Data) != want.data || got.At == 0 {
			t.Fatalf("announced %+v, want TXID %d with %q", got, want.txid, want.data)
		}
	}
	select {
	case got := <-sent:
		t.Fatalf("announced %+v too", got)
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
