package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// HandoffTimeout bounds HandOff: the writes in flight, the search for a
// caught-up candidate, and LiteFS's handoff (about a second).
const HandoffTimeout = 5 * time.Second

// caughtUpWithin bounds the search for a candidate that holds this node's
// last transaction: LiteFS streams it within milliseconds.
const caughtUpWithin = 2 * time.Second

// ErrNotPrimary means a handoff was asked of a node that does not hold
// the lease.
var ErrNotPrimary = errors.New("this node is not the primary")

// ErrNotCandidate means the node asked to take the lease is not a
// candidate: its LiteFS answered /promote with 409.
var ErrNotCandidate = errors.New("not a candidate")

// HandOff moves the lease from this node, the primary, to a live candidate
// that holds every transaction this node committed: to the node named to,
// or with to "" any such candidate, as before the node stops
// (docs/PROTOCOL.md §11). One handoff runs at a time. Writes stop being
// served here from the start: those in flight finish and are replicated,
// new ones wait, and nothing else writes (HoldWrites): LiteFS v0.5.14
// exits when its lease moves during a transaction. Then the candidate's
// LiteFS is asked to take the lease (POST /promote, with which
// it asks this node's LiteFS for a handoff), and HandOff waits until this
// node's LiteFS says it is a replica. The writes that waited then go to the
// new primary, as on any replica. It returns the new primary's name, or
// why the lease did not move; the writes waiting are let through either
// way.
func (n *Node) HandOff(ctx context.Context, to string) (string, error) {
	if !n.LiteFS.Enabled() || n.LiteFS.API == "" || n.Gossip == nil {
		return "", errors.New("no other node to hand the lease to")
	}
	n.handingOff.Lock()
	defer n.handingOff.Unlock()
	if !n.LiteFS.IsPrimary() {
		return "", ErrNotPrimary
	}
	if to == n.Name {
		return to, nil
	}
	ctx, cancel := context.WithTimeout(ctx, HandoffTimeout)
	defer cancel()
	defer n.gate.open()
	if err := n.gate.hold(ctx); err != nil {
		return "", fmt.Errorf("writes in flight did not finish: %w", err)
	}
	if n.HoldWrites != nil {
		release, err := n.HoldWrites(ctx)
		if err != nil {
			return "", fmt.Errorf("the database's writes in flight did not finish: %w", err)
		}
		defer release()
	}
	txid, err := n.LiteFS.TXID()
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: time.Second}
	cands, err := n.caughtUp(ctx, client, txid, to)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, c := range cands {
		if err := promote(ctx, client, c.LiteFSAPI); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
			continue
		}
		for n.LiteFS.IsPrimary() {
			if err := pause(ctx, 10*time.Millisecond); err != nil {
				return "", fmt.Errorf("%s took the lease but this node's LiteFS still says primary: %w", c.Name, err)
			}
		}
		return c.Name, nil
	}
	return "", errors.Join(errs...)
}

// caughtUp waits until at least one live candidate (the one named to,
// unless to is "") says (on /readyz) that it hears from this node and
// holds txid, and returns those that do.
func (n *Node) caughtUp(ctx context.Context, c *http.Client, txid uint64, to string) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, caughtUpWithin)
	defer cancel()
	for {
		var found []Member
		behind := map[string]uint64{}
		for _, m := range n.Gossip.Members() {
			if m.Name == n.Name || m.State != "alive" || m.LiteFSAPI == "" || m.HTTP == "" || to != "" && m.Name != to {
				continue
			}
			r, err := readReplication(ctx, c, m.HTTP)
			switch {
			case err != nil:
			case r.State == "current" && r.TXID == txid:
				found = append(found, m)
			default:
				behind[m.Name] = r.TXID
			}
		}
		if len(found) > 0 {
			return found, nil
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			if to != "" && len(behind) == 0 {
				return nil, fmt.Errorf("%s is not a live member that serves /readyz", to)
			}
			return nil, fmt.Errorf("no candidate holds txid %d (behind: %v)", txid, behind)
		}
	}
}

// readReplication asks a node's /readyz for its replication.
func readReplication(ctx context.Context, c *http.Client, base string) (Replication, error) {
	var body struct{ Replication Replication }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/readyz", nil)
	if err != nil {
		return body.Replication, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return body.Replication, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	return body.Replication, err
}

// promote asks a candidate's LiteFS to take the lease from the primary.
// LiteFS answers 409 on a node that is not a candidate, and 500 while it
// is not connected to the primary.
func promote(ctx context.Context, c *http.Client, api string) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(api, "/")+"/promote", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode == http.StatusConflict:
			return fmt.Errorf("litefs /promote: %s %s: %w", resp.Status, strings.TrimSpace(string(b)), ErrNotCandidate)
		case resp.StatusCode != http.StatusInternalServerError:
			return fmt.Errorf("litefs /promote: %s %s", resp.Status, strings.TrimSpace(string(b)))
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("litefs /promote: %s %s", resp.Status, strings.TrimSpace(string(b)))
		}
	}
}

// writeGate lets writes be served on this node, or holds them while the
// lease is handed off: hold stops new writes and waits for those in
// flight; open lets the waiting ones go on.
type writeGate struct {
	mu       sync.Mutex
	inflight int
	held     chan struct{} // non-nil while held; closed by open
	idle     chan struct{} // closed when the last write in flight leaves
}

// enter waits while the gate is held, then, if this node is still the
// primary, counts a write in (served: call leave when it is done). waited
// says whether it was held.
func (g *writeGate) enter(ctx context.Context, isPrimary func() bool) (served, waited bool, err error) {
	if g == nil {
		return isPrimary(), false, nil
	}
	g.mu.Lock()
	for g.held != nil {
		held := g.held
		g.mu.Unlock()
		waited = true
		select {
		case <-held:
		case <-ctx.Done():
			return false, waited, ctx.Err()
		}
		g.mu.Lock()
	}
	defer g.mu.Unlock()
	if !isPrimary() {
		return false, waited, nil
	}
	g.inflight++
	return true, waited, nil
}

// leave counts a write out.
func (g *writeGate) leave() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight--
	if g.inflight == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// hold stops new writes and waits until those in flight are done.
func (g *writeGate) hold(ctx context.Context) error {
	g.mu.Lock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
	var idle chan struct{}
	if g.inflight > 0 {
		if g.idle == nil {
			g.idle = make(chan struct{})
		}
		idle = g.idle
	}
	g.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// open lets the writes that wait go on.
func (g *writeGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}
