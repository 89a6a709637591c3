package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"notesync/app"
)

// Store is the notes database seen by the domain: accounts, sessions, notes
// and the change log. Each exported method owns its transaction; unexported
// helpers take the *sql.Tx and hold the SQL.
type Store struct {
	db *DB
	// Node is recorded in the change log as where a change was made.
	Node string
	// Position, if set, gives the database's replication position
	// (cluster.LiteFS). It is read inside each group commit that changes
	// notes, where nothing else can commit, so the commit's own position
	// is the next one.
	Position Positioner
	// Held, if set, holds the answer of each note write until another
	// node holds it (cluster.Acks, docs/PROTOCOL.md §11).
	Held Acknowledger
	// BcryptCost is the cost of new password hashes.
	BcryptCost int
	// PasswordPepper keys the HMAC that passwords go through before bcrypt
	// (user_store.go); every node must have the same one.
	PasswordPepper []byte
	// ObserveBatch, if set, is called after each group commit with the
	// number of writes it carried and how long the transaction took.
	ObserveBatch func(writes int, took time.Duration)
	// Quota bounds what one user's notes may take, checked in each write's
	// transaction: every node's writes go through the primary's, so it
	// holds across nodes. Zero: no bound.
	Quota app.Quota
	// Now is the store's clock (time.Now); tests set it.
	Now func() time.Time

	committer  Committer // takes each commit's changes; nil: nobody
	opened     bool
	writes     chan *writeReq
	writerDone chan struct{}
	closeOnce  sync.Once
}

// Positioner gives the database's replication position: LiteFS's TXID,
// 0 before there is one.
type Positioner interface {
	TXID() (uint64, error)
}

// Acknowledger says when a transaction this node committed is held by
// another node that could take the primary's place.
type Acknowledger interface {
	// WaitHeld returns nil once another node holds the database at txid
	// (or at once when there is none to wait for), ctx's error if it ends
	// first, or another error when no node held it in time. It may block.
	WaitHeld(ctx context.Context, txid uint64) error
}

// Committer takes what each group commit appended to the change log, in
// seq order, with the transaction's position (0 without Position): after
// the commit, never before, and before the writers are answered. The
// change feed (feed.Feed) is the one, and pushes them at once. It must not
// block.
type Committer interface {
	Committed(cs []app.Change, txid uint64)
}

// NewStore returns a Store over db. Set its fields, then Open it before
// the first note write; Close stops it.
func NewStore(db *DB, node string) *Store {
	return &Store{db: db, Node: node, BcryptCost: 10, Now: time.Now,
		writes: make(chan *writeReq, MaxBatch), writerDone: make(chan struct{})}
}

// Open starts the store's writer, which every note write goes through
// (writer.go), and which hands the changes of each commit to to (nil: to
// nobody).
func (s *Store) Open(to Committer) {
	s.committer, s.opened = to, true
	go s.runWriter()
}

// Close stops the writer after the writes already queued. No write may be
// started after Close. A store never opened has nothing to stop.
func (s *Store) Close() {
	if !s.opened {
		return
	}
	s.closeOnce.Do(func() { close(s.writes) })
	<-s.writerDone
}

// DB returns the underlying database.
func (s *Store) DB() *DB { return s.db }

// noteColumns are the columns scanNote reads, in its order.
const noteColumns = `id, body, created_at, updated_at, rev, COALESCE(created_version, 0)`

// scanNote reads one row of noteColumns.
func scanNote(row interface{ Scan(...any) error }) (app.Note, error) {
	var n app.Note
	var created, updated int64
	if err := row.Scan(&n.ID, &n.Body, &created, &updated, &n.Rev, &n.Place); err != nil {
		return app.Note{}, err
	}
	n.CreatedAt = time.UnixMilli(created).UTC()
	n.UpdatedAt = time.UnixMilli(updated).UTC()
	return n, nil
}

