package main

// Changes applied again through a new primary whose history lacks them
// (docs/PROTOCOL.md §11): every node keeps its recent changes
// (journal.Journal), and sends those that a new history lacks to the
// primary, which applies them under their own Idempotency-Key.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"notesync/app"
	"notesync/app/journal"
	"notesync/app/web"
	"notesync/cluster"
)

// reapplyPath is where a node sends the primary a change to apply again,
// signed as a forwarded write is; the primary serves it to nodes only.
const reapplyPath = "/internal/reapply"

// openJournal starts keeping, on a LiteFS mount, what it takes to apply
// this node's recent changes again. A replica reports a transaction to
// the primary (Acks) only once the journal holds it, and the journal
// forgets what every candidate holds.
func (n *Node) openJournal(context.Context) error {
	if !n.lfs.Enabled() {
		return nil
	}
	n.journal = &journal.Journal{Source: n.store, Position: n.lfs.TXID, Reapply: n.reapply, Logger: n.logger,
		OnReapplied: func(app.Written, journal.Landed) { n.metrics.Reapplied.Inc() }}
	if n.acks != nil {
		n.journal.HeldByAll = n.acks.HeldByAll
		n.journal.OnThrough = n.acks.Poke
		n.acks.Journaled = n.journal.Through
	}
	n.changes.Journal = n.journal
	return nil
}

// reapply applies w again through the primary: on this node's own store
// when it is the primary, else sent to it.
func (n *Node) reapply(ctx context.Context, w app.Written) (journal.Landed, error) {
	if n.lfs.IsPrimary() {
		return landed(n.store.Reapply(ctx, w))
	}
	body, err := json.Marshal(w)
	if err != nil {
		return journal.Landed{}, err
	}
	status, answer, err := n.cluster.Send(ctx, reapplyPath, body)
	if err != nil {
		return journal.Landed{}, err
	}
	var a reapplied
	if status != http.StatusOK || json.Unmarshal(answer, &a) != nil {
		return journal.Landed{}, fmt.Errorf("the primary answered %d: %.200s", status, answer)
	}
	if a.Error != "" {
		return journal.Landed{}, fmt.Errorf("%w: %s", journal.ErrRefused, a.Error)
	}
	return journal.Landed{NoteID: a.NoteID, Replayed: a.Replayed}, nil
}

// reapplied is the primary's answer to a change sent to it to apply
// again: where it landed, or why it will not land.
type reapplied struct {
	NoteID   int64  `json:"note_id,omitempty"`
	Replayed bool   `json:"replayed,omitempty"`
	Error    string `json:"error,omitempty"`
}

// landed is the outcome of Store.Reapply for the journal: a write refused
// for good (its note or user is gone, say) wraps journal.ErrRefused; one
// that may go through later (not yet held by another candidate, an
// outage) does not.
func landed(r app.NoteWrite, err error) (journal.Landed, error) {
	if err == nil {
		return journal.Landed{NoteID: r.Note.ID, Replayed: r.Replayed}, nil
	}
	switch app.ErrorCode(err) {
	case app.EINTERNAL, app.EUNCONFIRMED, app.EUNAVAILABLE:
		return journal.Landed{}, err
	}
	return journal.Landed{}, fmt.Errorf("%w: %w", journal.ErrRefused, err)
}

// reapplyRoute serves reapplyPath in front of next, to other nodes only
// (cluster.ForwardedFrom): the forwarder has checked the request's
// signature, and serves it only while this node is the primary. A
// client's request for it is never forwarded (nodeLocal), so only a
// node's own (cluster.Node.Send) arrives signed.
func (n *Node) reapplyRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != reapplyPath {
			next.ServeHTTP(w, r)
			return
		}
		from := cluster.ForwardedFrom(r)
		if r.Method != http.MethodPost || from == "" {
			http.NotFound(w, r)
			return
		}
		var c app.Written
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, cluster.MaxForwardBody)).Decode(&c); err != nil {
			http.Error(w, "a change as JSON", http.StatusBadRequest)
			return
		}
		l, err := landed(n.store.Reapply(r.Context(), c))
		var a reapplied
		switch {
		case errors.Is(err, journal.ErrRefused):
			a.Error = err.Error()
		case err != nil:
			n.logger.Warn("applying a change again for another node failed", "from", from, "change", c.ID, "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		default:
			a.NoteID, a.Replayed = l.NoteID, l.Replayed
		}
		n.logger.Info("applied a change again for another node", "from", from, "change", c.ID, "op", c.Op,
			"user", c.UserID, "note", c.NoteID, "landed_as", a.NoteID, "already_there", a.Replayed, "refused", a.Error)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	})
}

// nodeLocal names the writes a replica serves itself rather than forward:
// the app's own (web.NodeLocal), and reapplyPath, so that a client cannot
// have a replica sign it.
func nodeLocal(r *http.Request) bool {
	return r.URL.Path == reapplyPath || web.NodeLocal(r)
}
