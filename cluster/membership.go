package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells the others about itself (memberlist node
// metadata, at most 512 bytes).
type Meta struct {
	Region      string `json:"r"`
	HTTP        string `json:"h"`           // base URL of the node's HTTP server
	Public      string `json:"u,omitempty"` // base URL browsers reach it at, when not HTTP
	LiteFS      string `json:"l,omitempty"` // LiteFS hostname (what .primary names)
	LiteFSAPI   string `json:"a,omitempty"` // LiteFS's HTTP API as the other nodes reach it
	Machine     string `json:"m,omitempty"` // Fly machine id
	Connections int64  `json:"c"`
	Primary     bool   `json:"p"`
	TXID        uint64 `json:"t,omitempty"` // replication position, when last gossiped
	Candidate   bool   `json:"k,omitempty"` // a LiteFS lease candidate
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	Name  string
	Addr  string // gossip address
	State string // alive, suspect, dead, left
	Meta
}

// Message kinds carried between nodes.
const (
	kindChanged    byte = 1 // the primary committed a transaction (Changes)
	kindEndSession byte = 2 // a session ended: close its sockets
	kindEphemeral  byte = 3 // an opaque message for the other nodes (SendToAll, SendTo)
	kindHeld       byte = 4 // a node's position (Acks)
)

// Changed announces a transaction a node committed (Changes): the
// database's position after it, when it committed and, when it fits, what
// it changed. It is one UDP packet per transaction and node.
type Changed struct {
	From string          `json:"f"` // the announcing node
	TXID uint64          `json:"t"`
	At   int64           `json:"n"`           // commit time at the origin, unix ns
	Data json.RawMessage `json:"d,omitempty"` // the committer's own description, JSON
}

type endSession struct {
	ID string `json:"s"`
}

// Membership is this node's place in the cluster. Set the fields, then Open;
// Close leaves the cluster cleanly.
type Membership struct {
	Name string
	// Bind is the gossip listen address (host:port); Advertise, if set, is
	// the address others should use.
	Bind, Advertise string
	// Peers are addresses or DNS names to join; a DNS name that resolves to
	// every peer (Fly's <app>.internal) is resolved again every Rejoin.
	Peers  []string
	Rejoin time.Duration
	// Key, when set (16, 24 or 32 bytes), encrypts and authenticates gossip:
	// a node without it can neither join nor inject messages.
	Key []byte
	// WAN selects timings suited to links between regions.
	WAN bool
	// Fast selects timings for nodes on one machine (tests).
	Fast   bool
	Logger *slog.Logger

	// Changes, if set, is what this node and the others commit: the
	// membership sends this node's announcements (Changes.Run, from Open
	// to Close) and hands over those of the others (Changes.Announced).
	Changes *Changes
	// Acks, if set, is where each node's copy of the database is: the
	// membership sends this node's reports (Acks.Run, from Open to Close)
	// and hands over those of the others (Acks.Heard).
	Acks *Acks

	// Callbacks for messages from other nodes. They run on memberlist's
	// receive goroutine: they must not block.
	OnEndSession func(sessionID string)
	// OnEphemeral gets what another node sent with SendToAll or SendTo.
	// msg is only valid during the call.
	OnEphemeral func(msg []byte)

	// OnJoin and OnLeave are told when another node joins (or comes back)
	// and when it leaves or is declared dead. They must not block.
	OnJoin, OnLeave func(node string)

	// State and MergeState, when set, exchange a full state with another
	// node at every push/pull (when a node joins, and every PushPull
	// interval): State returns this node's, MergeState takes another's.
	// Both must be quick; buf is only valid during the call.
	State      func() []byte
	MergeState func(buf []byte)

	// MetaFunc returns this node's current metadata (called when gossip
	// asks for it, so it must be quick).
	MetaFunc func() Meta

	ml        *memberlist.Memberlist
	transport *countingTransport
	joined    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	stopSend  context.CancelFunc
	wg        sync.WaitGroup
}

// Open starts gossip, begins joining the peers in the background and
// sends the announcements of Changes.
func (m *Membership) Open() error {
	var conf *memberlist.Config
	switch {
	case m.Fast:
		conf = memberlist.DefaultLocalConfig()
	case m.WAN:
		conf = memberlist.DefaultWANConfig()
	default:
		conf = memberlist.DefaultLANConfig()
	}
	conf.Name = m.Name
	// Messages are a few dozen bytes: compressing each costs more CPU than
	// it saves (it showed in profiles at 2,000 writes/s).
	conf.EnableCompression = false
	host, port, err := splitHostPort(m.Bind)
	if err != nil {
		return fmt.Errorf("gossip bind address %q: %w", m.Bind, err)
	}
	conf.BindAddr, conf.BindPort = host, port
	if m.Advertise != "" {
		ah, ap, err := splitHostPort(m.Advertise)
		if err != nil {
			return fmt.Errorf("gossip advertise address %q: %w", m.Advertise, err)
		}
		conf.AdvertiseAddr, conf.AdvertisePort = ah, ap
	}
	if len(m.Key) > 0 {
		conf.SecretKey = m.Key
	}
	conf.Delegate = &delegate{m: m}
	conf.Events = &events{m: m}
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	conf.Logger = slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug)
	conf.LogOutput = nil
	t, err := newCountingTransport(conf.BindAddr, conf.BindPort, conf)
	if err != nil {
		return fmt.Errorf("start gossip on %s: %w", m.Bind, err)
	}
	conf.Transport = t
	ml, err := memberlist.Create(conf)
	if err != nil {
		_ = t.Shutdown()
		return fmt.Errorf("start gossip: %w", err)
	}
	m.ml, m.transport = ml, t
	m.stop = make(chan struct{})
	if len(m.others()) == 0 {
		m.joined.Store(true)
	}
	m.wg.Add(1)
	go m.joinLoop()
	sending, stop := context.WithCancel(context.Background())
	m.stopSend = stop
	if m.Changes != nil {
		m.wg.Go(func() { m.Changes.Run(sending, m.PublishChanged) })
	}
	if m.Acks != nil {
		m.wg.Go(func() { m.Acks.Run(sending, m.PublishHeld) })
	}
	return nil
}

