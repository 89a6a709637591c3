package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestWriteGate(t *testing.T) {
	var g writeGate
	primary := atomic.Bool{}
	primary.Store(true)
	served, waited, err := g.enter(context.Background(), primary.Load)
	if !served || waited || err != nil {
		t.Fatalf("open gate: served %v waited %v %v", served, waited, err)
	}
	held := make(chan error, 1)
	go func() { held <- g.hold(context.Background()) }()
	select {
	case err := <-held:
		t.Fatalf("hold returned with a write in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.leave()
	if err := <-held; err != nil {
		t.Fatal(err)
	}

	entered := make(chan [2]bool, 1)
	go func() {
		served, waited, _ := g.enter(context.Background(), primary.Load)
		entered <- [2]bool{served, waited}
	}()
	select {
	case <-entered:
		t.Fatal("a write went on while the gate was held")
	case <-time.After(50 * time.Millisecond):
	}
	primary.Store(false) // the lease moved
	g.open()
	if got := <-entered; got != [2]bool{false, true} {
		t.Fatalf("after the handoff: served, waited = %v, want not served (forwarded), waited", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	_ = g.hold(ctx)
	cancel()
	if _, _, err := g.enter(ctx, primary.Load); err == nil {
		t.Fatal("a held write outlived its request")
	}
	g.open()
}

// A replica whose primary refuses the connection, or answers that it is no
// longer primary, waits for the next primary rather than failing.
func TestForwardWaitsForTheNextPrimary(t *testing.T) {
	p, got := primaryApp(t, 0)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	moved := httptest.NewServer((&Forwarder{Secret: []byte("s3cret"), Node: "node3", IsPrimary: func() bool { return false },
		PrimaryURL: func() string { return "" }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Wrap(http.NotFoundHandler()))
	defer moved.Close()

	for _, old := range []string{dead, moved.URL} {
		var primary atomic.Value
		primary.Store(old)
		r := httptest.NewServer((&Forwarder{Secret: []byte("s3cret"), Node: "node2", IsPrimary: func() bool { return false },
			PrimaryURL: func() string { return primary.Load().(string) },
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil))}).Wrap(http.NotFoundHandler()))
		defer r.Close()
		time.AfterFunc(300*time.Millisecond, func() { primary.Store(p.URL) })
		start := time.Now()
		resp, body := post(t, r.URL+"/api/notes", "Idempotency-Key", "k")
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("old primary %s: %d %s", old, resp.StatusCode, body)
		}
		if took := time.Since(start); took < 300*time.Millisecond || took > 2*time.Second {
			t.Errorf("answered after %v, want once the next primary is known", took)
		}
		<-got
	}
}
