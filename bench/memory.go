package main

import (
	"context"
	"fmt"
	"time"
)

// What a connection costs a node: its /metrics read before any tab
// connects (idle) and once every tab has (loaded).

// readIdle reads each node's /metrics before any tab connects.
func (r *loadRun) readIdle() error {
	r.idle = make([]map[string]float64, len(r.urls))
	for i, u := range r.murls {
		m, err := metrics(u)
		if err != nil {
			return fmt.Errorf("metrics of %s: %w", u, err)
		}
		r.idle[i] = m
	}
	return nil
}

// measureMemory waits (at most 30 s) until the nodes count every opened
// connection above their idle count, lets them settle a second, reads
// their /metrics again, and sets each node's memory figures: RSS,
// heap+stack and goroutines per connection, loaded minus idle.
func (r *loadRun) measureMemory(ctx context.Context) error {
	res, idle := r.res, r.idle
	waitUntil(ctx, 30*time.Second, func() bool {
		var total float64
		for _, u := range r.murls {
			if m, err := metrics(u); err == nil {
				total += m["connections"]
			}
		}
		var base float64
		for _, m := range idle {
			base += m["connections"]
		}
		return total-base >= float64(res.Opened)
	})
	sleepCtx(ctx, time.Second)
	r.loaded = make([]map[string]float64, len(r.urls))
	for i, u := range r.urls {
		m, err := metrics(r.murls[i])
		if err != nil {
			return err
		}
		r.loaded[i] = m
		d := m["connections"] - idle[i]["connections"]
		nm := nodeMem{Node: u, Conns: d, Tabs: m["tabs"] - idle[i]["tabs"], IdleRSS: idle[i]["process_resident_memory_bytes"], LoadedRSS: m["process_resident_memory_bytes"]}
		if d > 0 {
			nm.RSSPerConn = (m["process_resident_memory_bytes"] - idle[i]["process_resident_memory_bytes"]) / d
			nm.HeapStackConn = (m["go_memstats_heap_inuse_bytes"] + m["go_memstats_stack_inuse_bytes"] -
				idle[i]["go_memstats_heap_inuse_bytes"] - idle[i]["go_memstats_stack_inuse_bytes"]) / d
			nm.GoroutinesConn = (m["go_goroutines"] - idle[i]["go_goroutines"]) / d
		}
		res.Memory = append(res.Memory, nm)
	}
	return nil
}