// others is the peer list without this node's own address.
func (m *Membership) others() []string {
	self := m.Advertise
	if self == "" {
		self = m.Bind
	}
	var out []string
	for _, p := range m.Peers {
		if p != "" && p != self {
			out = append(out, p)
		}
	}
	return out
}

// joinLoop joins the peers: quickly until it has joined, then every Rejoin
// (so machines that appear later under a DNS name are found).
func (m *Membership) joinLoop() {
	defer m.wg.Done()
	peers := m.others()
	if len(peers) == 0 {
		return
	}
	rejoin := m.Rejoin
	if rejoin == 0 {
		rejoin = 30 * time.Second
	}
	delay := 100 * time.Millisecond
	for {
		if n, err := m.ml.Join(peers); err == nil && n > 0 {
			if !m.joined.Swap(true) {
				m.Logger.Info("joined cluster", "contacted", n, "members", m.ml.NumMembers())
			}
		} else if !m.joined.Load() {
			m.Logger.Debug("join failed; retrying", "err", err)
		}
		wait := rejoin
		if !m.joined.Load() {
			wait = delay
			delay = min(2*delay, 2*time.Second)
		}
		select {
		case <-m.stop:
			return
		case <-time.After(wait):
		}
	}
}

// Joined reports whether this node has joined its peers (always true when
// it has none).
func (m *Membership) Joined() bool { return m.joined.Load() }

// Close leaves the cluster, telling the others, and stops gossip. Calling
// it again does nothing.
func (m *Membership) Close() error {
	if m.ml == nil {
		return nil
	}
	var err error
	m.closeOnce.Do(func() {
		close(m.stop)
		m.stopSend()
		m.wg.Wait()
		leaveErr := m.ml.Leave(2 * time.Second)
		err = errors.Join(leaveErr, m.ml.Shutdown())
	})
	return err
}

// Members lists every known node, this one included.
func (m *Membership) Members() []Member {
	var out []Member
	for _, n := range m.ml.Members() {
		mem := Member{Name: n.Name, Addr: n.Address(), State: stateName(n.State)}
		if n.Name == m.Name && m.MetaFunc != nil {
			mem.Meta = m.MetaFunc()
		} else {
			_ = json.Unmarshal(n.Meta, &mem.Meta)
		}
		out = append(out, mem)
	}
	return out
}

// RefreshMeta gossips this node's metadata again (connection counts, role).
func (m *Membership) RefreshMeta() error { return m.ml.UpdateNode(time.Second) }

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// PublishChanged announces a committed transaction to every other node.
func (m *Membership) PublishChanged(c Changed) { m.send(kindChanged, c) }

// PublishHeld tells every other node this node's position (Acks).
func (m *Membership) PublishHeld(h Held) { m.send(kindHeld, h) }

// PublishEndSession tells every other node to close a session's sockets.
func (m *Membership) PublishEndSession(id string) { m.send(kindEndSession, endSession{ID: id}) }

// SendToAll sends msg to every other alive node as one UDP packet each
// (best effort): what OnEphemeral gets there. msg must fit in a packet
// (realtime.MaxPeerMessage).
func (m *Membership) SendToAll(msg []byte) {
	m.sendAll(append([]byte{kindEphemeral}, msg...))
}

