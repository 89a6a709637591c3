package web

import (
	"context"
	"log/slog"
	"time"

	"notesync/realtime"
)

// EndHere ends a session on this node: the cookie no longer authenticates
// here, whatever this node's database still holds, and the session's open
// connections close with 1008 auth_required (docs/PROTOCOL.md §3). Log-out
// calls it on the node that logged out, and the word from another node on
// every other.
func (st *SessionStore) EndHere(id string, hub *realtime.Hub) {
	st.MarkEnded(id)
	hub.CloseSession(id, realtime.StatusPolicyViolation, "auth_required")
}

// SweepEnded closes, every interval until ctx ends, the connections of
// sessions that ended elsewhere. Log-out on another node says so over
// gossip; this sweep catches a lost packet. The cookie stops
// authenticating everywhere at once (the session row is gone); its open
// connections close within one interval at worst.
func (st *SessionStore) SweepEnded(ctx context.Context, hub *realtime.Hub, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ended, err := st.Ended(ctx, hub.Sessions())
		if err != nil && ctx.Err() == nil {
			logger.Warn("check open sessions", "err", err)
		}
		for _, id := range ended {
			st.EndHere(id, hub)
		}
	}
}
