package local

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// Run serves the cluster Open started until ctx ends: it answers the
// commands read from Input, and starts again any node whose process
// exits. Close then stops the cluster. Run may be called again after it
// returns, so that restarts can pause; each Run reads Input, so give it
// only to a launcher that runs once.
func (l *Launcher) Run(ctx context.Context) {
	if l.Input != nil {
		cmds := NodeCommands
		if l.Netns {
			cmds += ", " + FaultCommands
		}
		fmt.Fprintf(l.Stdout, "type a command: %s\n", cmds)
		go l.serveCommands(l.Input)
	}
	l.restartExited(ctx)
}

// restartExited starts again any node whose process exits, until ctx
// ends.
func (l *Launcher) restartExited(ctx context.Context) {
	for {
		var n *nodeProc
		select {
		case <-ctx.Done():
			return
		case n = <-l.exited:
		}
		l.Logger.Warn("node exited; restarting", "node", n.name, "log", n.logPath)
		// Its app may outlive a killed LiteFS: the whole process group goes.
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		err := clearStaleMount(n.fuseDir, 5*time.Second)
		if err == nil {
			err = l.start(n)
		}
		if err != nil {
			l.Logger.Error("restart node; trying again", "node", n.name, "err", err)
			l.exited <- n // room: each node is queued at most once
		}
	}
}
