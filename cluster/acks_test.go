package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// primaryAcks returns the Acks of a primary that committed TXIDs 1 to 3,
// with other live candidates cands.
func primaryAcks(t testing.TB, cands ...string) *Acks {
	t.Helper()
	l := &LiteFS{Dir: t.TempDir(), DB: "notesync.db", API: "http://127.0.0.1:1"}
	l.role.Store(&role{primary: true})
	a := &Acks{Node: "node1", LiteFS: l, Candidates: func() []string { return cands }, Timeout: 300 * time.Millisecond}
	for txid := uint64(1); txid <= 3; txid++ {
		a.Applied(Tx{TXID: txid, Checksum: 0xc0 + txid})
	}
	return a
}

// waitHeld runs WaitHeld in the background and returns its outcome.
func waitHeld(a *Acks, txid uint64) <-chan error {
	done := make(chan error, 1)
	go func() { done <- a.WaitHeld(context.Background(), txid) }()
	return done
}

// node3Behind returns the Acks of a primary at TXID 3 with two
// candidates: node2, which holds it, and node3, at 2, whose LiteFS last
// heard from the primary's lagMS ago.
func node3Behind(t *testing.T, lagMS int64) *Acks {
	t.Helper()
	a := primaryAcks(t, "node2", "node3")
	a.Heard(Held{From: "node2", TXID: 3, Checksum: 0xc3})
	a.Heard(Held{From: "node3", TXID: 2, Checksum: 0xc2, LagMS: lagMS})
	return a
}

// ackedBy checks who a's status says acknowledged the answered writes.
func ackedBy(t *testing.T, a *Acks, want string) {
	t.Helper()
	if got := a.Status().AckedBy; got != want {
		t.Fatalf("acknowledged by %q, want %q", got, want)
	}
}

