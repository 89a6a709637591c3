package realtime

// Presence: every connection of a user learns how many tabs the user has
// open, over how many connections, on which nodes, and how many tabs have
// each topic open. A connection is one tab, or carries several
// (Conn.SetTabs).
//
// Each node counts its own connections. What changes is marked per user,
// and a flusher sends it to the other nodes (Peers, a few users per
// packet) and pushes fresh summaries to the user's connections here, both
// at most once per PresenceInterval however many connections came and
// went: a reconnect storm costs a packet per few dozen users per
// interval, not a message per connection per connection.
//
// What a node hears from another is a set of (user → tabs, connections, topics)
// entries, each stamped with the sender's epoch (new at every start) and a
// sequence number. An entry only replaces an older one; a new epoch
// forgets everything the node said before (no ghosts after a restart); a
// node that leaves or is declared dead stops counting at once (PeerLeft);
// and a full state exchange (PresenceState, memberlist's push/pull) repairs
// what lost packets left wrong.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DefaultPresenceInterval is how long presence changes gather before they
// are sent to other nodes and pushed to connections.
const DefaultPresenceInterval = 50 * time.Millisecond

// Presence is what one connection is told of its user's connections.
type Presence struct {
	// Tabs counts the user's tabs on every node: one for each connection
	// of its own, and the tabs of each connection that carries several.
	Tabs int
	// Conns counts the connections that carry those tabs: a browser
	// whose tabs share one connection is one.
	Conns int
	// Nodes splits Tabs by node name, and NodeConns splits Conns.
	Nodes     map[string]int
	NodeConns map[string]int
	// Topics counts the user's tabs that have each topic open
	// (Conn.SetTopic, Conn.SetTabs), the receiving connection's included.
	Topics map[string]int
	// Own is the receiving connection's own topic, "" for none: a client
	// can tell "others have it open" without guessing whether its own
	// report has arrived yet.
	Own string
	// OwnTabs is Own for a connection that carries several tabs: each
	// of its tabs with a topic open, and that topic.
	OwnTabs map[string]string
}

// DefaultPresenceMessage encodes p as
// {"type":"presence","tabs":N,"browsers":C,"nodes":{...},"topics":{...},"own":"...","own_by_tab":{...}}.
func DefaultPresenceMessage(p Presence) Message {
	return PresenceMessage(p, "topics", "own")
}

// PresenceMessage encodes p as the presence message, with the fields of
// topics named (plain names) as the application calls them:
// {"type":"presence","tabs":N,"browsers":C,"nodes":{...},"<topics>":{...},"<own>":"...","<own>_by_tab":{...}},
// where browsers is p.Conns; own is left out when the connection has no
// topic, and <own>_by_tab when none of the tabs it carries has one.
func PresenceMessage(p Presence, topics, own string) Message {
	data := []byte(`{"type":"presence","tabs":`)
	data = strconv.AppendInt(data, int64(p.Tabs), 10)
	data = append(data, `,"browsers":`...)
	data = strconv.AppendInt(data, int64(p.Conns), 10)
	data = appendField(data, "nodes", p.Nodes)
	data = appendField(data, topics, p.Topics)
	if p.Own != "" {
		data = appendField(data, own, p.Own)
	}
	if len(p.OwnTabs) > 0 {
		data = appendField(data, own+"_by_tab", p.OwnTabs)
	}
	return Message{Type: "presence", Data: append(data, '}')}
}

// appendField appends ,"name":<v as JSON> to a JSON object being written;
// name is a plain field name, which JSON needs no escape for.
func appendField(data []byte, name string, v any) []byte {
	val, _ := json.Marshal(v)
	data = append(append(append(data, `,"`...), name...), `":`...)
	return append(data, val...)
}

// userState is one node's presence of one user.
type userState struct {
	Tabs int `json:"t"`
	// Conns is left out by a node of an older release, whose every
	// connection was one tab: read as Tabs (normalize).
	Conns  int            `json:"c,omitempty"`
	Topics map[string]int `json:"o,omitempty"`
	seq    uint64
}

// normalize fills in Conns where the sender left it out.
func (u *userState) normalize() {
	if u.Conns == 0 {
		u.Conns = u.Tabs
	}
}

// peerState is what this node knows of another node's presence.
type peerState struct {
	epoch uint64
	users map[int64]userState // tabs 0: a user who left, kept until a full state
}

// wirePresence is a presence message between nodes.
type wirePresence struct {
	Node  string `json:"n"`
	Epoch uint64 `json:"e"`
	Seq   uint64 `json:"s"`
	Full  bool   `json:"f,omitempty"`
	// Ask, on what a node sends one that joined or came back, asks for
	// the receiver's presence in return: the one that came back may have
	// been declared dead by the others while it saw nothing wrong.
	Ask   bool        `json:"a,omitempty"`
	Users []wireEntry `json:"u"`
}

