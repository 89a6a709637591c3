package lease_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/superfly/litefs"
	"github.com/superfly/litefs/consul"

	"notesync/cluster/local/lease"
)

// These tests drive the server with LiteFS's own Consul client, the code
// every node's LiteFS runs.

const (
	testKey       = "litefs/notesync"
	testTTL       = 1 * time.Second
	testLockDelay = 500 * time.Millisecond
	// slack bounds how late the server may be on a deadline, on a loaded
	// machine.
	slack = 400 * time.Millisecond
)

func openServer(t *testing.T) *lease.Server {
	t.Helper()
	s := &lease.Server{Logger: quietLogger()}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newLeaser is node name's LiteFS lease client, with the tests' TTL and
// lock delay.
func newLeaser(t *testing.T, url, name string) *consul.Leaser {
	t.Helper()
	l := consul.NewLeaser(url, testKey, name, "http://"+name+":20202")
	l.TTL, l.LockDelay = testTTL, testLockDelay
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	return l
}

func acquire(t *testing.T, l *consul.Leaser) litefs.Lease {
	t.Helper()
	ls, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatalf("%s acquires: %v", l.Hostname(), err)
	}
	return ls
}

// wantPrimary fails unless l sees want as the primary.
func wantPrimary(t *testing.T, l *consul.Leaser, want *consul.Leaser) {
	t.Helper()
	info, err := l.PrimaryInfo(context.Background())
	if err != nil {
		t.Fatalf("%s: primary info: %v", l.Hostname(), err)
	}
	if info.Hostname != want.Hostname() || info.AdvertiseURL != want.AdvertiseURL() {
		t.Fatalf("%s sees primary %+v, want %s at %s", l.Hostname(), info, want.Hostname(), want.AdvertiseURL())
	}
}

