package cluster

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Replication is what a node knows of its copy of the database
// (docs/PROTOCOL.md §10): how far it is, and whether it hears from the
// primary. A replica cut off from the primary keeps serving what it has;
// this is how it says so.
type Replication struct {
	// State is "primary", "current" (hearing from the primary) or "stale"
	// (not heard from it for StaleAfter or more).
	State string `json:"state"`
	// Primary is the node this one takes for the primary ("" if none).
	Primary string `json:"primary,omitempty"`
	// TXID is this node's replication position; PrimaryTXID the primary's,
	// as gossip last said (0: unknown).
	TXID        uint64 `json:"txid"`
	PrimaryTXID uint64 `json:"primary_txid,omitempty"`
	// LagMS is the time since the last word from the primary's LiteFS, in
	// milliseconds (-1: never heard from it since this node started).
	LagMS int64 `json:"lag_ms"`
	// Reason says in plain words why a replica is stale.
	Reason string `json:"reason,omitempty"`
}

// StaleAfter is how long a replica goes without a word from the primary's
// LiteFS before it says it is stale. The primary sends a heartbeat every
// second on an idle stream.
const StaleAfter = 3 * time.Second

// PrimaryView is what gossip says of the primary, for Replication.
type PrimaryView struct {
	Name  string // "" when no primary is known
	State string // its memberlist state: alive, suspect, dead, left
	TXID  uint64 // its position when it last gossiped its metadata
}

// Replication describes this node's replication, given what gossip says of
// the primary. Without LiteFS it returns the zero value.
func (l *LiteFS) Replication(p PrimaryView) Replication {
	if !l.Enabled() {
		return Replication{}
	}
	txid, _ := l.TXID()
	if l.IsPrimary() {
		return Replication{State: "primary", TXID: txid}
	}
	r := Replication{State: "current", Primary: p.Name, TXID: txid, PrimaryTXID: p.TXID}
	lag, err := l.Lag()
	switch {
	case err != nil:
		r.State, r.LagMS = "stale", -1
		r.Reason = "cannot read LiteFS's lag: " + err.Error()
		return r
	case lag < 0:
		r.State, r.LagMS = "stale", -1
		r.Reason = "no word from the primary's LiteFS since this node started"
	case lag >= StaleAfter:
		r.State, r.LagMS = "stale", lag.Milliseconds()
		r.Reason = fmt.Sprintf("no word from the primary's LiteFS for %.1f s", lag.Seconds())
	default:
		r.LagMS = lag.Milliseconds()
		return r
	}
	switch {
	case p.Name == "":
		r.Reason += "; gossip knows no primary either"
	case p.State == "alive":
		r.Reason += fmt.Sprintf(", though gossip still reaches %s (a link that fails one way, or only LiteFS's traffic is cut)", p.Name)
	default:
		r.Reason += fmt.Sprintf("; gossip cannot reach %s either (%s)", p.Name, p.State)
	}
	r.Reason += fmt.Sprintf(". This node serves the data it has (txid %d", txid)
	if p.TXID > txid {
		r.Reason += fmt.Sprintf(", %d behind the primary", p.TXID-txid)
	}
	r.Reason += "); writes answer 503 or 504 until it hears from the primary again"
	return r
}

// Lag returns the time since this replica last heard from the primary's
// LiteFS (heartbeat or transaction), from the mount's .lag file: 0 on the
// primary, negative before the first word.
func (l *LiteFS) Lag() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(l.Dir, ".lag"))
	if err != nil {
		return 0, err
	}
	ms, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed litefs lag %q", b)
	}
	if ms >= math.MaxInt32 { // LiteFS's "not yet replicated"
		return -1, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}
