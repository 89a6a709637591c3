package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// NodeCommands lists the commands Command takes with or without Netns.
const NodeCommands = "kill NODE, stop NODE, promote NODE, status"

// promoteTimeout bounds Promote: the tries of POST /promote while the node
// is not connected to a primary, then the wait for the lease to move.
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

// Promote moves the lease to node with LiteFS's own handoff: POST /promote
// on node's LiteFS API, tried again while it answers 500 (not connected to
// a primary yet) or cannot be reached (starting); then it waits until node
// holds the lease.
func (l *Launcher) Promote(ctx context.Context, node string) error {
	idx, err := l.nodeIndexes([]string{node}, 1, 1)
	if err != nil {
		return err
	}
	if l.Lease == LeaseStatic {
		return ErrStaticLease
	}
	i := idx[0]
	client := &http.Client{Timeout: 5 * time.Second}
	if l.Netns && l.net != nil {
		ns := l.net.nodes[i-1]
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return l.net.dial(ctx, ns, addr)
		}}
	}
	deadline := time.Now().Add(promoteTimeout)
	for {
		status, why := postPromote(ctx, client, "http://"+l.litefsAddr(i)+"/promote")
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

// postPromote is one POST /promote: the status, and what went wrong.
func postPromote(ctx context.Context, c *http.Client, url string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, resp.Status + " " + strings.TrimSpace(string(b))
}
