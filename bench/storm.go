package main

import (
	"context"
	"sort"
	"strconv"
	"time"
)

// storm is the reconnect storm after one node's restart.
type storm struct {
	Node          string  `json:"node"`
	DownSecs      float64 `json:"down_seconds"` // SIGTERM to /readyz 200
	Conns         int     `json:"conns_on_node"`
	Closed        int     `json:"conns_closed"`
	Reconnected   int     `json:"conns_reconnected"`
	NotCaughtUp   int     `json:"conns_not_caught_up"`
	ReconnectSecs float64 `json:"last_reconnect_after_ready_seconds"`
	CatchUpSecs   float64 `json:"all_caught_up_after_ready_seconds"`
	// The same from SIGTERM, and the first reconnect: under a storm the
	// tool's own /readyz poll waits in the node's accept queue with the
	// clients, so "ready" as the tool sees it can come after the node is
	// already taking them back.
	FirstReconnectSecs float64        `json:"first_reconnect_after_sigterm_seconds"`
	CatchUpSinceDown   float64        `json:"all_caught_up_after_sigterm_seconds"`
	Writes             int            `json:"writes"`
	ErrorsBefore       map[string]int `json:"errors_before_ready"`
	FailedAfterReady   int            `json:"failed_after_ready"`
	downNs, readyNs    int64
	node               int
}

// reconnectStorm is the storm phase: writes go on at cfg.Rate (numbered
// from base) while node cfg.Storm is restarted a second after they start.
// It waits for the node's ready path (at most 120 s), then for every tab
// to be open again (at most 60 s) and 3 s more, in which writes must all
// succeed; then it stops the writes and waits 2 s for the last pushes.
// It sets res.Storm (timed later from the events, by analyseStorm) and
// returns the writes' records, also with an error of the restart.
func (r *loadRun) reconnectStorm(ctx context.Context, wr *writer, base int) ([]writeRec, error) {
	r.phase.Store("storm")
	st := &storm{Node: r.urls[r.cfg.Storm-1], node: r.cfg.Storm - 1, ErrorsBefore: map[string]int{}}
	stopW := make(chan struct{})
	wdone := make(chan struct{})
	var srecs []writeRec
	go func() {
		defer close(wdone)
		srecs, _ = wr.loop(ctx, base, int(r.cfg.Rate*600), stopW)
	}()
	sleepCtx(ctx, time.Second)
	r.logf("restarting %s", st.Node)
	st.downNs = time.Now().UnixNano()
	err := r.restart(st.node)
	if err == nil {
		err = waitReady(ctx, st.Node+r.readyPath, 120*time.Second)
	}
	st.readyNs = time.Now().UnixNano()
	st.DownSecs = float64(st.readyNs-st.downNs) / 1e9
	r.logf("%s ready again after %.2fs", st.Node, st.DownSecs)
	if err == nil {
		waitUntil(ctx, 60*time.Second, func() bool { return openTabs(r.wps) >= r.res.Opened })
		sleepCtx(ctx, 3*time.Second) // writes after ready must all succeed
	}
	close(stopW)
	<-wdone
	sleepCtx(ctx, 2*time.Second) // the last pushes
	st.Writes = len(srecs)
	r.res.Storm = st
	return srecs, err
}

// analyseStorm times the reconnect storm: for each connection of the
// restarted node, when it reconnected and when it had caught up with its
// user's version as of the node's return (seen in hello, sync or a push).
func analyseStorm(res *result, st *storm, recs []writeRec, evs []event, connUser, connNode []int) {
	res.ReconnectStorm = "measured"
	target := map[int]int64{} // user → last version acknowledged before ready
	for _, r := range recs {
		if r.Version > 0 && r.DoneNs <= st.readyNs {
			target[r.User] = max(target[r.User], r.Version)
		}
		if r.SendNs >= st.downNs && r.Version == 0 && r.Status != -1 {
			if r.SendNs < st.readyNs {
				st.ErrorsBefore[strconv.Itoa(r.Status)]++
			} else {
				st.FailedAfterReady++
			}
		}
	}
	byConn := map[int][]event{}
	for _, e := range evs {
		if streamEvent(e) && connNode[e.Conn] == st.node {
			byConn[e.Conn] = append(byConn[e.Conn], e)
		}
	}
	for c, n := range connNode {
		if n == st.node {
			st.Conns++
		} else {
			continue
		}
		list := byConn[c]
		sort.SliceStable(list, func(i, j int) bool { return list[i].At < list[j].At })
		closed, reconnected := false, int64(0)
		var caught int64
		for _, e := range list {
			if e.At < st.downNs {
				continue
			}
			switch {
			case e.Kind == "close":
				closed = true
			case e.Kind == "reconnect" && closed && reconnected == 0:
				reconnected = e.At
			}
			if reconnected != 0 && caught == 0 && e.Kind != "close" && e.Version >= target[connUser[c]] {
				caught = e.At
			}
		}
		if closed {
			st.Closed++
		}
		if reconnected != 0 {
			st.Reconnected++
			st.ReconnectSecs = max(st.ReconnectSecs, float64(reconnected-st.readyNs)/1e9)
			first := float64(reconnected-st.downNs) / 1e9
			if st.Reconnected == 1 || first < st.FirstReconnectSecs {
				st.FirstReconnectSecs = first
			}
		}
		if caught == 0 {
			st.NotCaughtUp++
		} else {
			st.CatchUpSecs = max(st.CatchUpSecs, float64(caught-st.readyNs)/1e9)
			st.CatchUpSinceDown = max(st.CatchUpSinceDown, float64(caught-st.downNs)/1e9)
		}
	}
}
