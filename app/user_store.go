package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/crypto/bcrypt"
)

// User is an account.
type User struct {
	ID       int64
	Username string
}

var usernameRE = regexp.MustCompile(`^[a-z0-9_-]{3,32}$`)

// NormalizeUsername lower-cases and trims a typed username.
func NormalizeUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Password lengths, in bytes. Every byte counts.
const (
	MinPasswordBytes = 8
	MaxPasswordBytes = 256
)

// ValidateCredentials checks a username (3–32 of [a-z0-9_-]) and a password
// (8–256 bytes).
func ValidateCredentials(username, password string) error {
	if !usernameRE.MatchString(username) {
		return Errorf(EINVALID, "username must be 3–32 characters of a–z, 0–9, _ and -")
	}
	return checkPasswordLength(password, MinPasswordBytes)
}

// checkPasswordLength checks that a password is min to MaxPasswordBytes
// bytes long.
func checkPasswordLength(password string, min int) error {
	if n := len(password); n > MaxPasswordBytes {
		return Errorf(EINVALID, "password is %d bytes; the limit is %d bytes", n, MaxPasswordBytes)
	} else if n < min {
		return Errorf(EINVALID, "password must be %d–%d bytes long", min, MaxPasswordBytes)
	}
	return nil
}

// CreateUser adds an account.
func (s *Store) CreateUser(ctx context.Context, username, password string) (*User, error) {
	if err := ValidateCredentials(username, password); err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	res, err := s.db.write.ExecContext(ctx, `INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)`,
		username, hash, s.now().UnixMilli())
	if err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique {
			return nil, Errorf(ECONFLICT, "username %q is taken", username)
		}
		return nil, fmt.Errorf("insert user: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	return &User{ID: id, Username: username}, nil
}

// dummyHash is compared against when the user does not exist, so that a
// failed log-in takes as long for an unknown name as for a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("notesync-dummy-password"), bcrypt.DefaultCost)

// Authenticate returns the user with that name and password; a wrong name
// or password is EUNAUTHORIZED (without saying which).
func (s *Store) Authenticate(ctx context.Context, username, password string) (*User, error) {
	var u User
	var hash []byte
	err := s.db.read.QueryRowContext(ctx, `SELECT id, username, password_hash FROM users WHERE username = ?`, username).
		Scan(&u.ID, &u.Username, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil, Errorf(EUNAUTHORIZED, "wrong username or password")
	} else if err != nil {
		return nil, fmt.Errorf("read user: %w", err)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return nil, Errorf(EUNAUTHORIZED, "wrong username or password")
	}
	return &u, nil
}
