package realtime

import (
	"encoding/json"
	"errors"
)

// Peers carries a Hub's ephemeral messages to the hubs of the other nodes
// of a cluster, and their messages back through Hub.Receive. notesync's
// cluster.Membership implements it over memberlist: one UDP packet per
// message and node, best effort, so a message may be lost; nothing that
// must arrive travels this way (versioned streams come from a replicated
// log instead).
type Peers interface {
	// SendToAll sends msg to every other live node. It must not block on
	// the network for long. msg is not modified after the call, and the
	// Peers may keep it.
	SendToAll(msg []byte)
	// SendTo sends msg to the node named node, like SendToAll.
	SendTo(node string, msg []byte) error
}

// MaxPeerMessage bounds one message to the other nodes: a UDP packet of
// memberlist's 1,400 bytes, less its encryption and framing.
const MaxPeerMessage = 1200

// Kinds of message between hubs: the first byte of each.
const (
	peerBroadcast byte = 'b' // a Publish on another node
	peerPresence  byte = 'p' // presence of some users on the sending node
)

// peerMessage is a broadcast from another node.
type peerMessage struct {
	User int64           `json:"u"`
	Type string          `json:"t"`
	Data json.RawMessage `json:"d"`
}

// ErrTooBig is Publish's answer to a message that cannot travel to other
// nodes in one packet.
var ErrTooBig = errors.New("realtime: message too big for other nodes")

// Publish delivers m to every open connection of userID on this node, as
// Broadcast does, and on every other node through Peers: the one path of
// an ephemeral message in a cluster, whichever node it starts on. m must
// be ephemeral (Version 0) and small enough for one packet with its
// framing (MaxPeerMessage); a larger one is delivered here only and
// ErrTooBig returned. It returns how many local connections took m.
func (h *Hub) Publish(userID int64, m Message) (int, error) {
	n := h.Broadcast(userID, Message{Type: m.Type, Data: m.Data, Created: m.Created})
	if h.Peers == nil {
		return n, nil
	}
	b, err := json.Marshal(peerMessage{User: userID, Type: m.Type, Data: m.Data})
	if err != nil {
		return n, err
	}
	if len(b)+1 > MaxPeerMessage {
		return n, ErrTooBig
	}
	msg := append([]byte{peerBroadcast}, b...)
	h.Peers.SendToAll(msg)
	h.countPeerSend(len(msg))
	return n, nil
}

// Receive handles a message from another node's hub (what its Peers
// carried). It may be called from any goroutine and does not block on a
// client; msg is not kept. Malformed messages are dropped.
func (h *Hub) Receive(msg []byte) {
	if len(msg) < 2 {
		return
	}
	switch msg[0] {
	case peerBroadcast:
		var pm peerMessage
		if json.Unmarshal(msg[1:], &pm) != nil || pm.User == 0 {
			return
		}
		data := make([]byte, len(pm.Data))
		copy(data, pm.Data)
		h.Broadcast(pm.User, Message{Type: pm.Type, Data: data})
	case peerPresence:
		h.presence.receive(msg[1:], false)
	}
}

// PresenceState is this node's presence of every user, for a full state
// exchange with another node (memberlist's push/pull, which runs when a
// node joins and every half minute or so): it repairs whatever lost
// packets left wrong.
func (h *Hub) PresenceState() []byte { return h.presence.fullState() }

// MergePresenceState takes another node's PresenceState.
func (h *Hub) MergePresenceState(state []byte) { h.presence.receive(state, true) }

// PeerJoined tells the hub that node joined (or came back): it is sent
// this node's presence at once.
func (h *Hub) PeerJoined(node string) { h.presence.peerJoined(node) }

// PeerLeft tells the hub that node left or was declared dead: its
// connections stop counting.
func (h *Hub) PeerLeft(node string) { h.presence.peerLeft(node) }
