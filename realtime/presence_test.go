package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// lan connects in-process hubs as the nodes of a cluster: what one sends
// with its Peers, the others Receive. It can drop every packet.
type lan struct {
	mu      sync.Mutex
	hubs    map[string]*Hub
	down    bool
	packets atomic.Int64
}

// peer is one hub's view of the lan.
type peer struct {
	l    *lan
	self string
}

func (p peer) SendToAll(msg []byte) {
	p.l.mu.Lock()
	var to []*Hub
	for name, h := range p.l.hubs {
		if name != p.self && !p.l.down {
			to = append(to, h)
		}
	}
	p.l.mu.Unlock()
	p.l.packets.Add(1)
	for _, h := range to {
		h.Receive(append([]byte(nil), msg...))
	}
}

func (p peer) SendTo(node string, msg []byte) error {
	p.l.mu.Lock()
	h, ok := p.l.hubs[node]
	down := p.l.down
	p.l.mu.Unlock()
	if !ok {
		return fmt.Errorf("no node %s", node)
	}
	p.l.packets.Add(1)
	if !down {
		h.Receive(append([]byte(nil), msg...))
	}
	return nil
}

// node adds a hub named name to the lan, served by a fixture, with
// presence pushed as DefaultPresenceMessage encodes it.
func (l *lan) node(t *testing.T, name string) *fixture {
	t.Helper()
	f := newFixture(t, func(ep *Endpoint) { ep.Node = name })
	f.hub.Node = name
	f.hub.PresenceMessage = DefaultPresenceMessage
	f.hub.PresenceInterval = 20 * time.Millisecond
	f.hub.Peers = peer{l: l, self: name}
	l.mu.Lock()
	if l.hubs == nil {
		l.hubs = map[string]*Hub{}
	}
	l.hubs[name] = f.hub
	l.mu.Unlock()
	return f
}

// presenceMsg is DefaultPresenceMessage decoded.
type presenceMsg struct {
	Type     string
	Tabs     int
	Browsers int
	Nodes    map[string]int
	Topics   map[string]int
	Own      string
	OwnByTab map[string]string `json:"own_by_tab"`
	Conn     string            // of hello
}

// tab is one client connection that keeps the last presence it was told.
type tab struct {
	ws   *websocket.Conn
	conn string // id from hello

	mu   sync.Mutex
	last presenceMsg
	n    int // presence messages received
	done chan struct{}
}

