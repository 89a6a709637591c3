package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Store is the notes database seen by the domain: accounts, sessions, notes
// and the change log. Each exported method owns its transaction; unexported
// helpers take the *sql.Tx and hold the SQL.
type Store struct {
	db *DB
	// Node is recorded in the change log as where a change was made.
	Node string
	// OnCommit, if set, is called after every committed change to a
	// user's notes (never before the commit) with the version it reached,
	// so the change feed, and other nodes, can push it at once. It must not
	// block.
	OnCommit func(userID, version int64)
	// BcryptCost is the cost of new password hashes.
	BcryptCost int
	// ObserveBatch, if set, is called after each group commit with the
	// number of writes it carried and how long the transaction took.
	ObserveBatch func(writes int, took time.Duration)
	now          func() time.Time

	writes     chan *writeReq
	writerDone chan struct{}
	closeOnce  sync.Once
}

// NewStore returns a Store over db and starts its writer; Close stops it.
func NewStore(db *DB, node string) *Store {
	s := &Store{db: db, Node: node, BcryptCost: 10, now: time.Now,
		writes: make(chan *writeReq, MaxBatch), writerDone: make(chan struct{})}
	go s.runWriter()
	return s
}

// Close stops the writer after the writes already queued. No write may be
// started after Close.
func (s *Store) Close() {
	s.closeOnce.Do(func() { close(s.writes) })
	<-s.writerDone
}

// DB returns the underlying database.
func (s *Store) DB() *DB { return s.db }

// Idempotency identifies a write that a client may repeat: the first outcome
// of a (user, Key) is stored and replayed for 24 hours. Fingerprint
// describes the request (method, path, body), so a key reused for a
// different request is refused rather than answered with an unrelated
// outcome.
type Idempotency struct {
	Key         string
	Fingerprint string
}

// IdempotencyTTL is how long the first outcome of a keyed write is kept.
const IdempotencyTTL = 24 * time.Hour

// NoteWrite is the outcome of a note write: the note as the write left it
// (for a delete, as it was) and the user's version after it.
type NoteWrite struct {
	Note    Note  `json:"note"`
	Version int64 `json:"version"`
	// Replayed reports an answer from the idempotency record: nothing was
	// applied this time.
	Replayed bool `json:"-"`
}