// waitFor polls f every 20 ms until it returns true, for at most limit,
// and returns when it did.
func waitFor(t *testing.T, limit time.Duration, what string, f func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if f() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLeaser(t *testing.T) {
	ctx := context.Background()

	t.Run("one node acquires; the other sees it as primary", func(t *testing.T) {
		s := openServer(t)
		a, b := newLeaser(t, s.URL(), "node1"), newLeaser(t, s.URL(), "node2")
		acquire(t, a)
		wantPrimary(t, b, a)
		wantPrimary(t, a, a)
		if _, err := b.Acquire(ctx); !errors.Is(err, litefs.ErrPrimaryExists) {
			t.Fatalf("second acquire: %v, want %v", err, litefs.ErrPrimaryExists)
		}
	})

	t.Run("a renewed lease stays past its TTL", func(t *testing.T) {
		s := openServer(t)
		a, b := newLeaser(t, s.URL(), "node1"), newLeaser(t, s.URL(), "node2")
		ls := acquire(t, a)
		for range 8 { // 2.4 s, over twice the TTL
			time.Sleep(testTTL * 3 / 10)
			if err := ls.Renew(ctx); err != nil {
				t.Fatalf("renew: %v", err)
			}
			wantPrimary(t, b, a)
		}
	})

	t.Run("a holder that stops renewing loses the lease after the TTL and the lock delay", func(t *testing.T) {
		s := openServer(t)
		a, b := newLeaser(t, s.URL(), "node1"), newLeaser(t, s.URL(), "node2")
		start := time.Now()
		ls := acquire(t, a)

		gone := waitFor(t, testTTL+slack, "the key outlives its session's TTL", func() bool {
			_, err := b.PrimaryInfo(ctx)
			return errors.Is(err, litefs.ErrNoPrimary)
		})
		if got := gone.Sub(start); got < testTTL {
			t.Fatalf("the key went after %v, before the TTL (%v)", got, testTTL)
		}
		if _, err := b.Acquire(ctx); !errors.Is(err, litefs.ErrPrimaryExists) {
			t.Fatalf("acquire within the lock delay: %v, want %v", err, litefs.ErrPrimaryExists)
		}
		took := waitFor(t, testLockDelay+slack, "no one can acquire after the lock delay", func() bool {
			_, err := b.Acquire(ctx)
			return err == nil
		})
		if got := took.Sub(start); got < testTTL+testLockDelay {
			t.Fatalf("acquired after %v, before TTL + lock delay (%v)", got, testTTL+testLockDelay)
		}
		wantPrimary(t, a, b)
		if err := ls.Renew(ctx); !errors.Is(err, litefs.ErrLeaseExpired) {
			t.Fatalf("the lost holder renews: %v, want %v", err, litefs.ErrLeaseExpired)
		}
	})

	t.Run("a lease closed by its holder is free at once", func(t *testing.T) {
		s := openServer(t)
		a, b := newLeaser(t, s.URL(), "node1"), newLeaser(t, s.URL(), "node2")
		if err := acquire(t, a).Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if _, err := b.PrimaryInfo(ctx); !errors.Is(err, litefs.ErrNoPrimary) {
			t.Fatalf("primary info after close: %v, want %v", err, litefs.ErrNoPrimary)
		}
		acquire(t, b) // no lock delay: the key was released, not lost
		wantPrimary(t, a, b)
	})

	t.Run("a handoff gives the holder's session to the other node", func(t *testing.T) {
		s := openServer(t)
		a, b := newLeaser(t, s.URL(), "node1"), newLeaser(t, s.URL(), "node2")
		la := acquire(t, a)
		lb, err := b.AcquireExisting(ctx, la.ID())
		if err != nil {
			t.Fatalf("acquire the handed-off session: %v", err)
		}
		wantPrimary(t, a, b)
		if _, err := a.Acquire(ctx); !errors.Is(err, litefs.ErrPrimaryExists) {
			t.Fatalf("old holder acquires again: %v, want %v", err, litefs.ErrPrimaryExists)
		}
		if err := lb.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := la.Renew(ctx); !errors.Is(err, litefs.ErrLeaseExpired) {
			t.Fatalf("renew of the destroyed session: %v, want %v", err, litefs.ErrLeaseExpired)
		}
		acquire(t, a)
	})

	t.Run("a handoff of an expired session fails", func(t *testing.T) {
		s := openServer(t)
		b := newLeaser(t, s.URL(), "node2")
		if _, err := b.AcquireExisting(ctx, "0f6b7b1c-3d0f-4a51-9a89-1f4f4a1c7e11"); !errors.Is(err, litefs.ErrLeaseExpired) {
			t.Fatalf("acquire an unknown session: %v, want %v", err, litefs.ErrLeaseExpired)
		}
	})

	t.Run("the cluster ID is set once", func(t *testing.T) {
		s := openServer(t)
		a, b := newLeaser(t, s.URL(), "node1"), newLeaser(t, s.URL(), "node2")
		if id, err := b.ClusterID(ctx); err != nil || id != "" {
			t.Fatalf("cluster ID before any = %q, %v; want none", id, err)
		}
		if err := a.SetClusterID(ctx, "LFSC0123456789ABCDEF"); err != nil {
			t.Fatal(err)
		}
		if id, err := b.ClusterID(ctx); err != nil || id != "LFSC0123456789ABCDEF" {
			t.Fatalf("cluster ID = %q, %v", id, err)
		}
		if err := b.SetClusterID(ctx, "LFSCFFFFFFFFFFFFFFFF"); err == nil {
			t.Fatal("a second cluster ID was set")
		}
	})

	t.Run("with a token, only a client that has it is served", func(t *testing.T) {
		s := &lease.Server{Token: "consul-token", Logger: quietLogger()}
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		u := strings.Replace(s.URL(), "://", "://:consul-token@", 1) + "/notesync-app"
		a, b := newLeaser(t, u, "node1"), newLeaser(t, u, "node2")
		acquire(t, a)
		wantPrimary(t, b, a)
		stranger := consul.NewLeaser(strings.Replace(u, "consul-token", "wrong", 1), testKey, "node3", "http://node3:20202")
		if err := stranger.Open(); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("open with a wrong token: %v, want 403", err)
		}
	})

	t.Run("a URL with a path registers a node and prefixes the key", func(t *testing.T) {
		s := openServer(t)
		a, b := newLeaser(t, s.URL()+"/notesync-app", "node1"), newLeaser(t, s.URL()+"/notesync-app", "node2")
		if a.NodeName() == "" {
			t.Fatal("no node name: the URL's path was not taken as the key prefix")
		}
		acquire(t, a)
		wantPrimary(t, b, a)
		other := newLeaser(t, s.URL(), "node3") // no prefix: another key
		if _, err := other.PrimaryInfo(ctx); !errors.Is(err, litefs.ErrNoPrimary) {
			t.Fatalf("unprefixed key: %v, want %v", err, litefs.ErrNoPrimary)
		}
	})
}
