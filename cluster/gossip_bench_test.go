package cluster

import (
	"encoding/binary"
	"io"
	"log"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// benchDelegate timestamps arriving messages and can feed memberlist's
// broadcast queue.
type benchDelegate struct {
	arrived chan time.Duration
	queue   *memberlist.TransmitLimitedQueue
}

func (d *benchDelegate) NodeMeta(int) []byte { return nil }
func (d *benchDelegate) NotifyMsg(b []byte) {
	if len(b) >= 8 {
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(b)))
		d.arrived <- time.Since(sent)
	}
}
func (d *benchDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	if d.queue == nil {
		return nil
	}
	return d.queue.GetBroadcasts(overhead, limit)
}
func (d *benchDelegate) LocalState(bool) []byte                      { return nil }
func (d *benchDelegate) MergeRemoteState([]byte, bool)               {}
func (b *stamp) Invalidates(memberlist.Broadcast) bool               { return false }
func (b *stamp) Message() []byte                                     { return b.msg }
func (b *stamp) Finished()                                           {}
func (b *stamp) Name() string                                        { return "" }
func (b *stamp) UniqueBroadcast()                                    {}
func (d *benchDelegate) reset()                                      { d.arrived = make(chan time.Duration, 1024) }
func (d *benchDelegate) wait() time.Duration                         { return <-d.arrived }
func (d *benchDelegate) setQueue(q *memberlist.TransmitLimitedQueue) { d.queue = q }

type stamp struct{ msg []byte }

// gossipPair starts two memberlist nodes on loopback with LAN timings.
func gossipPair(b *testing.B) (*memberlist.Memberlist, *memberlist.Memberlist, *benchDelegate, *benchDelegate) {
	b.Helper()
	start := func(name string) (*memberlist.Memberlist, *benchDelegate) {
		d := &benchDelegate{}
		d.reset()
		conf := memberlist.DefaultLANConfig()
		conf.Name = name
		conf.BindAddr = "127.0.0.1"
		conf.BindPort = 0
		conf.Delegate = d
		conf.Logger = log.New(io.Discard, "", 0)
		ml, err := memberlist.Create(conf)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ml.Shutdown() })
		return ml, d
	}
	a, da := start("a")
	c, dc := start("b")
	if _, err := c.Join([]string{a.LocalNode().Address()}); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); a.NumMembers() < 2; {
		if time.Now().After(deadline) {
			b.Fatal("nodes did not see each other")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a, c, da, dc
}

func now8() []byte {
	msg := make([]byte, 48) // about the size of a change signal
	binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
	return msg
}

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkGossipDelivery compares the ways memberlist can carry a change
// signal from one node to another: one UDP packet (SendBestEffort), a TCP
// connection per message (SendReliable), and the gossip broadcast queue,
// which waits for the next gossip tick (200 ms on LAN defaults).
func BenchmarkGossipDelivery(b *testing.B) {
	b.Run("SendBestEffort", func(b *testing.B) {
		a, c, _, dc := gossipPair(b)
		target := nodeNamed(a, c.LocalNode().Name)
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			if err := a.SendBestEffort(target, now8()); err != nil {
				b.Fatal(err)
			}
			select {
			case d := <-dc.arrived:
				lat = append(lat, d)
			case <-time.After(time.Second):
				b.Fatal("lost a packet on loopback")
			}
		}
		reportLatency(b, lat)
	})
	b.Run("SendReliable", func(b *testing.B) {
		a, c, _, dc := gossipPair(b)
		target := nodeNamed(a, c.LocalNode().Name)
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			if err := a.SendReliable(target, now8()); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, dc.wait())
		}
		reportLatency(b, lat)
	})
	b.Run("BroadcastQueue", func(b *testing.B) {
		a, _, da, dc := gossipPair(b)
		q := &memberlist.TransmitLimitedQueue{NumNodes: a.NumMembers, RetransmitMult: 1}
		da.setQueue(q)
		lat := make([]time.Duration, 0, b.N)
		var mu sync.Mutex
		for i := 0; i < b.N; i++ {
			mu.Lock()
			q.QueueBroadcast(&stamp{msg: now8()})
			mu.Unlock()
			lat = append(lat, dc.wait())
			// Drain duplicates from retransmits.
			for len(dc.arrived) > 0 {
				<-dc.arrived
			}
		}
		reportLatency(b, lat)
	})
}

func nodeNamed(ml *memberlist.Memberlist, name string) *memberlist.Node {
	for _, n := range ml.Members() {
		if n.Name == name {
			return n
		}
	}
	return nil
}
