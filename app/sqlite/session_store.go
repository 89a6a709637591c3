package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The sessions table, seen by the store: web.SessionStore
// (app/web/session.go) keeps sessions through these methods, each of which
// owns its statement.

// SessionRow is a session as the database holds it (LoadSession).
type SessionRow struct {
	Data    []byte
	Expires time.Time
}

// SaveSession writes a session (inserting it, or replacing its data and
// expiry), made now.
func (s *Store) SaveSession(ctx context.Context, id string, userID int64, data []byte, now, expires time.Time) error {
	if _, err := s.db.write.ExecContext(ctx,
		`INSERT INTO sessions (id, user_id, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
		 ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at`,
		id, userID, data, now.UnixMilli(), expires.UnixMilli()); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// DeleteSession removes a session (log-out).
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.db.write.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// LoadSession reads a session as this node's database holds it; ok is
// false when there is none.
func (s *Store) LoadSession(ctx context.Context, id string) (row SessionRow, ok bool, err error) {
	var expires int64
	err = s.db.read.QueryRowContext(ctx, `SELECT data, expires_at FROM sessions WHERE id = ?`, id).Scan(&row.Data, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return SessionRow{}, false, nil
	} else if err != nil {
		return SessionRow{}, false, fmt.Errorf("read session: %w", err)
	}
	row.Expires = time.UnixMilli(expires)
	return row, true, nil
}

// SessionsEnded returns which of ids are no longer live sessions at now
// (logged out, or expired), as this node's database knows them.
func (s *Store) SessionsEnded(ctx context.Context, ids []string, now time.Time) ([]string, error) {
	var ended []string
	for _, id := range ids {
		var expires int64
		err := s.db.read.QueryRowContext(ctx, `SELECT expires_at FROM sessions WHERE id = ?`, id).Scan(&expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			ended = append(ended, id)
		case err != nil:
			return ended, fmt.Errorf("read session: %w", err)
		case expires < now.UnixMilli():
			ended = append(ended, id)
		}
	}
	return ended, nil
}
