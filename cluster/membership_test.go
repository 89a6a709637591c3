package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// freeAddr returns a loopback address with a free port (TCP and UDP).
func freeAddr(t *testing.T) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		u, err := net.ListenPacket("udp", addr)
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

type recorder struct {
	mu         sync.Mutex
	changes    *Changes // what the membership handed over
	sessions   []string
	broadcasts []string
	events     []string // joined X, left X, merged STATE
}

func (r *recorder) add(list *[]string, s string) {
	r.mu.Lock()
	*list = append(*list, s)
	r.mu.Unlock()
}

func (r *recorder) has(list *[]string, s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(*list, s)
}

// count returns how many announcements and log-outs came.
func (r *recorder) count() (int, int) {
	r.changes.mu.Lock()
	changed := len(r.changes.heard)
	r.changes.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return changed, len(r.sessions)
}

func newMember(t *testing.T, name, bind string, peers []string, key []byte) (*Membership, *recorder) {
	t.Helper()
	rec := &recorder{changes: &Changes{Node: name, LiteFS: liteFSAs(false)}}
	m := &Membership{
		Name: name, Bind: bind, Peers: peers, Key: key, Fast: true,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		MetaFunc:    func() Meta { return Meta{Region: "local", HTTP: "http://" + name} },
		Changes:     rec.changes,
		OnEphemeral: func(msg []byte) { rec.add(&rec.broadcasts, string(msg)) },
		OnJoin:      func(node string) { rec.add(&rec.events, "joined "+node) },
		OnLeave:     func(node string) { rec.add(&rec.events, "left "+node) },
		State:       func() []byte { return []byte("state of " + name) },
		MergeState:  func(buf []byte) { rec.add(&rec.events, "merged "+string(buf)) },
		OnEndSession: func(id string) {
			rec.mu.Lock()
			rec.sessions = append(rec.sessions, id)
			rec.mu.Unlock()
		},
	}
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, rec
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMembership(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")

	t.Run("nodes with the same key join, see each other's metadata and exchange messages", func(t *testing.T) {
		a1, a2 := freeAddr(t), freeAddr(t)
		peers := []string{a1, a2}
		m1, rec1 := newMember(t, "n1", a1, peers, key)
		m2, rec2 := newMember(t, "n2", a2, peers, key)
		waitFor(t, "both joined", func() bool { return len(m1.Members()) == 2 && len(m2.Members()) == 2 && m1.Joined() && m2.Joined() })
		waitFor(t, "join events and a state exchange", func() bool {
			return rec1.has(&rec1.events, "joined n2") && rec2.has(&rec2.events, "joined n1") &&
				(rec1.has(&rec1.events, "merged state of n2") || rec2.has(&rec2.events, "merged state of n1"))
		})
		for _, mem := range m2.Members() {
			if mem.Name == "n1" && (mem.Region != "local" || mem.HTTP != "http://n1" || mem.State != "alive") {
				t.Fatalf("n1 as n2 sees it: %+v", mem)
			}
		}
		m1.PublishChanged(Changed{From: "n1", TXID: 9, At: 12345, Data: json.RawMessage(`{"c":[1]}`)})
		m1.PublishEndSession("sess-1")
		m1.SendToAll([]byte(`ephemeral to all`))
		if err := m1.SendTo("n2", []byte(`ephemeral to n2`)); err != nil {
			t.Fatal(err)
		}
		if err := m1.SendTo("nobody", []byte(`x`)); err == nil {
			t.Error("SendTo a node that is not a member did not fail")
		}
		waitFor(t, "messages", func() bool {
			c, s := rec2.count()
			return c == 1 && s == 1 && rec2.has(&rec2.broadcasts, "ephemeral to all") && rec2.has(&rec2.broadcasts, "ephemeral to n2")
		})
		rec2.changes.mu.Lock()
		got := rec2.changes.heard[0]
		rec2.changes.mu.Unlock()
		if got.From != "n1" || got.TXID != 9 || got.At != 12345 || string(got.Data) != `{"c":[1]}` {
			t.Fatalf("got %+v", got)
		}
		// What each node sent is counted: its gossip and the messages.
		if tr := m1.Traffic(); tr.Packets == 0 || tr.PacketBytes < tr.Packets*20 || tr.Streams == 0 || tr.StreamBytes == 0 {
			t.Fatalf("n1's traffic: %+v", tr)
		}
	})

	t.Run("a node with the wrong key can neither join nor inject messages", func(t *testing.T) {
		a1, a2 := freeAddr(t), freeAddr(t)
		m1, rec1 := newMember(t, "good", a1, nil, key)
		bad, _ := newMember(t, "bad", a2, []string{a1}, []byte("ffffffffffffffffffffffffffffffff"))
		time.Sleep(2 * time.Second) // several join attempts
		if bad.Joined() || len(m1.Members()) != 1 {
			t.Fatalf("wrong-key node joined: good sees %d members", len(m1.Members()))
		}
		// Even sent straight to the good node's address, its packets are
		// dropped: they do not decrypt.
		conn, err := net.Dial("udp", a1)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := 0; i < 5; i++ {
			fmt.Fprintf(conn, "\x01{\"f\":\"x\",\"t\":%d}", i+1)
		}
		time.Sleep(300 * time.Millisecond)
		if c, _ := rec1.count(); c != 0 {
			t.Fatalf("good node accepted %d injected messages", c)
		}
	})

	t.Run("a node that leaves is seen as left", func(t *testing.T) {
		a1, a2 := freeAddr(t), freeAddr(t)
		m1, rec1 := newMember(t, "stay", a1, []string{a1, a2}, nil)
		m2, _ := newMember(t, "go", a2, []string{a1, a2}, nil)
		waitFor(t, "joined", func() bool { return len(m1.Members()) == 2 })
		m2.Close()
		waitFor(t, "OnLeave", func() bool { return rec1.has(&rec1.events, "left go") })
		waitFor(t, "left", func() bool {
			for _, m := range m1.Members() {
				if m.Name == "go" {
					return m.State == "left" || m.State == "dead"
				}
			}
			return true
		})
	})
}

func TestMembershipPrimary(t *testing.T) {
	a1, a2, a3 := freeAddr(t), freeAddr(t), freeAddr(t)
	peers := []string{a1, a2, a3}
	metas := map[string]Meta{
		"n2": {Region: "local", LiteFS: "lfs-n2", Primary: true},
		"n3": {Region: "local", LiteFS: "lfs-n3"},
	}
	open := func(name, addr string) *Membership {
		m := &Membership{Name: name, Bind: addr, Peers: peers, Fast: true,
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			MetaFunc: func() Meta { return metas[name] }}
		if err := m.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	m1, m2, _ := open("n1", a1), open("n2", a2), open("n3", a3)
	waitFor(t, "n1 to see both others' metadata", func() bool {
		seen := 0
		for _, mem := range m1.Members() {
			if mem.LiteFS != "" {
				seen++
			}
		}
		return seen == 2
	})
	if p, ok := m1.Primary(""); !ok || p.Name != "n2" {
		t.Errorf("LiteFS names none: primary %q %v, want n2 (its metadata says so)", p.Name, ok)
	}
	if p, ok := m1.Primary("lfs-n3"); !ok || p.Name != "n3" {
		t.Errorf("LiteFS names lfs-n3: primary %q %v, want n3 (LiteFS wins over metadata)", p.Name, ok)
	}
	if v := m1.PrimaryView(""); v.Name != "n2" || v.State != "alive" {
		t.Errorf("view %+v, want n2 alive", v)
	}
	m2.Close()
	waitFor(t, "n2 gone", func() bool {
		_, ok := m1.Primary("lfs-n2")
		return !ok
	})
}