// SendTo sends msg to the node named node, like SendToAll.
func (m *Membership) SendTo(node string, msg []byte) error {
	for _, n := range m.ml.Members() {
		if n.Name == node {
			return m.ml.SendBestEffort(n, append([]byte{kindEphemeral}, msg...))
		}
	}
	return fmt.Errorf("send to %s: not a member", node)
}

// send delivers one message to every other alive node as a single UDP
// packet (SendBestEffort): the lowest latency memberlist offers, with no
// per-message connection. Messages are signals; what they announce is
// recovered from the replicated database when a packet is lost.
func (m *Membership) send(kind byte, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		return
	}
	m.sendAll(append([]byte{kind}, body...))
}

// sendAll sends one framed message to every other alive node.
func (m *Membership) sendAll(msg []byte) {
	for _, n := range m.ml.Members() {
		if n.Name == m.Name || n.State != memberlist.StateAlive {
			continue
		}
		if err := m.ml.SendBestEffort(n, msg); err != nil {
			m.Logger.Debug("gossip send", "to", n.Name, "err", err)
		}
	}
}

// delegate receives memberlist's callbacks.
type delegate struct{ m *Membership }

func (d *delegate) NodeMeta(limit int) []byte {
	if d.m.MetaFunc == nil {
		return nil
	}
	b, _ := json.Marshal(d.m.MetaFunc())
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg decodes a message at once; the buffer is not kept.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) < 2 {
		return
	}
	m := d.m
	switch b[0] {
	case kindChanged:
		var c Changed
		if json.Unmarshal(b[1:], &c) == nil && m.Changes != nil {
			m.Changes.Announced(c)
		}
	case kindHeld:
		var h Held
		if json.Unmarshal(b[1:], &h) == nil && m.Acks != nil {
			m.Acks.Heard(h)
		}
	case kindEndSession:
		var e endSession
		if json.Unmarshal(b[1:], &e) == nil && e.ID != "" && m.OnEndSession != nil {
			m.OnEndSession(e.ID)
		}
	case kindEphemeral:
		if m.OnEphemeral != nil {
			m.OnEphemeral(b[1:])
		}
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

func (d *delegate) LocalState(join bool) []byte {
	if d.m.State == nil {
		return nil
	}
	return d.m.State()
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if d.m.MergeState != nil && len(buf) > 0 {
		d.m.MergeState(buf)
	}
}

// events logs membership changes.
type events struct{ m *Membership }

func (e *events) NotifyJoin(n *memberlist.Node) {
	if n.Name == e.m.Name {
		return
	}
	e.m.Logger.Info("member joined", "member", n.Name, "addr", n.Address())
	if e.m.OnJoin != nil {
		e.m.OnJoin(n.Name)
	}
}
func (e *events) NotifyLeave(n *memberlist.Node) {
	e.m.Logger.Info("member left", "member", n.Name)
	if e.m.OnLeave != nil {
		e.m.OnLeave(n.Name)
	}
}
func (e *events) NotifyUpdate(n *memberlist.Node) {}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

var _ io.Closer = (*Membership)(nil)

// Primary returns the alive member that holds the LiteFS lease, as far as
// this node knows: the one LiteFS names (liteFSHost, what this replica's
// LiteFS says; "" when it says nothing), or else one whose metadata says it
// is the primary.
func (m *Membership) Primary(liteFSHost string) (Member, bool) {
	var fallback *Member
	for _, mem := range m.Members() {
		if mem.State != "alive" {
			continue
		}
		if liteFSHost != "" && mem.LiteFS == liteFSHost {
			return mem, true
		}
		if mem.Primary && fallback == nil {
			fallback = &mem
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return Member{}, false
}

// Candidates names the other alive members that are lease candidates.
func (m *Membership) Candidates() []string {
	var out []string
	for _, mem := range m.Members() {
		if mem.Name != m.Name && mem.State == "alive" && mem.Candidate {
			out = append(out, mem.Name)
		}
	}
	return out
}

// PrimaryView is the primary as gossip sees it, in any state, for a
// replica's report on its replication (LiteFS.Replication): the member
// LiteFS names (liteFSHost), or, when it names none, the one whose metadata
// says it is the primary. The zero view when there is none but this node.
func (m *Membership) PrimaryView(liteFSHost string) PrimaryView {
	for _, mem := range m.Members() {
		if mem.Name != m.Name && (liteFSHost != "" && mem.LiteFS == liteFSHost || liteFSHost == "" && mem.Primary) {
			return PrimaryView{Name: mem.Name, State: mem.State, TXID: mem.TXID}
		}
	}
	return PrimaryView{}
}