// CreateNote adds a note for userID, at revision 1, with a new random id
// (docs/PROTOCOL.md §3): ids tell nothing of other users' notes, and are
// not used again, not even after the note is deleted.
func (s *Store) CreateNote(ctx context.Context, userID int64, body string, idem app.Idempotency) (app.NoteWrite, error) {
	return s.CreateNoteWithID(ctx, userID, 0, body, idem)
}

// CreateNoteWithID is CreateNote with the note's id given (0: a new
// random one), as when a write answered by one primary is applied again
// through the next with the id it was answered with. An id that a note
// has, or had and can still be restored, is ECONFLICT.
func (s *Store) CreateNoteWithID(ctx context.Context, userID, noteID int64, body string, idem app.Idempotency) (app.NoteWrite, error) {
	if err := app.ValidateNoteBody(body); err != nil {
		return app.NoteWrite{}, err
	}
	if noteID < 0 || noteID > maxNoteID {
		return app.NoteWrite{}, app.Errorf(app.EINVALID, "a note id is from 1 to %d", int64(maxNoteID))
	}
	return s.writeNotes(ctx, userID, idem, body, func(ctx context.Context, tx *sql.Tx, now time.Time) (app.Note, string, error) {
		id, err := pickNoteID(ctx, tx, noteID)
		if err != nil {
			return app.Note{}, "", err
		}
		// Its place in the list is the user's version, which this write
		// has just bumped.
		n, err := scanNote(tx.QueryRowContext(ctx, `INSERT INTO notes (id, user_id, body, created_at, updated_at, rev, created_version)
			VALUES (?, ?, ?, ?, ?, 1, (SELECT version FROM users WHERE id = ?))
			RETURNING `+noteColumns, id, userID, body, now.UnixMilli(), now.UnixMilli(), userID))
		if err != nil {
			return app.Note{}, "", fmt.Errorf("insert note: %w", err)
		}
		return n, app.OpCreated, nil
	})
}

// UpdateNote replaces the body of one of userID's notes and bumps its
// revision. When the note's revision is not one of ifRev, the edit is
// merged with what was saved since the one revision it names, where the
// two changed different lines (docs/PROTOCOL.md §12): the note gets the
// merge and the outcome says Merged. Otherwise nothing changes and the
// error is ESTALE with the note as it is.
func (s *Store) UpdateNote(ctx context.Context, userID, noteID int64, body string, ifRev app.Revs, idem app.Idempotency) (app.NoteWrite, error) {
	if err := app.ValidateNoteBody(body); err != nil {
		return app.NoteWrite{}, err
	}
	return s.writeNotes(ctx, userID, idem, body, func(ctx context.Context, tx *sql.Tx, now time.Time) (app.Note, string, error) {
		text := body
		if cur, err := currentNote(ctx, tx, userID, noteID, ifRev); app.ErrorCode(err) == app.ESTALE {
			if text, err = mergeFrom(ctx, tx, cur, ifRev, body, err); err != nil {
				return app.Note{}, "", err
			}
		} else if err != nil {
			return app.Note{}, "", err
		}
		n, err := scanNote(tx.QueryRowContext(ctx, `UPDATE notes SET body = ?, updated_at = ?, rev = rev + 1 WHERE id = ?
			RETURNING `+noteColumns, text, now.UnixMilli(), noteID))
		if err != nil {
			return app.Note{}, "", fmt.Errorf("update note: %w", err)
		}
		return n, app.OpUpdated, s.trimRevisions(ctx, tx, userID)
	})
}

// KeptRevisions is how many earlier texts of each note are kept for
// merging (migration 0006's trigger keeps them).
const KeptRevisions = 20