type wireEntry struct {
	User int64 `json:"u"`
	userState
}

type presence struct {
	hub   *Hub
	epoch uint64

	mu      sync.Mutex
	seq     uint64
	peers   map[string]*peerState
	toPeers map[int64]bool  // users whose presence here changed, for other nodes
	toConns map[int64]bool  // users whose summary changed, for their connections here
	joined  map[string]bool // nodes to send everything to → ask for theirs
	running bool
}

func newPresence(h *Hub) *presence {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &presence{
		hub: h, epoch: binary.BigEndian.Uint64(b[:]),
		peers: map[string]*peerState{}, toPeers: map[int64]bool{}, toConns: map[int64]bool{}, joined: map[string]bool{},
	}
}

// localChanged marks a user whose connections here changed.
func (p *presence) localChanged(user int64) {
	p.mu.Lock()
	p.toPeers[user] = true
	p.toConns[user] = true
	p.kickLocked()
	p.mu.Unlock()
}

func (p *presence) peerJoined(node string) {
	p.mu.Lock()
	p.joined[node] = true
	p.kickLocked()
	p.mu.Unlock()
}

func (p *presence) peerLeft(node string) {
	p.mu.Lock()
	if ps := p.peers[node]; ps != nil {
		for user := range ps.users {
			p.toConns[user] = true
		}
		delete(p.peers, node)
		p.kickLocked()
	}
	p.mu.Unlock()
}

// kickLocked starts the flusher unless it runs. p.mu must be held.
func (p *presence) kickLocked() {
	if !p.running {
		p.running = true
		go p.run()
	}
}

// run flushes every interval until nothing is left to flush.
func (p *presence) run() {
	for {
		time.Sleep(p.hub.PresenceInterval)
		p.mu.Lock()
		toPeers, toConns, joined := p.toPeers, p.toConns, p.joined
		if len(toPeers)+len(toConns)+len(joined) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.toPeers, p.toConns, p.joined = map[int64]bool{}, map[int64]bool{}, map[string]bool{}
		p.mu.Unlock()
		p.send(toPeers, joined)
		p.push(toConns)
	}
}

// local returns the presence of users on this node, or of every user
// with a connection here when users is nil.
func (p *presence) local(users map[int64]bool) []wireEntry {
	h := p.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []wireEntry
	add := func(user int64, cs []*Conn) {
		e := wireEntry{User: user, userState: userState{Conns: len(cs)}}
		for _, c := range cs {
			e.Tabs += c.countTabs(&e.Topics)
		}
		out = append(out, e)
	}
	if users == nil {
		for user, cs := range h.users {
			add(user, cs)
		}
		return out
	}
	for user := range users {
		add(user, h.users[user])
	}
	return out
}

// nextSeq numbers one message of this node's presence.
func (p *presence) nextSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	return p.seq
}

// send tells the other nodes what changed here, and each node in joined
// everything, asking for its presence in return where joined says so.
func (p *presence) send(users map[int64]bool, joined map[string]bool) {
	peers := p.hub.Peers
	if peers == nil {
		return
	}
	if len(users) > 0 {
		for _, pkt := range p.packets(p.local(users), false) {
			peers.SendToAll(pkt)
			p.hub.countPeerSend(len(pkt))
		}
	}
	for node, ask := range joined {
		all := p.packets(p.local(nil), ask)
		if len(all) == 0 && ask {
			all = [][]byte{p.packet(nil, true)} // the question alone
		}
		for _, pkt := range all {
			if err := peers.SendTo(node, pkt); err == nil {
				p.hub.countPeerSend(len(pkt))
			}
		}
	}
}

// packet is one message of entries.
func (p *presence) packet(entries []wireEntry, ask bool) []byte {
	if entries == nil {
		entries = []wireEntry{}
	}
	b, _ := json.Marshal(wirePresence{Node: p.hub.Node, Epoch: p.epoch, Seq: p.nextSeq(), Ask: ask, Users: entries})
	return append([]byte{peerPresence}, b...)
}

// packets packs entries into messages of at most MaxPeerMessage bytes.
func (p *presence) packets(entries []wireEntry, ask bool) [][]byte {
	head, _ := json.Marshal(wirePresence{Node: p.hub.Node, Epoch: p.epoch, Seq: p.nextSeq(), Ask: ask})
	head = bytes.TrimSuffix(head, []byte("null}")) // ...,"u":null} → ...,"u":
	var out [][]byte
	var buf []byte
	for _, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			continue
		}
		if buf != nil && len(buf)+len(b)+2 > MaxPeerMessage {
			out = append(out, append(buf, ']', '}'))
			buf = nil
		}
		if buf == nil {
			buf = append(append([]byte{peerPresence}, head...), '[')
		} else {
			buf = append(buf, ',')
		}
		buf = append(buf, b...)
	}
	if buf != nil {
		out = append(out, append(buf, ']', '}'))
	}
	return out
}

