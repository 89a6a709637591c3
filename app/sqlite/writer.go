package sqlite

// The group-commit writer: every note write goes through it.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"notesync/app"
)

// noteOp applies one change inside writeNotes' transaction. It returns the
// note as the change left it and the change's op.
type noteOp func(ctx context.Context, tx *sql.Tx, now time.Time) (app.Note, string, error)

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
//
// sets is the body the write gives its note ("" for a delete or a
// restore): a repeat with the same key has the same body, so the record
// need not keep a copy of it.
func (s *Store) writeNotes(ctx context.Context, userID int64, idem app.Idempotency, sets string, op noteOp) (app.NoteWrite, error) {
	req := &writeReq{ctx: ctx, userID: userID, idem: idem, sets: sets, op: op, done: make(chan writeDone, 1)}
	select {
	case s.writes <- req:
	case <-ctx.Done():
		return app.NoteWrite{}, ctx.Err()
	}
	// Once queued, wait for the outcome even if the caller gives up: the
	// write may be in a transaction already.
	d := <-req.done
	if d.err != nil {
		return d.result, d.err
	}
	return d.result, s.waitHeld(ctx, d)
}

// waitHeld returns once another node holds the write's transaction
// (Held), or the database as it is now, which holds the write: for a
// repeat answered from the idempotency record, and when the commit's
// position could not be read before it. A write that no
// other node holds in time is committed here but could be lost with this
// node: its outcome is unsure, and a retry with the same Idempotency-Key
// waits again.
func (s *Store) waitHeld(ctx context.Context, d writeDone) error {
	if s.Held == nil {
		return nil
	}
	txid := d.txid
	if txid == 0 && s.Position != nil {
		txid, _ = s.Position.TXID()
	}
	err := s.Held.WaitHeld(ctx, txid)
	if err == nil || ctx.Err() != nil {
		return err
	}
	return &app.Error{Code: app.EUNCONFIRMED, RetryAfter: 1, Err: err,
		Message: "the write is committed on the primary, but no other node holds it yet: send it again with the same Idempotency-Key"}
}

// writeReq is one write waiting for the writer.
type writeReq struct {
	ctx    context.Context
	userID int64
	idem   app.Idempotency
	sets   string // the note's new body, if the write gives one
	op     noteOp
	done   chan writeDone
}

type writeDone struct {
	result app.NoteWrite
	change app.Change // what it appended to the change log
	txid   uint64     // the position its transaction committed at, when known
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
	var txid uint64 // the commit's position, when known
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
	} else {
		if err := s.applyBatch(ctx, tx, batch, results, applied); err != nil {
			fail(err)
		}
		txid = s.nextPosition(applied)
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
	if s.committer != nil {
		var cs []app.Change
		for i := range batch {
			if applied[i] {
				cs = append(cs, results[i].change)
			}
		}
		if len(cs) > 0 {
			s.committer.Committed(cs, txid)
		}
	}
	for i, req := range batch {
		if applied[i] {
			results[i].txid = txid
		}
		req.done <- results[i]
	}
}

// nextPosition returns the position the open transaction will commit at
// when it changed notes: one past the database's, which nothing else can
// move while the transaction holds the write lock (LiteFS numbers its
// transactions one by one). 0 means unknown.
func (s *Store) nextPosition(applied []bool) uint64 {
	if s.Position == nil || !slices.Contains(applied, true) {
		return 0
	}
	pos, err := s.Position.TXID()
	if err != nil || pos == 0 {
		return 0
	}
	return pos + 1
}

// savepoints are the statements that wrap each write of a batch.
var savepoints = [3]string{`SAVEPOINT w`, `ROLLBACK TO w`, `RELEASE w`}

// applyBatch applies each write of batch in a savepoint of its own inside
// tx, filling in results and which writes were applied. An error is one
// that the whole batch shares.
func (s *Store) applyBatch(ctx context.Context, tx *sql.Tx, batch []*writeReq, results []writeDone, applied []bool) error {
	// Prepared (from the connection's statement cache) rather than run
	// as text: run as text, SQLite parsed them again for every write.
	var sp [3]*sql.Stmt
	for i, q := range savepoints {
		st, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %s: %w", q, err)
		}
		defer st.Close()
		sp[i] = st
	}
	save, rollback, release := sp[0], sp[1], sp[2]
	now := s.Now()
	for i, req := range batch {
		if err := req.ctx.Err(); err != nil {
			results[i].err = err // gave up before it was applied
			continue
		}
		if _, err := save.ExecContext(ctx); err != nil {
			results[i].err = fmt.Errorf("savepoint: %w", err)
			continue
		}
		r, c, err := s.applyWrite(ctx, tx, req, now)
		if err != nil {
			_, _ = rollback.ExecContext(ctx)
		}
		if _, rerr := release.ExecContext(ctx); rerr != nil && err == nil {
			err = fmt.Errorf("release savepoint: %w", rerr)
		}
		results[i] = writeDone{result: r, change: c, err: err}
		applied[i] = err == nil && !r.Replayed
	}
	return nil
}