// mergeFrom merges body, an edit made from the one revision that ifRev
// names, with the text of note n, saved since, against that revision's
// text (app.MergeLines). stale is the answer when it cannot: the edit
// names no single earlier revision, that revision's text is no longer
// kept, the two changed the same lines, or the merge is no valid note
// (too long).
func mergeFrom(ctx context.Context, tx *sql.Tx, n app.Note, ifRev app.Revs, body string, stale error) (string, error) {
	if len(ifRev) != 1 || ifRev[0] < 1 || ifRev[0] >= n.Rev {
		return "", stale
	}
	var base string
	err := tx.QueryRowContext(ctx, `SELECT body FROM note_revisions WHERE note_id = ? AND rev = ?`, n.ID, ifRev[0]).Scan(&base)
	if errors.Is(err, sql.ErrNoRows) {
		return "", stale
	} else if err != nil {
		return "", fmt.Errorf("read revision: %w", err)
	}
	merged, ok := app.MergeLines(base, n.Body, body)
	if !ok || app.ValidateNoteBody(merged) != nil {
		return "", stale
	}
	return merged, nil
}

// trimRevisions bounds the earlier texts userID's notes keep by the
// quota's bytes, dropping the oldest first, so that a user who edits
// often makes a node keep at most twice the quota.
func (s *Store) trimRevisions(ctx context.Context, tx *sql.Tx, userID int64) error {
	if s.Quota.Bytes <= 0 {
		return nil
	}
	for {
		var kept int64
		if err := tx.QueryRowContext(ctx, `SELECT revision_bytes FROM users WHERE id = ?`, userID).Scan(&kept); err != nil {
			return fmt.Errorf("read kept revisions: %w", err)
		}
		if kept <= s.Quota.Bytes {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM note_revisions WHERE id IN
			(SELECT id FROM note_revisions WHERE user_id = ? ORDER BY id LIMIT 16)`, userID); err != nil {
			return fmt.Errorf("trim kept revisions: %w", err)
		}
	}
}

// DeleteNote removes one of userID's notes, under the same revision check
// as UpdateNote. The note is kept for UndoWindow, so RestoreNote can bring
// it back.
func (s *Store) DeleteNote(ctx context.Context, userID, noteID int64, ifRev app.Revs, idem app.Idempotency) (app.NoteWrite, error) {
	return s.writeNotes(ctx, userID, idem, "", func(ctx context.Context, tx *sql.Tx, now time.Time) (app.Note, string, error) {
		n, err := currentNote(ctx, tx, userID, noteID, ifRev)
		if err != nil {
			return app.Note{}, "", err
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO deleted_notes (id, user_id, body, created_at, updated_at, rev, created_version, deleted_at)
			SELECT id, user_id, body, created_at, updated_at, rev, created_version, ? FROM notes WHERE id = ?`, now.UnixMilli(), noteID); err != nil {
			return app.Note{}, "", fmt.Errorf("keep deleted note: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM notes WHERE id = ?`, noteID); err != nil {
			return app.Note{}, "", fmt.Errorf("delete note: %w", err)
		}
		return n, app.OpDeleted, nil
	})
}