// stillWaiting checks that the wait done has not ended within 100 ms.
func stillWaiting(t *testing.T, done <-chan error, why string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("answered (%v) while %s", err, why)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestAcksWaitHeld(t *testing.T) {
	t.Run("answers at once when no other candidate is alive", func(t *testing.T) {
		a := primaryAcks(t)
		start := time.Now()
		if err := a.WaitHeld(context.Background(), 3); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 50*time.Millisecond {
			t.Fatalf("waited %v with no candidate to wait for", took)
		}
		if got := a.Status().AckedBy; got != NoCandidate {
			t.Fatalf("acknowledged by %q, want %q", got, NoCandidate)
		}
	})
	t.Run("waits while the candidate is behind, until it holds the write", func(t *testing.T) {
		a := primaryAcks(t, "node2")
		a.Heard(Held{From: "node2", TXID: 2, Checksum: 0xc2})
		done := waitHeld(a, 3)
		stillWaiting(t, done, "node2 holds only txid 2")
		a.Heard(Held{From: "node2", TXID: 3, Checksum: 0xc3})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		st := a.Status()
		if st.AckedBy != "node2" || st.Answered != 3 || !st.Holding["node2"] {
			t.Fatalf("status %+v, want txid 3 acknowledged and held by node2", st)
		}
	})
	t.Run("a position further on holds the write", func(t *testing.T) {
		a := primaryAcks(t, "node2")
		a.Heard(Held{From: "node2", TXID: 3, Checksum: 0xc3})
		if err := a.WaitHeld(context.Background(), 2); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("another history at the same TXID is not counted", func(t *testing.T) {
		a := primaryAcks(t, "node2")
		a.Heard(Held{From: "node2", TXID: 3, Checksum: 0xbad})
		if err := a.WaitHeld(context.Background(), 3); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("got %v, want ErrNotHeld", err)
		}
		if st := a.Status(); st.Holding["node2"] {
			t.Fatalf("node2 said to hold the answered writes: %+v", st)
		}
	})
	t.Run("a node that is not a live candidate is not counted", func(t *testing.T) {
		a := primaryAcks(t, "node3")
		a.Heard(Held{From: "node2", TXID: 3, Checksum: 0xc3})
		if err := a.WaitHeld(context.Background(), 3); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("got %v, want ErrNotHeld", err)
		}
	})
	t.Run("the primary's own checksum may come after the candidate's report", func(t *testing.T) {
		a := primaryAcks(t, "node2")
		a.Heard(Held{From: "node2", TXID: 4, Checksum: 0xc4})
		done := waitHeld(a, 4)
		time.Sleep(50 * time.Millisecond)
		a.Applied(Tx{TXID: 4, Checksum: 0xc4})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("waits for every candidate that reports, not only the first", func(t *testing.T) {
		a := node3Behind(t, 0)
		done := waitHeld(a, 3)
		stillWaiting(t, done, "node3, which reports, is behind")
		a.Heard(Held{From: "node3", TXID: 3, Checksum: 0xc3})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		ackedBy(t, a, "node2, node3")
	})
	t.Run("names the candidates in order, whatever order the members come in", func(t *testing.T) {
		a := primaryAcks(t, "node3", "node2")
		a.Heard(Held{From: "node3", TXID: 3, Checksum: 0xc3})
		a.Heard(Held{From: "node2", TXID: 3, Checksum: 0xc3})
		if err := <-waitHeld(a, 3); err != nil {
			t.Fatal(err)
		}
		ackedBy(t, a, "node2, node3")
	})
	t.Run("a candidate that stopped reporting is not waited for", func(t *testing.T) {
		a := node3Behind(t, 0)
		a.mu.Lock()
		a.heardAt["node3"] = time.Now().Add(-CurrentWithin)
		a.mu.Unlock()
		if err := a.WaitHeld(context.Background(), 3); err != nil {
			t.Fatal(err)
		}
		ackedBy(t, a, "node2")
	})
	t.Run("a candidate whose LiteFS hears no primary is not waited for", func(t *testing.T) {
		for _, lag := range []int64{LagWithin.Milliseconds(), -1} {
			if err := node3Behind(t, lag).WaitHeld(context.Background(), 3); err != nil {
				t.Fatalf("node3's LiteFS %d ms from the primary's: %v", lag, err)
			}
		}
	})
	t.Run("a transaction whose event the stream lost is read from the position file", func(t *testing.T) {
		a := primaryAcks(t, "node2")
		a.Timeout = 5 * ReportEvery
		if err := os.WriteFile(filepath.Join(a.LiteFS.Dir, "notesync.db-pos"), []byte("0000000000000004/00000000000000c4\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go a.Run(ctx, func(Held) {})
		a.Heard(Held{From: "node2", TXID: 4, Checksum: 0xc4})
		if err := a.WaitHeld(context.Background(), 4); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ends with its context", func(t *testing.T) {
		a := primaryAcks(t, "node2")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := a.WaitHeld(ctx, 3); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

func TestAcksReplicaStatusIsThePrimarys(t *testing.T) {
	l := &LiteFS{Dir: t.TempDir(), DB: "notesync.db", API: "http://127.0.0.1:1"}
	l.role.Store(&role{primary: false, hostname: "node1"})
	a := &Acks{Node: "node3", LiteFS: l}
	a.Heard(Held{From: "node2", TXID: 5, Checksum: 1})
	a.Heard(Held{From: "node1", TXID: 7, Checksum: 2, Primary: true, Answered: 7, AckedBy: "node3", Holding: []string{"node3"}})
	st := a.Status()
	if st.Answered != 7 || st.AckedBy != "node3" || !st.Holding["node3"] || st.Holding["node2"] {
		t.Fatalf("status %+v, want the primary's word: txid 7 held by node3 alone", st)
	}
	if got := st.Positions["node2"].TXID; got != 5 {
		t.Fatalf("node2 at %d, want 5", got)
	}
}

// BenchmarkAcksWaitHeld is the primary's own cost of a write's wait, its
// candidates' reports already in: what the acknowledgement costs in CPU,
// apart from the replication it waits for.
func BenchmarkAcksWaitHeld(b *testing.B) {
	a := primaryAcks(b, "node2", "node3")
	ctx := context.Background()
	b.ReportAllocs()
	txid := uint64(3)
	for b.Loop() {
		txid++
		a.Applied(Tx{TXID: txid, Checksum: txid})
		a.Heard(Held{From: "node2", TXID: txid, Checksum: txid})
		a.Heard(Held{From: "node3", TXID: txid, Checksum: txid})
		if err := a.WaitHeld(ctx, txid); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAcksReportOnceJournaled(t *testing.T) {
	l := &LiteFS{Dir: t.TempDir(), DB: "notesync.db", API: "http://127.0.0.1:1"}
	l.role.Store(&role{primary: false})
	var journaled atomic.Uint64
	a := &Acks{Node: "node2", LiteFS: l, Journaled: journaled.Load}
	published := make(chan Held, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx, func(h Held) { published <- h })
	a.Applied(Tx{TXID: 5, Checksum: 0xc5})
	select {
	case h := <-published:
		t.Fatalf("reported %d before the journal held it", h.TXID)
	case <-time.After(100 * time.Millisecond):
	}
	journaled.Store(5)
	a.Poke()
	select {
	case h := <-published:
		if h.TXID != 5 {
			t.Fatalf("reported %d, want 5", h.TXID)
		}
	case <-time.After(time.Second):
		t.Fatal("not reported once the journal held it")
	}
}

func TestAcksHeldByAll(t *testing.T) {
	cands := []string{"node2", "node3"}
	a := primaryAcks(t)
	a.Candidates = func() []string { return cands }
	a.Heard(Held{From: "node2", TXID: 3, Checksum: 0xc3})
	if got := a.HeldByAll(); got != 0 {
		t.Fatalf("held by all at %d before node3 reported", got)
	}
	a.Heard(Held{From: "node3", TXID: 2, Checksum: 0xc2})
	if got := a.HeldByAll(); got != 2 {
		t.Fatalf("held by all at %d, want 2", got)
	}
	// node3 is no longer alive: it is still waited for.
	cands = []string{"node2"}
	time.Sleep(candidatesFor)
	if got := a.HeldByAll(); got != 2 {
		t.Fatalf("held by all at %d with node3 gone, want 2 still", got)
	}
}

// TestAcksLagReading: a replica's reports read its LiteFS's lag at most
// every lagFresh, and until then report the reading plus the time since,
// never less than the lag can be.
func TestAcksLagReading(t *testing.T) {
	dir := t.TempDir()
	l := &LiteFS{Dir: dir}
	setLag := func(ms string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, ".lag"), []byte(ms+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var r lagReading
	t0 := time.Now()
	if got := r.ms(l, t0); got != -1 {
		t.Fatalf("no .lag file: %d, want -1", got)
	}
	setLag("40")
	if got := r.ms(l, t0.Add(lagFresh)); got != 40 {
		t.Fatalf("lag %d ms, want 40", got)
	}
	setLag("2500")
	if got := r.ms(l, t0.Add(lagFresh+30*time.Millisecond)); got != 70 {
		t.Fatalf("within lagFresh: %d ms, want the reading plus the time since (70)", got)
	}
	if got := r.ms(l, t0.Add(2*lagFresh)); got != 2500 {
		t.Fatalf("after lagFresh: %d ms, want the new reading (2500)", got)
	}
	setLag("2147483647") // LiteFS's "not yet replicated"
	if got := r.ms(l, t0.Add(3*lagFresh)); got != -1 {
		t.Fatalf("not yet replicated: %d, want -1", got)
	}
}
