package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// NodeCommands lists the commands Command takes with or without Netns.
const NodeCommands = "kill NODE, stop NODE, promote NODE, status"

// promoteTimeout bounds Promote: the tries of the primary's handoff while
// there is none or it is under way, then the wait for the lease to move.
const promoteTimeout = 15 * time.Second

// ErrStaticLease means the lease was asked to move under -lease static.
var ErrStaticLease = errors.New("the lease is static (-lease static): it cannot move")

// Kill sends SIGKILL to node's LiteFS and app together, as when a machine
// dies; Run starts the node again.
func (l *Launcher) Kill(node string) error {
	return l.signalNode(node, syscall.SIGKILL, true)
}

// Stop sends SIGTERM to node's LiteFS, as a deploy does: LiteFS stops the
// app, gives up the lease if it holds it, and exits; Run starts the node
// again.
func (l *Launcher) Stop(node string) error {
	return l.signalNode(node, syscall.SIGTERM, false)
}

// signalNode sends sig to node's LiteFS, or with group to its whole
// process group (LiteFS and the app).
func (l *Launcher) signalNode(node string, sig syscall.Signal, group bool) error {
	idx, err := l.nodeIndexes([]string{node}, 1, 1)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if idx[0] > len(l.nodes) || l.nodes[idx[0]-1].cmd == nil {
		return fmt.Errorf("%s is not running", node)
	}
	n := l.nodes[idx[0]-1]
	select {
	case <-n.done:
		return fmt.Errorf("%s is not running: it is being started again", node)
	default:
	}
	pid := n.cmd.Process.Pid
	if group {
		pid = -pid
	}
	return syscall.Kill(pid, sig)
}

// Promote moves the lease to node by the primary's own handoff, the one a
// stop makes (docs/PROTOCOL.md §11): POST /handoff?to=node on the
// primary's metrics address, with the token only this launcher gave the
// nodes. The primary holds its writes, waits for node to catch up, asks
// node's LiteFS to promote, and lets the held writes go on to node: no
// transaction is open when the lease moves, which LiteFS v0.5.14 would
// not survive. Tried again while there is no primary or the lease moves
// meanwhile; then it waits until node holds the lease.
func (l *Launcher) Promote(ctx context.Context, node string) error {
	if _, err := l.nodeIndexes([]string{node}, 1, 1); err != nil {
		return err
	}
	if l.Lease == LeaseStatic {
		return ErrStaticLease
	}
	client := &http.Client{Timeout: 10 * time.Second} // the node's HandOff takes at most 5 s
	deadline := time.Now().Add(promoteTimeout)
	for {
		status, why := l.askHandOff(ctx, client, node)
		switch {
		case status == http.StatusOK:
			return l.waitPrimary(ctx, node, deadline, nil)
		case status == http.StatusConflict:
			return fmt.Errorf("%s is not a candidate", node)
		case time.Now().After(deadline):
			return fmt.Errorf("%s did not take the lease: %s", node, why)
		}
		if err := pause(ctx, nil, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// askHandOff asks the primary, once, to hand the lease to node: the
// status (200 too when node already holds it), and what went wrong.
func (l *Launcher) askHandOff(ctx context.Context, c *http.Client, node string) (int, string) {
	p := l.Primary()
	switch {
	case p == node:
		return http.StatusOK, ""
	case p == "":
		return 0, "no primary (an election is under way)"
	}
	idx, err := l.nodeIndexes([]string{p}, 1, 1)
	if err != nil {
		return 0, err.Error()
	}
	u := l.MetricsURL(idx[0]) + "/handoff?to=" + url.QueryEscape(node)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+l.handoffToken)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, p + ": " + resp.Status + " " + strings.TrimSpace(string(b))
}
