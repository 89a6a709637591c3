package local

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// newNode describes node i (1-based) and creates its directories; a stale
// mount is cleared first (a dead FUSE mount cannot even be looked at).
func (l *Launcher) newNode(i int) (*nodeProc, error) {
	name := "node" + strconv.Itoa(i)
	base, err := filepath.Abs(filepath.Join(l.Dir, name))
	if err != nil {
		return nil, err
	}
	n := &nodeProc{
		index:    i,
		name:     name,
		httpAddr: l.httpAddr(i),
		fuseDir:  filepath.Join(base, "fuse"),
		logPath:  filepath.Join(base, "node.log"),
	}
	n.env = append(os.Environ(), l.nodeEnv(i, n, base)...)
	n.env = append(n.env, l.ExtraEnv...)
	if err := clearStaleMount(n.fuseDir, 10*time.Second); err != nil {
		return nil, err
	}
	for _, d := range []string{n.fuseDir, filepath.Join(base, "litefs"), filepath.Join(base, "app")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// nodeEnv is what node i's LiteFS (litefs.yml) and app read from the
// environment; leaseEnv adds the lease's part.
func (l *Launcher) nodeEnv(i int, n *nodeProc, base string) []string {
	var peers []string
	for j := 1; j <= l.N; j++ {
		peers = append(peers, l.gossipAddr(j))
	}
	env := []string{
		"LITEFS_DIR=" + n.fuseDir,
		"LITEFS_DATA_DIR=" + filepath.Join(base, "litefs"),
		"LITEFS_HTTP_ADDR=" + l.litefsAddr(i),
		"LITEFS_URL=http://" + l.litefsAddr(i),
		"LITEFS_ADVERTISE_URL=http://" + l.litefsAddr(i),
		"FLY_REGION=local",
		"FLY_APP_NAME=", // set, LiteFS would act as on Fly.io
		"FLY_MACHINE_ID=",
		"NOTESYNC_CMD=" + l.Exe,
		"NODE_NAME=" + n.name,
		"LITEFS_HOSTNAME=" + n.name,
		"HTTP_ADDR=" + n.httpAddr,
		"METRICS_ADDR=" + l.metricsAddr(i),
		"PUBLIC_URL=" + l.URL(i), // with Netns, not where the node listens
		"DATA_DIR=" + filepath.Join(base, "app"),
		"DATABASE_PATH=",
		"GOSSIP_BIND=" + l.gossipAddr(i),
		"PEERS=" + strings.Join(peers, ","),
		"GOSSIP_KEY=" + l.GossipKey,
		"SESSION_SECRET=" + l.SessionSecret,
		"HANDOFF_TOKEN=" + l.handoffToken,
	}
	return append(env, l.leaseEnv(i)...)
}

// start launches LiteFS for n, which mounts and starts the app.
func (l *Launcher) start(n *nodeProc) error {
	cmd := exec.Command(l.LiteFS, "mount", "-config", l.Config)
	cmd.Env = n.env
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = nodeProcAttr()
	startCmd := cmd.Start
	if l.Netns {
		ns := l.net.nodes[n.index-1]
		startCmd = func() error { return l.net.in(ns, cmd.Start) }
	}
	if err := startCmd(); err != nil {
		logf.Close()
		return fmt.Errorf("start litefs for %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
		select {
		case l.exited <- n:
		default:
		}
	}()
	l.mu.Lock()
	n.cmd, n.done = cmd, done
	l.mu.Unlock()
	return nil
}

// logTail returns the last n lines of the node's log, indented under a
// line naming the file, or "" when it has none.
func (n *nodeProc) logTail(lines int) string {
	b, err := os.ReadFile(n.logPath)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	all = all[max(0, len(all)-lines):]
	return fmt.Sprintf("; the end of %s:\n    %s", n.logPath, strings.Join(all, "\n    "))
}
