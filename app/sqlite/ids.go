package sqlite

// Ids that tell nothing (docs/PROTOCOL.md §3, §11): notes' ids and
// changes' ids are random, chosen by the store as it writes.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"notesync/app"
)

// maxNoteID bounds note ids: below 2^53, every id is a number that
// JavaScript holds exactly.
const maxNoteID = 1<<53 - 1

// noteIDTries bounds the draws of a new note id. Two draws that both hit
// a note in a database of a billion notes happen about once in 10^14
// creates.
const noteIDTries = 4

// randomNoteID returns a random id from 1 to maxNoteID.
func randomNoteID() int64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if id := int64(binary.BigEndian.Uint64(b[:]) & maxNoteID); id != 0 {
			return id
		}
	}
}

// newChangeID returns the id of a new change: 16 random hex digits.
func newChangeID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// noteIDFree reports whether no note, live or deleted and still
// restorable, has id.
func noteIDFree(ctx context.Context, tx *sql.Tx, id int64) (bool, error) {
	var taken bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM notes WHERE id = ?) OR EXISTS (SELECT 1 FROM deleted_notes WHERE id = ?)`,
		id, id).Scan(&taken)
	if err != nil {
		return false, fmt.Errorf("check note id: %w", err)
	}
	return !taken, nil
}

// pickNoteID returns the id of a note about to be inserted: given, when
// it is free (ECONFLICT when not), or else a random free one.
func pickNoteID(ctx context.Context, tx *sql.Tx, given int64) (int64, error) {
	if given != 0 {
		free, err := noteIDFree(ctx, tx, given)
		if err == nil && !free {
			err = app.Errorf(app.ECONFLICT, "note id %d is taken", given)
		}
		return given, err
	}
	for range noteIDTries {
		id := randomNoteID()
		if free, err := noteIDFree(ctx, tx, id); err != nil || free {
			return id, err
		}
	}
	return 0, errors.New("no free note id found")
}

// ChangeAt returns the id of the change that brought userID's notes to
// version: "" when this database does not know it (the change log no
// longer holds it, or it was made before changes had ids), and
// ENOTFOUND when the user's notes are below version.
func (s *Store) ChangeAt(ctx context.Context, userID, version int64) (string, error) {
	var (
		current int64
		head    sql.NullString
	)
	err := s.db.read.QueryRowContext(ctx, `SELECT version, change_id FROM users WHERE id = ?`, userID).Scan(&current, &head)
	if errors.Is(err, sql.ErrNoRows) {
		return "", app.Errorf(app.EUNAUTHORIZED, "no such user")
	} else if err != nil {
		return "", fmt.Errorf("read change id: %w", err)
	}
	switch {
	case version > current:
		return "", app.Errorf(app.ENOTFOUND, "version %d is not reached", version)
	case version == current:
		return head.String, nil
	}
	var id sql.NullString
	err = s.db.read.QueryRowContext(ctx, `SELECT change_id FROM changes WHERE user_id = ? AND version = ? ORDER BY seq DESC LIMIT 1`,
		userID, version).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("read change id: %w", err)
	}
	return id.String, nil
}
