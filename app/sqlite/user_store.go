package sqlite

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/crypto/bcrypt"

	"notesync/app"
)

// pepperedPrefix marks a password hash made by hashPassword. A hash without
// it is bcrypt of the password itself, as made before: it still verifies,
// and is replaced at the next log-in.
const pepperedPrefix = "$hmac-sha256$"

// prehash is what bcrypt sees of a password: its HMAC-SHA256 under the
// pepper, in base64. bcrypt reads 72 bytes at most; this way every byte of
// a 256-byte password counts, and a stolen database alone is not enough to
// guess passwords offline.
func (s *Store) prehash(password string) []byte {
	mac := hmac.New(sha256.New, s.PasswordPepper)
	mac.Write([]byte(password))
	return []byte(base64.RawStdEncoding.EncodeToString(mac.Sum(nil)))
}

// hashPassword makes the stored hash of a password.
func (s *Store) hashPassword(password string) ([]byte, error) {
	hash, err := bcrypt.GenerateFromPassword(s.prehash(password), s.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return append([]byte(pepperedPrefix), hash...), nil
}

// checkPassword reports whether password matches a stored hash, and
// whether that hash is of the kind made before pepperedPrefix.
func (s *Store) checkPassword(hash []byte, password string) (ok, old bool) {
	if rest, found := bytes.CutPrefix(hash, []byte(pepperedPrefix)); found {
		return bcrypt.CompareHashAndPassword(rest, s.prehash(password)) == nil, false
	}
	// bcrypt alone ignores what follows byte 72; such passwords could not
	// be set then, so a longer one cannot be the right one.
	if len(password) > 72 {
		return false, true
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, true
}

// CreateUser adds an account.
func (s *Store) CreateUser(ctx context.Context, username, password string) (*app.User, error) {
	if err := app.ValidateCredentials(username, password); err != nil {
		return nil, err
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return nil, err
	}
	res, err := s.db.write.ExecContext(ctx, `INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)`,
		username, hash, s.Now().UnixMilli())
	if err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique {
			return nil, app.Errorf(app.ECONFLICT, "The username %q is taken. Choose another, or log in if it is yours.", username)
		}
		return nil, fmt.Errorf("insert user: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	return &app.User{ID: id, Username: username}, nil
}

// dummyHashes hold, per bcrypt cost, a hash that a log-in for an unknown
// name is compared with, so that it takes as long as a wrong password.
var dummyHashes sync.Map // cost → []byte

// dummyHash is the dummy hash at the store's cost.
func (s *Store) dummyHash() []byte {
	if h, ok := dummyHashes.Load(s.BcryptCost); ok {
		return h.([]byte)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("notesync-dummy-password"), s.BcryptCost)
	dummyHashes.Store(s.BcryptCost, h)
	return h
}

// Authenticate returns the user with that name and password; a wrong name
// or password is EUNAUTHORIZED (without saying which). A hash of the kind
// made before pepperedPrefix is replaced once the password matched it.
func (s *Store) Authenticate(ctx context.Context, username, password string) (*app.User, error) {
	var u app.User
	var hash []byte
	err := s.db.read.QueryRowContext(ctx, `SELECT id, username, password_hash FROM users WHERE username = ?`, username).
		Scan(&u.ID, &u.Username, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash(), s.prehash(password))
		return nil, app.Errorf(app.EUNAUTHORIZED, "Wrong username or password. Check both and try again.")
	} else if err != nil {
		return nil, fmt.Errorf("read user: %w", err)
	}
	ok, old := s.checkPassword(hash, password)
	if !ok {
		return nil, app.Errorf(app.EUNAUTHORIZED, "Wrong username or password. Check both and try again.")
	}
	if old {
		if err := s.rehash(ctx, u.ID, hash, password); err != nil {
			return nil, err
		}
	}
	return &u, nil
}

// rehash replaces a user's old-kind hash, unless it changed meanwhile.
func (s *Store) rehash(ctx context.Context, userID int64, old []byte, password string) error {
	hash, err := s.hashPassword(password)
	if err != nil {
		return err
	}
	_, err = s.db.write.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?`, hash, userID, old)
	if err != nil {
		return fmt.Errorf("upgrade password hash: %w", err)
	}
	return nil
}
