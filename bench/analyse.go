package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// collect is the last phase: it fetches every event and counter from the
// workers and computes the figures of the writes and deliveries
// (recs[:mainN] are the write phase's), of the storm, the publishes and
// the kill when they ran, and CPU per delivery over the write phase.
func (r *loadRun) collect(ctx context.Context, recs []writeRec, mainN int, pubs []publishRec) error {
	res, connUser, connNode := r.res, r.connUser, r.connNode
	r.phase.Store("collect")
	var evs []event
	for _, w := range r.wps {
		rep, err := w.call(ctx, command{Cmd: "dump"})
		if err != nil {
			return err
		}
		evs = append(evs, rep.Events...)
		res.Closes += rep.Closes
		res.StaleChecks += rep.StaleChecks
		res.Stale += rep.Stale
		res.StaleErrors += rep.StaleErrors
	}
	analyse(res, recs, mainN, evs, connUser, connNode)
	if res.Storm != nil {
		analyseStorm(res, res.Storm, recs, evs, connUser, connNode)
	}
	if pubs != nil {
		res.Eph = analyseEph(pubs, evs, connUser, connNode)
	}
	if res.Kill != nil {
		analysePresence(res.Kill, evs, connUser, connNode)
	}
	res.WriteDeliv = r.writeDeliv
	if r.writeDeliv > 0 {
		res.CPUPer1000 = r.writeCPU / float64(r.writeDeliv) * 1000
		if lfs := res.WriteCPU.litefsSeconds(); lfs > 0 {
			res.CPUWithLiteFS = (r.writeCPU + lfs) / float64(r.writeDeliv) * 1000
		}
	}
	return nil
}

// versionKey is one version of one user's notes.
type versionKey struct {
	user int
	v    int64
}

// ackedWrites are the acknowledged writes of every phase.
type ackedWrites struct {
	byVersion map[versionKey]*writeRec
	byUser    map[int][]int64 // each user's versions, in record order
}

// pushLatencies are the write phase's push latencies (ms): all, and split
// by whether the tab was on the node the write went through.
type pushLatencies struct{ all, same, cross []float64 }

// analyse computes the write figures from the write phase's records
// (recs[:mainN]) and the delivery figures from every record.
func analyse(res *result, recs []writeRec, mainN int, evs []event, connUser, connNode []int) {
	aw := analyseWrites(res, recs, mainN)
	byConn := map[int][]event{}
	for _, e := range evs {
		if streamEvent(e) {
			byConn[e.Conn] = append(byConn[e.Conn], e)
		}
	}
	var lat pushLatencies
	for c, list := range byConn {
		sort.SliceStable(list, func(i, j int) bool { return list[i].At < list[j].At })
		analyseConn(res, aw, &lat, c, list, connUser[c], connNode[c])
	}
	res.Missed += res.MissedSync
	res.PushAll, res.PushSame, res.PushCross = percentiles(lat.all), percentiles(lat.same), percentiles(lat.cross)
}

// analyseWrites sets the write figures (sent, acknowledged, errors by
// status, latency, throughput from the first send to the last answer)
// from recs[:mainN], marks the records after them as the storm's, and
// returns every acknowledged write. Skipped writes count nowhere.
func analyseWrites(res *result, recs []writeRec, mainN int) ackedWrites {
	aw := ackedWrites{byVersion: map[versionKey]*writeRec{}, byUser: map[int][]int64{}}
	var wl []float64
	var firstSend, lastDone int64
	for i := range recs {
		r := &recs[i]
		if r.Status == -1 {
			continue
		}
		if r.Version > 0 {
			aw.byVersion[versionKey{r.User, r.Version}] = r
			aw.byUser[r.User] = append(aw.byUser[r.User], r.Version)
		}
		if i >= mainN {
			r.Storm = true
			continue
		}
		res.WritesSent++
		if r.Version > 0 {
			res.WritesAcked++
			wl = append(wl, float64(r.DoneNs-r.SendNs)/1e6)
			if firstSend == 0 || r.SendNs < firstSend {
				firstSend = r.SendNs
			}
			lastDone = max(lastDone, r.DoneNs)
		} else {
			res.WriteErrors[strconv.Itoa(r.Status)]++
		}
	}
	res.WriteLatency = percentiles(wl)
	if lastDone > firstSend {
		res.WriteThroughput = float64(res.WritesAcked) / (float64(lastDone-firstSend) / 1e9)
	}
	return aw
}

