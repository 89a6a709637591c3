package main

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// The presence scenario (-kill I, notesync's cluster): node I dies with
// SIGKILL (LiteFS and the app, as a machine would) and stays down for
// -kill-hold, and the tool times how long the tabs of its users on the
// other nodes take to be told a count without its tabs (docs/PROTOCOL.md
// §7: within memberlist's failure detection, or at once if the node comes
// back first with a new epoch), and how long until they are told the count
// with them again, once the node has been started again and its tabs have
// reconnected.

// presenceKill is the scenario's outcome.
type presenceKill struct {
	Node  string  `json:"node"`
	Hold  float64 `json:"down_seconds"`    // before it was started again
	Conns int     `json:"conns_elsewhere"` // tabs elsewhere of users with tabs on it
	Told  int     `json:"told_without"`
	// Seconds after SIGKILL until a tab was told the count without the
	// node's tabs: every tab's, their median and the last.
	ToldP50 float64 `json:"told_without_p50_seconds"`
	ToldMax float64 `json:"told_without_max_seconds"`
	Back    int     `json:"told_with_again"`
	BackP50 float64 `json:"told_with_again_p50_seconds"`
	BackMax float64 `json:"told_with_again_max_seconds"`
	killNs  int64
	node    int
}

// killNode is the kill phase: killPhase on node cfg.Kill. It sets
// res.Kill (timed later from the events, by analysePresence).
func (r *loadRun) killNode(ctx context.Context) error {
	r.phase.Store("kill")
	pk, err := killPhase(ctx, r.kill, r.cfg.Kill-1, r.cfg.KillHold, r.wps, r.res.Opened, r.logf)
	r.res.Kill = pk
	return err
}

// killPhase kills node i (0-based), keeps it down for hold, and waits for
// its tabs to come back once it is started again, giving the others time
// to be told.
func killPhase(ctx context.Context, kill func(int, time.Duration) error, i int, hold time.Duration, wps []*workerProc, opened int64, logf func(string, ...any)) (*presenceKill, error) {
	pk := &presenceKill{Node: fmt.Sprintf("node%d", i+1), node: i, Hold: hold.Seconds()}
	logf("killing %s (SIGKILL), down for %v", pk.Node, hold)
	pk.killNs = nowNs()
	if err := kill(i, hold); err != nil {
		return pk, err
	}
	sleepCtx(ctx, 2*time.Second) // the workers' counts see the closed sockets
	waitUntil(ctx, 90*time.Second, func() bool { return openTabs(wps) >= opened })
	sleepCtx(ctx, 3*time.Second) // the last counts
	return pk, ctx.Err()
}

// analysePresence times, for every tab elsewhere of a user who had tabs on
// the killed node, the first presence without them after the kill, and
// the first after that with them all again.
func analysePresence(pk *presenceKill, evs []event, connUser, connNode []int) {
	onKilled := map[int]int{} // user → tabs on the killed node
	for c, n := range connNode {
		if n == pk.node {
			onKilled[connUser[c]]++
		}
	}
	byConn := map[int][]event{}
	for _, e := range evs {
		if e.Kind == "presence" && e.At >= pk.killNs && connNode[e.Conn] != pk.node && onKilled[connUser[e.Conn]] > 0 {
			byConn[e.Conn] = append(byConn[e.Conn], e)
		}
	}
	var told, back []float64
	for c, n := range connNode {
		if n == pk.node || onKilled[connUser[c]] == 0 {
			continue
		}
		pk.Conns++
		list := byConn[c]
		sort.Slice(list, func(i, j int) bool { return list[i].At < list[j].At })
		var without int64
		for _, e := range list {
			k := e.Nodes[pk.Node]
			if without == 0 && k == 0 {
				without = e.At
				told = append(told, float64(e.At-pk.killNs)/1e9)
				continue
			}
			if without != 0 && k == onKilled[connUser[c]] {
				back = append(back, float64(e.At-pk.killNs)/1e9)
				break
			}
		}
	}
	pk.Told, pk.Back = len(told), len(back)
	t, b := percentiles(told), percentiles(back)
	pk.ToldP50, pk.ToldMax, pk.BackP50, pk.BackMax = t.P50, t.Max, b.P50, b.Max
}

func nowNs() int64 { return time.Now().UnixNano() }
