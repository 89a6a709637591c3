package sqlite

// Changes applied again through a new primary whose history lacks them
// (docs/PROTOCOL.md §11): what a node reads of each change it holds, and
// how the primary applies one again, once.

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"notesync/app"
)

// WrittenAfter returns up to limit changes with seq above after, in
// order, each with what it takes to apply it again: the text it gave its
// note (from the note, or the earlier texts kept of it), the revision it
// left, and the Idempotency-Key and fingerprint it came with.
func (s *Store) WrittenAfter(ctx context.Context, after int64, limit int) ([]app.Written, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT c.seq, COALESCE(c.change_id, ''), c.user_id, c.version, c.op, c.note_id, c.node, c.created_at,
		COALESCE(c.rev, 0), COALESCE(c.idem_key, ''), COALESCE(i.fingerprint, ''),
		CASE WHEN c.op = 'deleted' THEN '' ELSE COALESCE(
			(SELECT body FROM notes n WHERE n.id = c.note_id AND n.rev = c.rev),
			(SELECT body FROM note_revisions r WHERE r.note_id = c.note_id AND r.rev = c.rev),
			(SELECT body FROM deleted_notes d WHERE d.id = c.note_id AND d.rev = c.rev), '') END
		FROM changes c LEFT JOIN idempotency i ON i.user_id = c.user_id AND i.key = c.idem_key
		WHERE c.seq > ? ORDER BY c.seq LIMIT ?`, after, limit)
	if isNoSuchTable(err) {
		return nil, nil // a replica whose schema has not arrived yet
	} else if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var ws []app.Written
	for rows.Next() {
		var w app.Written
		var ms int64
		if err := rows.Scan(&w.Seq, &w.ID, &w.UserID, &w.Version, &w.Op, &w.NoteID, &w.Node, &ms,
			&w.Rev, &w.Key, &w.Fingerprint, &w.Body); err != nil {
			return nil, err
		}
		w.CreatedAt = time.UnixMilli(ms)
		ws = append(ws, w)
	}
	return ws, rows.Err()
}

// HasChanges returns which of the changes cs the change log holds: a
// change of the same user at the same version with the same id. It looks
// each up by user and version (changes_user_version), which every write
// keeps anyway, rather than by an index of its own on the id.
func (s *Store) HasChanges(ctx context.Context, cs []app.Change) (map[string]bool, error) {
	has := map[string]bool{}
	for len(cs) > 0 {
		batch := cs[:min(len(cs), 250)]
		cs = cs[len(batch):]
		want := make(map[string]bool, len(batch))
		args := make([]any, 0, 2*len(batch))
		for _, c := range batch {
			want[c.ID] = true
			args = append(args, c.UserID, c.Version)
		}
		rows, err := s.db.read.QueryContext(ctx, `SELECT change_id FROM changes WHERE (user_id, version) IN (VALUES (?, ?)`+strings.Repeat(", (?, ?)", len(batch)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("look up changes: %w", err)
		}
		for rows.Next() {
			var id sql.NullString
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			if want[id.String] {
				has[id.String] = true
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return has, nil
}

// ReapplyFingerprint is the fingerprint of a change applied again that
// came without an Idempotency-Key: its key is then the change's id.
const ReapplyFingerprint = "reapplied"

// Reapply applies w again, a change that another primary committed and
// this database's history lacks, as the write it was: a create with the
// note id it was answered with (a new one when that id is taken), an
// update as the text it set, a delete. It goes under the write's own
// Idempotency-Key (or, without one, its change id), so that the same
// change applied again by several nodes, or sent again by its client,
// lands once: a repeat is answered Replayed.
func (s *Store) Reapply(ctx context.Context, w app.Written) (app.NoteWrite, error) {
	idem := app.Idempotency{Key: w.Key, Fingerprint: w.Fingerprint}
	if idem.Key == "" {
		idem = app.Idempotency{Key: "change:" + w.ID, Fingerprint: ReapplyFingerprint}
	} else if idem.Fingerprint == "" {
		idem.Fingerprint = ReapplyFingerprint
	}
	switch w.Op {
	case app.OpCreated:
		r, err := s.CreateNoteWithID(ctx, w.UserID, w.NoteID, w.Body, idem)
		if app.ErrorCode(err) == app.ECONFLICT {
			return s.CreateNoteWithID(ctx, w.UserID, 0, w.Body, idem)
		}
		return r, err
	case app.OpUpdated:
		return s.UpdateNote(ctx, w.UserID, w.NoteID, w.Body, nil, idem)
	case app.OpDeleted:
		return s.DeleteNote(ctx, w.UserID, w.NoteID, nil, idem)
	}
	return app.NoteWrite{}, app.Errorf(app.EINVALID, "no such op %q", w.Op)
}
