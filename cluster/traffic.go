package cluster

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Traffic is what this node has sent to the other nodes over memberlist
// since it started: its own gossip (probes, acks, suspicions, state
// exchanges) and the messages it carries (SendToAll, SendTo,
// PublishChanged, PublishEndSession), encryption included. Every byte one
// node sends another receives, so the cluster's traffic is the sum of its
// nodes' Traffic.
type Traffic struct {
	Packets     uint64 // UDP packets
	PacketBytes uint64
	Streams     uint64 // TCP connections opened or accepted (state exchanges, joins)
	StreamBytes uint64 // bytes written on them
}

// Traffic returns what this node has sent so far.
func (m *Membership) Traffic() Traffic {
	if m.transport == nil {
		return Traffic{}
	}
	t := m.transport
	return Traffic{
		Packets: t.packets.Load(), PacketBytes: t.packetBytes.Load(),
		Streams: t.streams.Load(), StreamBytes: t.streamBytes.Load(),
	}
}

// countingTransport is memberlist's network transport with counters on
// what leaves through it.
type countingTransport struct {
	memberlist.NodeAwareTransport
	packets, packetBytes, streams, streamBytes atomic.Uint64

	accepted chan net.Conn
	done     chan struct{}
	stopOnce sync.Once
}

// newCountingTransport opens memberlist's UDP and TCP listeners on
// host:port (port 0: a free one, the same for both).
func newCountingTransport(host string, port int, conf *memberlist.Config) (*countingTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port, Logger: conf.Logger,
	})
	if err != nil {
		return nil, err
	}
	t := &countingTransport{NodeAwareTransport: nt, accepted: make(chan net.Conn), done: make(chan struct{})}
	go t.relayStreams()
	return t, nil
}

// relayStreams hands the connections other nodes open to memberlist,
// counted.
func (t *countingTransport) relayStreams() {
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case c := <-in:
			t.streams.Add(1)
			select {
			case t.accepted <- &countingConn{Conn: c, n: &t.streamBytes}:
			case <-t.done:
				c.Close()
				return
			}
		}
	}
}

func (t *countingTransport) packet(b []byte) {
	t.packets.Add(1)
	t.packetBytes.Add(uint64(len(b)))
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.packet(b)
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.packet(b)
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.counted(t.NodeAwareTransport.DialTimeout(addr, timeout))
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.counted(t.NodeAwareTransport.DialAddressTimeout(a, timeout))
}

func (t *countingTransport) counted(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	t.streams.Add(1)
	return &countingConn{Conn: c, n: &t.streamBytes}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.accepted }

func (t *countingTransport) Shutdown() error {
	t.stopOnce.Do(func() { close(t.done) })
	return t.NodeAwareTransport.Shutdown()
}

// countingConn counts the bytes written on a connection.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(uint64(n))
	return n, err
}