func openTab(t *testing.T, f *fixture, user int64) *tab {
	t.Helper()
	tb := &tab{ws: f.dial(t, user, ""), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, p, err := tb.ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var h presenceMsg
	if err := json.Unmarshal(p, &h); err != nil || h.Type != "hello" || h.Conn == "" {
		t.Fatalf("first message %s, want hello with a conn id", p)
	}
	tb.conn = h.Conn
	go func() {
		defer close(tb.done)
		for {
			_, p, err := tb.ws.Read(context.Background())
			if err != nil {
				return
			}
			var m presenceMsg
			if json.Unmarshal(p, &m) == nil && m.Type == "presence" {
				tb.mu.Lock()
				tb.last, tb.n = m, tb.n+1
				tb.mu.Unlock()
			}
		}
	}()
	return tb
}

func (tb *tab) presence() (presenceMsg, int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.last, tb.n
}

// waitPresence waits until the tab's last presence matches want.
func (tb *tab) waitPresence(t *testing.T, what string, tabs int, nodes map[string]int, topics map[string]int) {
	t.Helper()
	if topics == nil {
		topics = map[string]int{}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, _ := tb.presence()
		if p.Tabs == tabs && maps.Equal(p.Nodes, nodes) && maps.Equal(p.Topics, topics) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: presence %+v, want %d tabs on %v editing %v", what, p, tabs, nodes, topics)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPresence(t *testing.T) {
	l := &lan{}
	n1, n2 := l.node(t, "n1"), l.node(t, "n2")

	a := openTab(t, n1, 7)
	a.waitPresence(t, "a lone tab", 1, map[string]int{"n1": 1}, nil)
	b := openTab(t, n2, 7)
	c := openTab(t, n2, 7)

	t.Run("tabs on two nodes see each other", func(t *testing.T) {
		for _, tb := range []*tab{a, b, c} {
			tb.waitPresence(t, "three tabs", 3, map[string]int{"n1": 1, "n2": 2}, nil)
		}
	})

	t.Run("a topic set on one node counts on the other, and each tab is told its own", func(t *testing.T) {
		conn, ok := n1.hub.Conn(a.conn)
		if !ok {
			t.Fatalf("hub n1 does not find connection %q", a.conn)
		}
		conn.SetTopic("42")
		b.waitPresence(t, "a's topic, seen on n2", 3, map[string]int{"n1": 1, "n2": 2}, map[string]int{"42": 1})
		a.waitPresence(t, "a's own topic", 3, map[string]int{"n1": 1, "n2": 2}, map[string]int{"42": 1})
		if p, _ := a.presence(); p.Own != "42" {
			t.Errorf("a: own %q, want 42", p.Own)
		}
		if p, _ := b.presence(); p.Own != "" {
			t.Errorf("b: own %q, want none", p.Own)
		}
		conn.SetTopic("")
		b.waitPresence(t, "a's topic closed", 3, map[string]int{"n1": 1, "n2": 2}, nil)
	})

	t.Run("another user sees nothing of it", func(t *testing.T) {
		other := openTab(t, n1, 8)
		other.waitPresence(t, "user 8 alone", 1, map[string]int{"n1": 1}, nil)
		time.Sleep(100 * time.Millisecond) // five presence intervals of 20 ms
		if p, _ := other.presence(); p.Tabs != 1 {
			t.Fatalf("user 8 told %+v", p)
		}
		other.ws.CloseNow()
	})

	t.Run("a tab that closes stops counting", func(t *testing.T) {
		c.ws.Close(websocket.StatusNormalClosure, "")
		a.waitPresence(t, "c gone", 2, map[string]int{"n1": 1, "n2": 1}, nil)
	})

	t.Run("a node declared dead stops counting, and counts again when it comes back", func(t *testing.T) {
		n1.hub.PeerLeft("n2")
		a.waitPresence(t, "n2 dead", 1, map[string]int{"n1": 1}, nil)
		// Only n1 sees n2 come back (n2 never saw anything wrong): n1 asks
		// n2 for its presence.
		n1.hub.PeerJoined("n2")
		a.waitPresence(t, "n2 back", 2, map[string]int{"n1": 1, "n2": 1}, nil)
	})

	t.Run("a node that restarts leaves no ghosts", func(t *testing.T) {
		// n2 restarts: a new hub of the same name, whose tab b is gone.
		l.mu.Lock()
		delete(l.hubs, "n2")
		l.mu.Unlock()
		n2again := l.node(t, "n2")
		d := openTab(t, n2again, 7)
		// Its first packet, from a new epoch, replaces what n2 said before.
		a.waitPresence(t, "only the restarted n2's tab", 2, map[string]int{"n1": 1, "n2": 1}, nil)
		// Its join's push/pull tells it about n1.
		n2again.hub.MergePresenceState(n1.hub.PresenceState())
		d.waitPresence(t, "d", 2, map[string]int{"n1": 1, "n2": 1}, nil)
	})
}

func TestPresenceRepairsLostPackets(t *testing.T) {
	l := &lan{}
	n1, n2 := l.node(t, "n1"), l.node(t, "n2")
	a := openTab(t, n1, 7)
	b := openTab(t, n2, 7)
	a.waitPresence(t, "both", 2, map[string]int{"n1": 1, "n2": 1}, nil)

	l.mu.Lock()
	l.down = true // every packet is lost
	l.mu.Unlock()
	b.ws.Close(websocket.StatusNormalClosure, "")
	c := openTab(t, n2, 7)
	conn, _ := n2.hub.Conn(c.conn)
	conn.SetTopic("9")
	time.Sleep(100 * time.Millisecond) // five presence intervals of 20 ms
	if p, _ := a.presence(); p.Topics["9"] != 0 {
		t.Fatalf("a heard of c with every packet lost: %+v", p)
	}
	l.mu.Lock()
	l.down = false
	l.mu.Unlock()

	// A push/pull: each side takes the other's full state.
	n1.hub.MergePresenceState(n2.hub.PresenceState())
	n2.hub.MergePresenceState(n1.hub.PresenceState())
	a.waitPresence(t, "repaired", 2, map[string]int{"n1": 1, "n2": 1}, map[string]int{"9": 1})
}

func TestPresenceCoalescesBursts(t *testing.T) {
	l := &lan{}
	n1, n2 := l.node(t, "n1"), l.node(t, "n2")
	n1.hub.PresenceInterval = 100 * time.Millisecond
	watcher := openTab(t, n2, 1)
	watcher.waitPresence(t, "alone", 1, map[string]int{"n2": 1}, nil)
	before := l.packets.Load()

	// A burst of 300 tabs of 100 users, 3 a user, on n1.
	const users, perUser = 100, 3
	tabs := make([]*tab, users*perUser)
	var wg sync.WaitGroup
	for i := range tabs {
		wg.Go(func() { tabs[i] = openTab(t, n1, int64(i/perUser+1)) })
	}
	wg.Wait()
	for i, tb := range tabs {
		if i/perUser == 0 { // user 1, who also has the watcher's tab on n2
			tb.waitPresence(t, "user 1's tab", perUser+1, map[string]int{"n1": perUser, "n2": 1}, nil)
		} else {
			tb.waitPresence(t, "a tab of the burst", perUser, map[string]int{"n1": perUser}, nil)
		}
	}
	watcher.waitPresence(t, "user 1's burst", perUser+1, map[string]int{"n1": perUser, "n2": 1}, nil)
	time.Sleep(300 * time.Millisecond) // let the last flush go out
	sent := l.packets.Load() - before
	// Per connection per connection would be 300×300; per connection 300.
	if sent > 40 {
		t.Errorf("%d packets between nodes for a burst of %d tabs, want a few dozen at most", sent, users*perUser)
	}
	most := 0
	for _, tb := range tabs {
		_, n := tb.presence()
		most = max(most, n)
	}
	if most > 2*perUser {
		t.Errorf("a tab was sent %d presence messages during the burst, want a handful", most)
	}
	t.Logf("%d tabs: %d packets between nodes, at most %d presence messages per tab", users*perUser, sent, most)
}

func TestPublishReachesOtherNodes(t *testing.T) {
	l := &lan{}
	n1, n2 := l.node(t, "n1"), l.node(t, "n2")
	n1.hub.PresenceMessage, n2.hub.PresenceMessage = nil, nil
	here, there, other := n1.dial(t, 5, ""), n2.dial(t, 5, ""), n2.dial(t, 6, "")
	for _, ws := range []*websocket.Conn{here, there, other} {
		read(t, ws) // hello
	}
	// Once n2 counts n1's tab, n1 has sent its presence: what follows is
	// the publish alone.
	for deadline := time.Now().Add(5 * time.Second); n2.hub.NodeConnections()["n1"] != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n2 does not count n1's tab: %v", n2.hub.NodeConnections())
		}
	}
	before := n1.hub.Stats()
	if _, err := n1.hub.Publish(5, Message{Type: "typing", Data: []byte(`{"type":"typing","who":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if s := n1.hub.Stats(); s.PeerPackets != before.PeerPackets+1 || s.PeerBytes <= before.PeerBytes+27 {
		t.Errorf("a publish counted %d messages, %d bytes to other nodes; want 1 of its size", s.PeerPackets-before.PeerPackets, s.PeerBytes-before.PeerBytes)
	}
	for _, ws := range []*websocket.Conn{here, there} {
		if m := read(t, ws); m.Type != "typing" {
			t.Fatalf("got %+v, want typing", m)
		}
	}
	if _, err := n1.hub.Publish(5, Message{Type: "big", Data: []byte(`"` + strings.Repeat("x", MaxPeerMessage) + `"`)}); err != ErrTooBig {
		t.Fatalf("a message over a packet: %v, want ErrTooBig", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, p, err := other.Read(ctx); err == nil {
		t.Fatalf("user 6 got %s", p)
	}
	if s := n1.hub.Stats(); s.PeerPackets == 0 || s.PeerBytes == 0 {
		t.Errorf("stats %+v count no packets to other nodes", s)
	}
}

// TestPresenceMessageNames: the application names the topic fields.
func TestPresenceMessageNames(t *testing.T) {
	m := PresenceMessage(Presence{Tabs: 2, Nodes: map[string]int{"n1": 2}, Topics: map[string]int{"7": 1}, Own: "7"}, "editing", "own_editing")
	want := `{"type":"presence","tabs":2,"browsers":0,"nodes":{"n1":2},"editing":{"7":1},"own_editing":"7"}`
	if m.Type != "presence" || string(m.Data) != want {
		t.Fatalf("got %s %s, want %s", m.Type, m.Data, want)
	}
	if m = PresenceMessage(Presence{Tabs: 1, Conns: 1}, "editing", "own_editing"); string(m.Data) != `{"type":"presence","tabs":1,"browsers":1,"nodes":null,"editing":null}` {
		t.Fatalf("without a topic: %s", m.Data)
	}
	m = PresenceMessage(Presence{Tabs: 3, Conns: 1, OwnTabs: map[string]string{"a": "7"}}, "editing", "own_editing")
	if want := `{"type":"presence","tabs":3,"browsers":1,"nodes":null,"editing":null,"own_editing_by_tab":{"a":"7"}}`; string(m.Data) != want {
		t.Fatalf("a shared connection's: %s, want %s", m.Data, want)
	}
}

// TestPresenceSharedConnection: a connection that carries the tabs of a
// browser counts as its tabs, on every node, and is one browser.
func TestPresenceSharedConnection(t *testing.T) {
	l := &lan{}
	n1, n2 := l.node(t, "n1"), l.node(t, "n2")
	shared := openTab(t, n1, 7)
	single := openTab(t, n2, 7)
	conn, _ := n1.hub.Conn(shared.conn)
	if err := conn.SetTabs(map[string]string{"a": "", "b": "42", "c": ""}); err != nil {
		t.Fatal(err)
	}
	single.waitPresence(t, "the shared connection's three tabs", 4, map[string]int{"n1": 3, "n2": 1}, map[string]int{"42": 1})
	shared.waitPresence(t, "the shared connection", 4, map[string]int{"n1": 3, "n2": 1}, map[string]int{"42": 1})
	p, _ := shared.presence()
	if p.Browsers != 2 || !maps.Equal(p.OwnByTab, map[string]string{"b": "42"}) || p.Own != "" {
		t.Errorf("the shared connection is told %+v, want 2 browsers and its tab b's own topic", p)
	}
	if p, _ := single.presence(); p.Browsers != 2 || p.OwnByTab != nil {
		t.Errorf("the single tab is told %+v", p)
	}
	if got := n1.hub.Stats(); got.Connections != 1 || got.Tabs != 3 {
		t.Errorf("n1 counts %d connections, %d tabs; want 1 and 3", got.Connections, got.Tabs)
	}
	if got := n2.hub.NodeConnections(); got["n1"] != 1 || got["n2"] != 1 {
		t.Errorf("n2 counts connections %v, want one on each node", got)
	}
	for _, bad := range []map[string]string{nil, {"": "1"}, {strings.Repeat("x", MaxTabIDLen+1): ""}} {
		if err := conn.SetTabs(bad); err == nil {
			t.Errorf("SetTabs(%v) took it", bad)
		}
	}

	t.Run("a tab that leaves stops counting", func(t *testing.T) {
		if err := conn.SetTabs(map[string]string{"a": ""}); err != nil {
			t.Fatal(err)
		}
		single.waitPresence(t, "one tab left", 2, map[string]int{"n1": 1, "n2": 1}, nil)
		if got := n1.hub.Stats().Tabs; got != 1 {
			t.Errorf("n1 counts %d tabs, want 1", got)
		}
	})

	t.Run("the connection's tabs leave the count with it", func(t *testing.T) {
		if err := conn.SetTabs(map[string]string{"a": "", "b": ""}); err != nil {
			t.Fatal(err)
		}
		shared.ws.Close(websocket.StatusNormalClosure, "")
		single.waitPresence(t, "the shared connection gone", 1, map[string]int{"n2": 1}, nil)
		n1.waitConns(t, 0)
		if got := n1.hub.Stats().Tabs; got != 0 {
			t.Errorf("n1 counts %d tabs with no connection", got)
		}
	})
}

// TestPresenceFromAnOlderNode: a node of an older release says nothing of
// connections; each of its tabs is one.
func TestPresenceFromAnOlderNode(t *testing.T) {
	l := &lan{}
	n1 := l.node(t, "n1")
	a := openTab(t, n1, 7)
	n1.hub.Receive(append([]byte{peerPresence}, `{"n":"old","e":1,"s":1,"u":[{"u":7,"t":2}]}`...))
	a.waitPresence(t, "the older node's two tabs", 3, map[string]int{"n1": 1, "old": 2}, nil)
	if p, _ := a.presence(); p.Browsers != 3 {
		t.Errorf("browsers %d, want 3", p.Browsers)
	}
}