// analyseConn checks connection c (a tab of user u on node), whose
// stream events list holds in arrival order: what replayConn counts, and
// the versions it missed, every acknowledged version of its user after
// its hello that it neither had pushed nor had covered by a sync after a
// reconnect (the first 20 of the run are described in res.MissedSamples).
func analyseConn(res *result, aw ackedWrites, lat *pushLatencies, c int, list []event, u, node int) {
	cr := replayConn(res, aw, lat, list, u, node)
	missed := 0
	for _, v := range aw.byUser[u] {
		if v > cr.hello && cr.seen[v] == 0 && !cr.covered[v] {
			missed++
			if len(res.MissedSamples) < 20 {
				res.MissedSamples = append(res.MissedSamples, missedSample(c, node, u, v, aw.byVersion[versionKey{u, v}], list))
			}
		}
	}
	res.Missed += missed
	if missed > 0 {
		res.ConnsWithLoss++
	}
}

// connReplay is what one connection's stream showed.
type connReplay struct {
	hello   int64          // its last hello's version (-1: none)
	seen    map[int64]int  // pushes of each version
	covered map[int64]bool // versions a sync right after a reconnect named
}

// replayConn walks one connection's stream events (list, in arrival
// order) and counts into res its reconnects, its syncs that did not
// follow a reconnect (missed), and its pushes: duplicates, out of order
// (below the highest version it had), and versions no write made; lat
// gets the latency of each push of a write-phase write, from the write's
// send. A sync after a reconnect covers the user's versions up to its
// own.
func replayConn(res *result, aw ackedWrites, lat *pushLatencies, list []event, u, node int) connReplay {
	cr := connReplay{hello: -1, seen: map[int64]int{}, covered: map[int64]bool{}}
	var maxV int64
	justReconnected := false
	for _, e := range list {
		switch e.Kind {
		case "hello":
			cr.hello = e.Version
			maxV = e.Version
		case "reconnect":
			res.Reconnects++
			justReconnected = true
			continue
		case "close":
			continue
		case "sync":
			if justReconnected {
				for _, v := range aw.byUser[u] {
					if v <= e.Version {
						cr.covered[v] = true
					}
				}
				maxV = max(maxV, e.Version)
			} else {
				res.MissedSync++
			}
		case "changed":
			res.Deliveries++
			cr.seen[e.Version]++
			if cr.seen[e.Version] > 1 {
				res.Duplicated++
			} else if e.Version < maxV {
				res.OutOfOrder++
			}
			maxV = max(maxV, e.Version)
			r := aw.byVersion[versionKey{u, e.Version}]
			if r == nil {
				res.Unexpected++
			} else if !r.Storm { // push latency is the write phase's
				ms := float64(e.At-r.SendNs) / 1e6
				lat.all = append(lat.all, ms)
				if r.Node == node {
					lat.same = append(lat.same, ms)
				} else {
					lat.cross = append(lat.cross, ms)
				}
			}
		}
		justReconnected = false
	}
	return cr
}

// missedSample describes version v that connection c (of user u, on
// node) missed: the write r that made it, and every event of the
// connection's stream relative to that write's send.
func missedSample(c, node, u int, v int64, r *writeRec, list []event) string {
	var trail []string
	for _, e := range list {
		trail = append(trail, fmt.Sprintf("%s v%d @%+.3fs", e.Kind, e.Version, float64(e.At-r.SendNs)/1e9))
	}
	return fmt.Sprintf(
		"conn %d (node %d) user %d missed v%d (write to node %d, storm %v, answered after %.3fs); events relative to its send: %s",
		c, node+1, u, v, r.Node+1, r.Storm, float64(r.DoneNs-r.SendNs)/1e9, strings.Join(trail, ", "))
}

// streamEvent reports whether e belongs to the versioned stream (hello,
// pushes, syncs, closes and reconnects), not to the ephemeral publishes or
// presence.
func streamEvent(e event) bool { return e.Kind != "eph" && e.Kind != "presence" }
