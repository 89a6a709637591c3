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
	}
	return nil
}

// analyse computes the write figures from the write phase's records
// (recs[:mainN]) and the delivery figures from every record.
func analyse(res *result, recs []writeRec, mainN int, evs []event, connUser, connNode []int) {
	type key struct {
		user int
		v    int64
	}
	byVersion := map[key]*writeRec{}
	acked := map[int][]int64{}
	var wl []float64
	var firstSend, lastDone int64
	for i := range recs {
		r := &recs[i]
		if r.Status == -1 {
			continue
		}
		if r.Version > 0 {
			byVersion[key{r.User, r.Version}] = r
			acked[r.User] = append(acked[r.User], r.Version)
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

	byConn := map[int][]event{}
	for _, e := range evs {
		if streamEvent(e) {
			byConn[e.Conn] = append(byConn[e.Conn], e)
		}
	}
	var all, same, cross []float64
	for c, list := range byConn {
		sort.SliceStable(list, func(i, j int) bool { return list[i].At < list[j].At })
		u := connUser[c]
		var hello int64 = -1
		seen := map[int64]int{}
		covered := map[int64]bool{}
		var maxV int64
		justReconnected := false
		for _, e := range list {
			switch e.Kind {
			case "hello":
				hello = e.Version
				maxV = e.Version
			case "reconnect":
				res.Reconnects++
				justReconnected = true
				continue
			case "close":
				continue
			case "sync":
				if justReconnected {
					for _, v := range acked[u] {
						if v <= e.Version {
							covered[v] = true
						}
					}
					maxV = max(maxV, e.Version)
				} else {
					res.MissedSync++
				}
			case "changed":
				res.Deliveries++
				seen[e.Version]++
				if seen[e.Version] > 1 {
					res.Duplicated++
				} else if e.Version < maxV {
					res.OutOfOrder++
				}
				maxV = max(maxV, e.Version)
				r := byVersion[key{u, e.Version}]
				if r == nil {
					res.Unexpected++
					break
				}
				if r.Storm {
					break // push latency is the write phase's
				}
				lat := float64(e.At-r.SendNs) / 1e6
				all = append(all, lat)
				if r.Node == connNode[c] {
					same = append(same, lat)
				} else {
					cross = append(cross, lat)
				}
			}
			justReconnected = false
		}
		missed := 0
		for _, v := range acked[u] {
			if v > hello && seen[v] == 0 && !covered[v] {
				missed++
				if len(res.MissedSamples) < 20 {
					r := byVersion[key{u, v}]
					var trail []string
					for _, e := range list {
						trail = append(trail, fmt.Sprintf("%s v%d @%+.3fs", e.Kind, e.Version, float64(e.At-r.SendNs)/1e9))
					}
					res.MissedSamples = append(res.MissedSamples, fmt.Sprintf(
						"conn %d (node %d) user %d missed v%d (write to node %d, storm %v, answered after %.3fs); events relative to its send: %s",
						c, connNode[c]+1, u, v, r.Node+1, r.Storm, float64(r.DoneNs-r.SendNs)/1e9, strings.Join(trail, ", ")))
				}
			}
		}
		res.Missed += missed
		if missed > 0 {
			res.ConnsWithLoss++
		}
	}
	res.Missed += res.MissedSync
	res.PushAll, res.PushSame, res.PushCross = percentiles(all), percentiles(same), percentiles(cross)
}

// streamEvent reports whether e belongs to the versioned stream (hello,
// pushes, syncs, closes and reconnects), not to the ephemeral publishes or
// presence.
func streamEvent(e event) bool { return e.Kind != "eph" && e.Kind != "presence" }