// CreateNote adds a note for userID.
func (s *Store) CreateNote(ctx context.Context, userID int64, body string, idem Idempotency) (NoteWrite, error) {
	if err := ValidateNoteBody(body); err != nil {
		return NoteWrite{}, err
	}
	return s.writeNotes(ctx, userID, idem, func(ctx context.Context, tx *sql.Tx, now time.Time) (Note, string, error) {
		res, err := tx.ExecContext(ctx, `INSERT INTO notes (user_id, body, created_at, updated_at) VALUES (?, ?, ?, ?)`,
			userID, body, now.UnixMilli(), now.UnixMilli())
		if err != nil {
			return Note{}, "", fmt.Errorf("insert note: %w", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return Note{}, "", err
		}
		return Note{ID: id, Body: body, CreatedAt: now.UTC().Truncate(time.Millisecond)}, OpCreated, nil
	})
}

// UpdateNote replaces the body of one of userID's notes.
func (s *Store) UpdateNote(ctx context.Context, userID, noteID int64, body string, idem Idempotency) (NoteWrite, error) {
	if err := ValidateNoteBody(body); err != nil {
		return NoteWrite{}, err
	}
	return s.writeNotes(ctx, userID, idem, func(ctx context.Context, tx *sql.Tx, now time.Time) (Note, string, error) {
		var createdMs int64
		err := tx.QueryRowContext(ctx, `UPDATE notes SET body = ?, updated_at = ? WHERE id = ? AND user_id = ? RETURNING created_at`,
			body, now.UnixMilli(), noteID, userID).Scan(&createdMs)
		if errors.Is(err, sql.ErrNoRows) {
			return Note{}, "", Errorf(ENOTFOUND, "note %d not found", noteID)
		} else if err != nil {
			return Note{}, "", fmt.Errorf("update note: %w", err)
		}
		return Note{ID: noteID, Body: body, CreatedAt: time.UnixMilli(createdMs).UTC()}, OpUpdated, nil
	})
}

// DeleteNote removes one of userID's notes.
func (s *Store) DeleteNote(ctx context.Context, userID, noteID int64, idem Idempotency) (NoteWrite, error) {
	return s.writeNotes(ctx, userID, idem, func(ctx context.Context, tx *sql.Tx, now time.Time) (Note, string, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM notes WHERE id = ? AND user_id = ?`, noteID, userID)
		if err != nil {
			return Note{}, "", fmt.Errorf("delete note: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Note{}, "", Errorf(ENOTFOUND, "note %d not found", noteID)
		}
		return Note{ID: noteID}, OpDeleted, nil
	})
}

// noteOp applies one change inside writeNotes' transaction. It returns the
// note as the change left it and the change's op.
type noteOp func(ctx context.Context, tx *sql.Tx, now time.Time) (Note, string, error)

// writeNotes applies op in a transaction that also bumps the user's
// version, appends to the change log and records the outcome under the
// idempotency key; a repeated key answers with the recorded outcome and
// applies nothing.
//
// Writes are group-committed: the store's writer takes every write waiting
// at the moment into one transaction, each in a savepoint of its own (so one
// failing write leaves the others), and commits once. Each caller learns its
// outcome only after that commit. Under LiteFS a commit costs a few
// milliseconds whatever its size, so sharing it is what lets concurrent
// writers go past one commit's worth of writes a second.
func (s *Store) writeNotes(ctx context.Context, userID int64, idem Idempotency, op noteOp) (NoteWrite, error) {
	req := &writeReq{ctx: ctx, userID: userID, idem: idem, op: op, done: make(chan writeDone, 1)}
	select {
	case s.writes <- req:
	case <-ctx.Done():
		return NoteWrite{}, ctx.Err()
	}
	// Once queued, wait for the outcome even if the caller gives up: the
	// write may be in a transaction already.
	d := <-req.done
	return d.result, d.err
}

// writeReq is one write waiting for the writer.
type writeReq struct {
	ctx    context.Context
	userID int64
	idem   Idempotency
	op     noteOp
	done   chan writeDone
}

type writeDone struct {
	result NoteWrite
	err    error
}

// MaxBatch bounds how many writes share one transaction.
const MaxBatch = 256

// runWriter commits queued writes in batches until the queue is closed.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	batch := make([]*writeReq, 0, MaxBatch)
	for first := range s.writes {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < MaxBatch {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch applies a batch in one transaction and tells each caller.
func (s *Store) commitBatch(batch []*writeReq) {
	results := make([]writeDone, len(batch))
	applied := make([]bool, len(batch))
	fail := func(err error) {
		for i := range results {
			if results[i].err == nil {
				results[i] = writeDone{err: err}
			}
		}
	}
	ctx := context.Background()
	began := time.Now()
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
	} else {
		now := s.now()
		for i, req := range batch {
			if err := req.ctx.Err(); err != nil {
				results[i].err = err // gave up before it was applied
				continue
			}
			if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
				results[i].err = fmt.Errorf("savepoint: %w", err)
				continue
			}
			r, err := s.applyWrite(ctx, tx, req, now)
			if err != nil {
				_, _ = tx.ExecContext(ctx, `ROLLBACK TO w`)
			}
			if _, rerr := tx.ExecContext(ctx, `RELEASE w`); rerr != nil && err == nil {
				err = fmt.Errorf("release savepoint: %w", rerr)
			}
			results[i] = writeDone{result: r, err: err}
			applied[i] = err == nil && !r.Replayed
		}
		if err := tx.Commit(); err != nil {
			_ = tx.Rollback()
			for i := range applied {
				applied[i] = false
			}
			fail(fmt.Errorf("commit: %w", err))
		}
	}
	if s.ObserveBatch != nil {
		s.ObserveBatch(len(batch), time.Since(began))
	}
	// Notify after the commit, never before.
	for i, req := range batch {
		if applied[i] && s.OnCommit != nil {
			s.OnCommit(req.userID, results[i].result.Version)
		}
		req.done <- results[i]
	}
}

// applyWrite runs one write inside the batch's transaction.
func (s *Store) applyWrite(ctx context.Context, tx *sql.Tx, req *writeReq, now time.Time) (NoteWrite, error) {
	userID, idem := req.userID, req.idem
	if idem.Key != "" {
		if r, ok, err := lookupIdempotency(ctx, tx, userID, idem, now); err != nil || ok {
			return r, err
		}
	}
	var version int64
	if err := tx.QueryRowContext(ctx, `UPDATE users SET version = version + 1 WHERE id = ? RETURNING version`, userID).Scan(&version); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return NoteWrite{}, Errorf(EUNAUTHORIZED, "no such user")
		}
		return NoteWrite{}, fmt.Errorf("bump version: %w", err)
	}
	note, opName, err := req.op(ctx, tx, now)
	if err != nil {
		return NoteWrite{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO changes (user_id, version, op, note_id, node, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		userID, version, opName, note.ID, s.Node, now.UnixMilli()); err != nil {
		return NoteWrite{}, fmt.Errorf("append change: %w", err)
	}
	res := NoteWrite{Note: note, Version: version}
	if idem.Key != "" {
		if err := recordIdempotency(ctx, tx, userID, idem, opName, res, now); err != nil {
			return NoteWrite{}, err
		}
	}
	return res, nil
}

// outcomeCodes are the codes the idempotency record keeps for each op. They
// are HTTP's numbers because the record's status column is read as one by
// releases that answer a replay straight from it; a rolling deploy runs such
// a release beside this one.
var outcomeCodes = map[string]int{OpCreated: 201, OpUpdated: 200, OpDeleted: 204}

// recordIdempotency keeps the outcome of a keyed write.
func recordIdempotency(ctx context.Context, tx *sql.Tx, userID int64, idem Idempotency, op string, res NoteWrite, now time.Time) error {
	body := []byte{} // a delete keeps no note, as releases before this one expect
	if op != OpDeleted {
		var err error
		if body, err = json.Marshal(res); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency (user_id, key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		userID, idem.Key, idem.Fingerprint, outcomeCodes[op], body, now.UnixMilli()); err != nil {
		return fmt.Errorf("record idempotency key: %w", err)
	}
	return nil
}

// lookupIdempotency returns the recorded outcome of idem, if any.
func lookupIdempotency(ctx context.Context, tx *sql.Tx, userID int64, idem Idempotency, now time.Time) (NoteWrite, bool, error) {
	var (
		fp      string
		body    []byte
		created int64
	)
	err := tx.QueryRowContext(ctx, `SELECT fingerprint, body, created_at FROM idempotency WHERE user_id = ? AND key = ?`,
		userID, idem.Key).Scan(&fp, &body, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return NoteWrite{}, false, nil
	} else if err != nil {
		return NoteWrite{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	if now.Sub(time.UnixMilli(created)) > IdempotencyTTL {
		// Expired: forget it and apply the write anew.
		if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE user_id = ? AND key = ?`, userID, idem.Key); err != nil {
			return NoteWrite{}, false, fmt.Errorf("expire idempotency key: %w", err)
		}
		return NoteWrite{}, false, nil
	}
	if fp != idem.Fingerprint {
		return NoteWrite{}, false, Errorf(EUNPROCESSABLE, "Idempotency-Key was already used for a different request")
	}
	var res NoteWrite
	if len(body) > 0 {
		if err := json.Unmarshal(body, &res); err != nil {
			return NoteWrite{}, false, fmt.Errorf("read idempotency record: %w", err)
		}
	}
	res.Replayed = true
	return res, true, nil
}

// ListNotes returns userID's notes, newest first, and the version they are
// at, read in one snapshot.
func (s *Store) ListNotes(ctx context.Context, userID int64) ([]Note, int64, error) {
	tx, err := s.db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	var version int64
	if err := tx.QueryRowContext(ctx, `SELECT version FROM users WHERE id = ?`, userID).Scan(&version); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, 0, Errorf(EUNAUTHORIZED, "no such user")
		}
		return nil, 0, fmt.Errorf("read version: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, body, created_at FROM notes WHERE user_id = ? ORDER BY id DESC`, userID)
	if err != nil {
		return nil, 0, fmt.Errorf("list notes: %w", err)
	}
	defer rows.Close()
	notes := []Note{}
	for rows.Next() {
		var n Note
		var ms int64
		if err := rows.Scan(&n.ID, &n.Body, &ms); err != nil {
			return nil, 0, err
		}
		n.CreatedAt = time.UnixMilli(ms).UTC()
		notes = append(notes, n)
	}
	return notes, version, rows.Err()
}

// Version returns userID's notes version as this node's database holds it.
func (s *Store) Version(ctx context.Context, userID int64) (int64, error) {
	var v int64
	err := s.db.read.QueryRowContext(ctx, `SELECT version FROM users WHERE id = ?`, userID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, Errorf(EUNAUTHORIZED, "no such user")
	}
	return v, err
}

// ChangesAfter returns up to limit changes with seq above after, in order.
func (s *Store) ChangesAfter(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT seq, user_id, version, op, note_id, node, created_at FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if isNoSuchTable(err) {
		return nil, nil // a replica whose schema has not arrived yet
	} else if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var cs []Change
	for rows.Next() {
		var c Change
		var ms int64
		if err := rows.Scan(&c.Seq, &c.UserID, &c.Version, &c.Op, &c.NoteID, &c.Node, &ms); err != nil {
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
	now := s.now()
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE created_at < ? AND seq < (SELECT MAX(seq) FROM changes)`, now.Add(-keep).UnixMilli()); err != nil {
		return fmt.Errorf("prune changes: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE created_at < ?`, now.Add(-IdempotencyTTL).UnixMilli()); err != nil {
		return fmt.Errorf("prune idempotency: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, now.UnixMilli()); err != nil {
		return fmt.Errorf("prune sessions: %w", err)
	}
	return tx.Commit()
}