// applyWrite runs one write inside the batch's transaction. It returns
// the outcome and the change it appended (none for a replay).
func (s *Store) applyWrite(ctx context.Context, tx *sql.Tx, req *writeReq, now time.Time) (app.NoteWrite, app.Change, error) {
	userID, idem := req.userID, req.idem
	if idem.Key != "" {
		if r, ok, err := lookupIdempotency(ctx, tx, userID, idem, req.sets, now); err != nil || ok {
			return r, app.Change{}, err
		}
	}
	var version int64
	if err := tx.QueryRowContext(ctx, `UPDATE users SET version = version + 1 WHERE id = ? RETURNING version`, userID).Scan(&version); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return app.NoteWrite{}, app.Change{}, app.Errorf(app.EUNAUTHORIZED, "no such user")
		}
		return app.NoteWrite{}, app.Change{}, fmt.Errorf("bump version: %w", err)
	}
	before, err := s.usage(ctx, tx, userID)
	if err != nil {
		return app.NoteWrite{}, app.Change{}, err
	}
	note, opName, err := req.op(ctx, tx, now)
	if err != nil {
		return app.NoteWrite{}, app.Change{}, err
	}
	after, err := s.usage(ctx, tx, userID)
	if err != nil {
		return app.NoteWrite{}, app.Change{}, err
	}
	if err := s.Quota.Check(before, after); err != nil {
		return app.NoteWrite{}, app.Change{}, err
	}
	// The change as ChangesAfter reads it back (created_at in ms).
	c := app.Change{ID: newChangeID(), UserID: userID, Version: version, Op: opName, NoteID: note.ID, Node: s.Node, CreatedAt: time.UnixMilli(now.UnixMilli())}
	if err := tx.QueryRowContext(ctx, `INSERT INTO changes (change_id, user_id, version, op, note_id, node, created_at, idem_key, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		c.ID, userID, version, opName, note.ID, s.Node, now.UnixMilli(), sql.NullString{String: idem.Key, Valid: idem.Key != ""}, note.Rev).Scan(&c.Seq); err != nil {
		return app.NoteWrite{}, app.Change{}, fmt.Errorf("append change: %w", err)
	}
	// A write's outcome leaves the note's place out, as the idempotency
	// record, and so its replay, does: only the list's pages use it.
	note.Place = 0
	// An update that saved another text than it sent was merged
	// (UpdateNote); a repeat must be answered with the merge, so the
	// record keeps it whatever its length.
	given := req.sets != "" && note.Body == req.sets
	res := app.NoteWrite{Note: note, Version: version, Merged: opName == app.OpUpdated && !given}
	if idem.Key != "" {
		if err := recordIdempotency(ctx, tx, userID, idem, opName, res, given, now); err != nil {
			return app.NoteWrite{}, app.Change{}, err
		}
	}
	return res, c, nil
}

// usage reads what userID's notes take inside tx, when the store has a
// quota to check it against (the triggers of migration 0003 keep it).
func (s *Store) usage(ctx context.Context, tx *sql.Tx, userID int64) (app.Usage, error) {
	var u app.Usage
	if s.Quota == (app.Quota{}) {
		return u, nil
	}
	if err := tx.QueryRowContext(ctx, `SELECT note_count, note_bytes FROM users WHERE id = ?`, userID).Scan(&u.Notes, &u.Bytes); err != nil {
		return u, fmt.Errorf("read usage: %w", err)
	}
	return u, nil
}

// outcomeCodes are the codes the idempotency record keeps for each op. They
// are HTTP's numbers because the record's status column is read as one by
// releases that answer a replay straight from it; a rolling deploy runs such
// a release beside this one.
var outcomeCodes = map[string]int{app.OpCreated: 201, app.OpUpdated: 200, app.OpDeleted: 204}

// recordedBody is the longest note body an idempotency record keeps of a
// write that gives its note a body (a create or an update). A longer one is
// left out (the record's note has an empty body, which no note has): a
// repeat gives it again. Records live for a day, and kept every body they
// would double the data of one who writes long notes. A restore, whose
// request holds no body, keeps it: restores are few, and a repeat answers
// the note as the restore brought it back.
const recordedBody = 256

// recordIdempotency keeps the outcome of a keyed write: its status, and the
// note and version it answered, without a long body when the request gave
// it (given). A release before this
// one, beside it during a rolling deploy, answers a repeat of such a record
// with the note's body empty; it never applies the write twice.
func recordIdempotency(ctx context.Context, tx *sql.Tx, userID int64, idem app.Idempotency, op string, res app.NoteWrite, given bool, now time.Time) error {
	body := []byte{} // a delete keeps no note, as releases before this one expect
	if op != app.OpDeleted {
		if given && len(res.Note.Body) > recordedBody {
			res.Note.Body = ""
		}
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

// lookupIdempotency returns the recorded outcome of idem, if any, with the
// note's body: the record's, else sets (the repeat's, the same as the first
// write's: the key's fingerprint covers it).
func lookupIdempotency(ctx context.Context, tx *sql.Tx, userID int64, idem app.Idempotency, sets string, now time.Time) (app.NoteWrite, bool, error) {
	var (
		fp      string
		body    []byte
		created int64
	)
	err := tx.QueryRowContext(ctx, `SELECT fingerprint, body, created_at FROM idempotency WHERE user_id = ? AND key = ?`,
		userID, idem.Key).Scan(&fp, &body, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return app.NoteWrite{}, false, nil
	} else if err != nil {
		return app.NoteWrite{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	if now.Sub(time.UnixMilli(created)) > app.IdempotencyTTL {
		// Expired: forget it and apply the write anew.
		if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE user_id = ? AND key = ?`, userID, idem.Key); err != nil {
			return app.NoteWrite{}, false, fmt.Errorf("expire idempotency key: %w", err)
		}
		return app.NoteWrite{}, false, nil
	}
	if fp != idem.Fingerprint {
		return app.NoteWrite{}, false, app.Errorf(app.EUNPROCESSABLE, "Idempotency-Key was already used for a different request")
	}
	var res app.NoteWrite
	if len(body) > 0 {
		if err := json.Unmarshal(body, &res); err != nil {
			return app.NoteWrite{}, false, fmt.Errorf("read idempotency record: %w", err)
		}
	}
	res.Replayed = true
	if res.Note.ID == 0 || res.Note.Body != "" {
		return res, true, nil
	}
	res.Note.Body = sets
	return res, true, nil
}