// fullState is this node's presence of every user, in one message.
func (p *presence) fullState() []byte {
	b, _ := json.Marshal(wirePresence{Node: p.hub.Node, Epoch: p.epoch, Seq: p.nextSeq(), Full: true, Users: p.local(nil)})
	return b
}

// receive merges another node's presence: a delta, or its full state.
func (p *presence) receive(b []byte, full bool) {
	var w wirePresence
	if json.Unmarshal(b, &w) != nil || w.Node == "" || w.Node == p.hub.Node {
		return
	}
	full = full && w.Full
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.Ask {
		if _, ok := p.joined[w.Node]; !ok {
			p.joined[w.Node] = false // answer, without asking back
		}
		p.kickLocked()
	}
	ps := p.peers[w.Node]
	if ps == nil || ps.epoch != w.Epoch {
		// A node heard of for the first time, or one that restarted: what
		// it said before no longer holds.
		if ps != nil {
			for user := range ps.users {
				p.toConns[user] = true
			}
		}
		ps = &peerState{epoch: w.Epoch, users: map[int64]userState{}}
		p.peers[w.Node] = ps
	}
	seen := make(map[int64]bool, len(w.Users))
	for _, e := range w.Users {
		seen[e.User] = true
		old, ok := ps.users[e.User]
		if ok && old.seq > w.Seq {
			continue // newer news already
		}
		e.seq = w.Seq
		e.normalize()
		ps.users[e.User] = e.userState
		if old.Tabs != e.Tabs || old.Conns != e.Conns || !maps.Equal(old.Topics, e.Topics) {
			p.toConns[e.User] = true
		}
	}
	if full {
		for user, old := range ps.users {
			if !seen[user] && old.seq <= w.Seq {
				delete(ps.users, user)
				if old.Tabs > 0 {
					p.toConns[user] = true
				}
			}
		}
	}
	if len(p.toConns) > 0 {
		p.kickLocked()
	}
}

// push sends each user's connections here their fresh summary.
func (p *presence) push(users map[int64]bool) {
	h := p.hub
	if h.PresenceMessage == nil {
		return
	}
	for user := range users {
		h.mu.RLock()
		conns := slices.Clone(h.users[user])
		h.mu.RUnlock()
		if len(conns) == 0 {
			continue
		}
		sum := p.summary(user, conns)
		encoded := map[string]Message{} // by Own: most connections share one
		for _, c := range conns {
			if own := c.ownTabs(); own != nil {
				sum.Own, sum.OwnTabs = "", own
				c.enqueue(h.PresenceMessage(sum))
				sum.OwnTabs = nil
				continue
			}
			own := c.Topic()
			m, ok := encoded[own]
			if !ok {
				sum.Own = own
				m = h.PresenceMessage(sum)
				encoded[own] = m
			}
			c.enqueue(m)
		}
	}
}

// summary adds the other nodes' presence of user to that of conns, the
// user's connections here.
func (p *presence) summary(user int64, conns []*Conn) Presence {
	s := Presence{Conns: len(conns), Topics: map[string]int{}}
	for _, c := range conns {
		s.Tabs += c.countTabs(&s.Topics)
	}
	s.Nodes = map[string]int{p.hub.Node: s.Tabs}
	s.NodeConns = map[string]int{p.hub.Node: s.Conns}
	p.mu.Lock()
	defer p.mu.Unlock()
	for node, ps := range p.peers {
		u := ps.users[user]
		if u.Tabs <= 0 {
			continue
		}
		s.Tabs += u.Tabs
		s.Conns += u.Conns
		s.Nodes[node] += u.Tabs
		s.NodeConns[node] += u.Conns
		for t, n := range u.Topics {
			s.Topics[t] += n
		}
	}
	return s
}

// PresenceOf returns the presence of userID across the cluster, as this
// node knows it (Own is empty).
func (h *Hub) PresenceOf(userID int64) Presence {
	h.mu.RLock()
	conns := slices.Clone(h.users[userID])
	h.mu.RUnlock()
	return h.presence.summary(userID, conns)
}

// NodeConnections counts the open connections of every node of the
// cluster, this one included, from the same presence data that tabs are
// told.
func (h *Hub) NodeConnections() map[string]int {
	out := map[string]int{h.Node: int(h.conns.Load())}
	p := h.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	for node, ps := range p.peers {
		n := 0
		for _, u := range ps.users {
			n += u.Conns
		}
		out[node] = n
	}
	return out
}