// RestoreNote brings back a note of userID deleted less than UndoWindow
// ago, with its id, body, created_at, revision and place in the list: a new change, pushed
// with op created. A note that is not deleted, or was deleted longer ago,
// is ENOTFOUND.
func (s *Store) RestoreNote(ctx context.Context, userID, noteID int64, idem app.Idempotency) (app.NoteWrite, error) {
	return s.writeNotes(ctx, userID, idem, "", func(ctx context.Context, tx *sql.Tx, now time.Time) (app.Note, string, error) {
		n, err := scanNote(tx.QueryRowContext(ctx, `INSERT INTO notes (id, user_id, body, created_at, updated_at, rev, created_version)
			SELECT id, user_id, body, created_at, updated_at, rev, created_version FROM deleted_notes WHERE id = ? AND user_id = ? AND deleted_at >= ?
			RETURNING `+noteColumns, noteID, userID, now.Add(-app.UndoWindow).UnixMilli()))
		if errors.Is(err, sql.ErrNoRows) {
			return app.Note{}, "", app.Errorf(app.ENOTFOUND, "note %d cannot be restored: it is not deleted, or it was deleted more than %d seconds ago", noteID, int(app.UndoWindow/time.Second))
		} else if err != nil {
			return app.Note{}, "", fmt.Errorf("restore note: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM deleted_notes WHERE id = ?`, noteID); err != nil {
			return app.Note{}, "", fmt.Errorf("restore note: %w", err)
		}
		return n, app.OpCreated, nil
	})
}

// currentNote reads one of userID's notes inside a write and checks its
// revision against ifRev; a note at another revision comes with the
// ESTALE error.
func currentNote(ctx context.Context, tx *sql.Tx, userID, noteID int64, ifRev app.Revs) (app.Note, error) {
	n, err := scanNote(tx.QueryRowContext(ctx, `SELECT `+noteColumns+` FROM notes WHERE id = ? AND user_id = ?`, noteID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return app.Note{}, app.Errorf(app.ENOTFOUND, "note %d not found", noteID)
	} else if err != nil {
		return app.Note{}, fmt.Errorf("read note: %w", err)
	}
	if !ifRev.Allows(n.Rev) {
		return n, &app.Error{Code: app.ESTALE, Message: fmt.Sprintf("note %d was changed elsewhere: it is at revision %d now", noteID, n.Rev), Note: &n}
	}
	return n, nil
}

// GetNote returns one of userID's notes and the user's version, read in
// one snapshot. A deleted note, or another user's, is ENOTFOUND.
func (s *Store) GetNote(ctx context.Context, userID, noteID int64) (app.Note, int64, error) {
	tx, err := s.db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return app.Note{}, 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	version, err := userVersion(ctx, tx, userID)
	if err != nil {
		return app.Note{}, 0, err
	}
	n, err := scanNote(tx.QueryRowContext(ctx, `SELECT `+noteColumns+` FROM notes WHERE id = ? AND user_id = ?`, noteID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return app.Note{}, 0, app.Errorf(app.ENOTFOUND, "note %d not found", noteID)
	} else if err != nil {
		return app.Note{}, 0, fmt.Errorf("read note: %w", err)
	}
	return n, version, nil
}

// ListNotes returns userID's notes, newest first, and the version they are
// at, read in one snapshot.
func (s *Store) ListNotes(ctx context.Context, userID int64) ([]app.Note, int64, error) {
	notes, version, _, err := s.ListNotesPage(ctx, userID, 0, 0)
	return notes, version, err
}

// ListNotesPage returns a page of userID's notes, newest first: up to
// limit (0: all) of those that come after the cursor before (0: from the
// newest), the version they are at, read in one snapshot, and next, the
// cursor of the page after this one (0: this is the last).
//
// The cursor is a note's Place.
func (s *Store) ListNotesPage(ctx context.Context, userID, before int64, limit int) ([]app.Note, int64, int64, error) {
	tx, err := s.db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	version, err := userVersion(ctx, tx, userID)
	if err != nil {
		return nil, 0, 0, err
	}
	if before <= 0 {
		before = math.MaxInt64
	}
	rows := -1 // SQLite's LIMIT -1: all
	if limit > 0 {
		rows = limit + 1 // one more than the page, to know whether another follows
	}
	return listPage(ctx, tx, userID, before, rows, limit, version)
}

// listPage reads up to rows of userID's notes placed before before
// inside tx, and cuts them to a page of limit (0: all).
func listPage(ctx context.Context, tx *sql.Tx, userID, before int64, rows, limit int, version int64) ([]app.Note, int64, int64, error) {
	rs, err := tx.QueryContext(ctx, `SELECT `+noteColumns+` FROM notes WHERE user_id = ? AND created_version < ?
		ORDER BY created_version DESC, id DESC LIMIT ?`, userID, before, rows)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("list notes: %w", err)
	}
	defer rs.Close()
	notes := []app.Note{}
	for rs.Next() {
		n, err := scanNote(rs)
		if err != nil {
			return nil, 0, 0, err
		}
		notes = append(notes, n)
	}
	var next int64
	if limit > 0 && len(notes) > limit {
		notes = notes[:limit]
		next = notes[limit-1].Place
	}
	return notes, version, next, rs.Err()
}

// userVersion reads userID's notes version inside tx.
func userVersion(ctx context.Context, tx *sql.Tx, userID int64) (int64, error) {
	var version int64
	if err := tx.QueryRowContext(ctx, `SELECT version FROM users WHERE id = ?`, userID).Scan(&version); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, app.Errorf(app.EUNAUTHORIZED, "no such user")
		}
		return 0, fmt.Errorf("read version: %w", err)
	}
	return version, nil
}

