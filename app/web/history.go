package web

// Which history a tab has seen (docs/PROTOCOL.md §11). After a failover
// the user's version can go back and be reached again by another change,
// so a tab names what it has seen by its version and the change that
// reached it, and a node that holds another change there tells it to
// fetch everything again.

import (
	"context"
	"net/http"
	"time"

	"notesync/app"
	"notesync/app/feed"
	"notesync/realtime"
)

// history is the realtime.History of the notes' change log.
type history struct{ s *Server }

var _ realtime.History = history{}

// ChangeAt names the change at version: "" when the change log no longer
// holds it, or when this node's notes are below it.
func (h history) ChangeAt(ctx context.Context, userID, version int64) (string, error) {
	id, err := h.s.Store.ChangeAt(ctx, userID, version)
	if app.ErrorCode(err) == app.ENOTFOUND {
		return "", nil
	}
	return id, err
}

// Diverged compares the change at since with the client's. A replica
// that may still be catching up waits up to Config.ResumeWait for since
// first; a node alone, or the primary, does not wait: a client ahead of
// it has seen a history that went another way.
func (h history) Diverged(ctx context.Context, userID, since int64, change string) (bool, error) {
	reached, err := h.s.awaitVersion(ctx, userID, since, 0)
	if err == nil && !reached && h.s.mayBeBehind() {
		reached, err = h.s.awaitVersion(ctx, userID, since, h.s.ResumeWait)
	}
	diverged := !reached
	if err == nil && reached {
		diverged, err = h.s.changedAt(ctx, userID, since, change)
	}
	if err != nil {
		return false, err
	}
	if diverged && h.s.Feed != nil {
		h.s.Feed.Forget(userID) // the client is greeted with the database's version
	}
	return diverged, nil
}

func (h history) Restart(version int64, change string) realtime.Message {
	return feed.RestartMessage(version, change, h.s.Node)
}

// mayBeBehind reports whether this node's copy of the data may still be
// catching up with the primary's: it is a replica, and not at the
// primary's position as gossip last told it.
func (s *Server) mayBeBehind() bool {
	if s.Cluster == nil {
		return false
	}
	r := s.Cluster.Replication()
	return r != nil && r.State != "primary" && (r.PrimaryTXID == 0 || r.TXID < r.PrimaryTXID)
}

// changedAt reports whether this node holds a change at version other
// than change: false when it does not know (the change log no longer
// holds it) or is below version.
func (s *Server) changedAt(ctx context.Context, userID, version int64, change string) (bool, error) {
	id, err := s.Store.ChangeAt(ctx, userID, version)
	if app.ErrorCode(err) == app.ENOTFOUND {
		return false, nil
	}
	return id != "" && id != change, err
}

// awaitVersion waits up to wait for this node's copy of userID's notes
// to reach version, and reports whether it did.
func (s *Server) awaitVersion(ctx context.Context, userID, version int64, wait time.Duration) (bool, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		var changed <-chan struct{}
		done := func() {}
		if s.Feed != nil {
			changed, done = s.Feed.Await(userID)
		}
		v, err := s.Store.Version(ctx, userID)
		if err != nil || v >= version || changed == nil {
			done()
			return v >= version, err
		}
		select {
		case <-changed:
			done()
		case <-t.C:
			done()
			return false, nil
		case <-ctx.Done():
			done()
			return false, ctx.Err()
		}
	}
}

// presentedChange is the change a list request names with its
// min_version (?change=), "" when it names none.
func presentedChange(r *http.Request) string { return r.URL.Query().Get("change") }

// withChange fills in the change at the list's version, and marks the
// list as from another history than the one its request named.
func (s *Server) withChange(ctx context.Context, u *User, l notesList, diverged bool) (notesList, error) {
	var err error
	l.Change, err = history{s}.ChangeAt(ctx, u.ID, l.Version)
	l.Diverged = diverged
	return l, err
}

// setHistoryHeaders tells a fragment's reader the change at its version
// and whether it is from another history than the one asked for.
func setHistoryHeaders(w http.ResponseWriter, l notesList) {
	if l.Change != "" {
		w.Header().Set("X-Notes-Change", l.Change)
	}
	if l.Diverged {
		w.Header().Set("X-Notes-Diverged", "true")
	}
}