// Version returns userID's notes version as this node's database holds it.
func (s *Store) Version(ctx context.Context, userID int64) (int64, error) {
	var v int64
	err := s.db.read.QueryRowContext(ctx, `SELECT version FROM users WHERE id = ?`, userID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, app.Errorf(app.EUNAUTHORIZED, "no such user")
	}
	return v, err
}

// ChangesAfter returns up to limit changes with seq above after, in order.
func (s *Store) ChangesAfter(ctx context.Context, after int64, limit int) ([]app.Change, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT seq, COALESCE(change_id, ''), user_id, version, op, note_id, node, created_at FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if isNoSuchTable(err) {
		return nil, nil // a replica whose schema has not arrived yet
	} else if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var cs []app.Change
	for rows.Next() {
		var c app.Change
		var ms int64
		if err := rows.Scan(&c.Seq, &c.ID, &c.UserID, &c.Version, &c.Op, &c.NoteID, &c.Node, &ms); err != nil {
			return nil, err
		}
		c.CreatedAt = time.UnixMilli(ms)
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// LastChangeSeq returns the seq of the newest change (0 when none).
func (s *Store) LastChangeSeq(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	err := s.db.read.QueryRowContext(ctx, `SELECT MAX(seq) FROM changes`).Scan(&seq)
	if isNoSuchTable(err) {
		return 0, nil // a replica whose schema has not arrived yet
	}
	return seq.Int64, err
}

// Prune deletes change-log rows, idempotency records and sessions that are
// past their use: changes older than keep (nodes tail the log within
// seconds; a reconnecting client catches up with a refetch, not a replay),
// idempotency keys older than IdempotencyTTL, expired sessions.
func (s *Store) Prune(ctx context.Context, keep time.Duration) error {
	now := s.Now()
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Each table is walked in the order its rows were added, from the
	// oldest, up to the first row to keep: no index on created_at, which
	// every write would pay a page for (migration 0007). A row added
	// after one that is kept stays until a later prune, even if its clock
	// said older. The change log keeps its newest row, whose seq the next
	// change's must follow.
	if _, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE seq < COALESCE(
		(SELECT seq FROM changes WHERE created_at >= ? ORDER BY seq LIMIT 1),
		(SELECT MAX(seq) FROM changes))`, now.Add(-keep).UnixMilli()); err != nil {
		return fmt.Errorf("prune changes: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE rowid < COALESCE(
		(SELECT rowid FROM idempotency WHERE created_at >= ? ORDER BY rowid LIMIT 1),
		(SELECT MAX(rowid) + 1 FROM idempotency))`, now.Add(-app.IdempotencyTTL).UnixMilli()); err != nil {
		return fmt.Errorf("prune idempotency: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, now.UnixMilli()); err != nil {
		return fmt.Errorf("prune sessions: %w", err)
	}
	return tx.Commit()
}

// Purge forgets notes deleted more than UndoWindow ago, with their
// earlier texts, and reports how many. It writes only when there is something to forget, so calling it
// often on an idle primary costs a read.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	before := s.Now().Add(-app.UndoWindow).UnixMilli()
	var due int
	err := s.db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM deleted_notes WHERE deleted_at < ? LIMIT 1)`, before).Scan(&due)
	if err != nil || due == 0 {
		return 0, err
	}
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM note_revisions WHERE note_id IN (SELECT id FROM deleted_notes WHERE deleted_at < ?)`, before); err != nil {
		return 0, fmt.Errorf("purge deleted notes' revisions: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM deleted_notes WHERE deleted_at < ?`, before)
	if err != nil {
		return 0, fmt.Errorf("purge deleted notes: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return n, tx.Commit()
}
