package sqlite_test

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
)

func TestPasswords(t *testing.T) {
	ctx := context.Background()

	t.Run("every byte of a 256-byte password counts", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		pass := strings.Repeat("p", 100) + strings.Repeat("é", 78) // 256 bytes
		if _, err := s.CreateUser(ctx, "olga", pass); err != nil {
			t.Fatalf("a 256-byte password: %v", err)
		}
		if _, err := s.Authenticate(ctx, "olga", pass); err != nil {
			t.Fatalf("the right password: %v", err)
		}
		for _, wrong := range []string{pass[:72], pass[:255], pass[:254] + "ê", pass + "x"} {
			if _, err := s.Authenticate(ctx, "olga", wrong); app.ErrorCode(err) != app.EUNAUTHORIZED {
				t.Errorf("a %d-byte password sharing a prefix: %v, want unauthorized", len(wrong), err)
			}
		}
	})

	t.Run("hashes made before the pepper still verify and are upgraded at the next log-in", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		old, _ := bcrypt.GenerateFromPassword([]byte("password1"), bcrypt.MinCost)
		if _, err := s.DB().WritePool().Exec(`INSERT INTO users (username, password_hash, created_at) VALUES ('pete', ?, 0)`, old); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, "pete", "wrong-pass"); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Fatalf("wrong password against an old hash: %v", err)
		}
		if _, err := s.Authenticate(ctx, "pete", "password1"+strings.Repeat("x", 70)); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Fatalf("a longer password with the old one as its first 72 bytes: %v", err)
		}
		if _, err := s.Authenticate(ctx, "pete", "password1"); err != nil {
			t.Fatalf("right password against an old hash: %v", err)
		}
		var hash string
		s.DB().ReadPool().QueryRow(`SELECT password_hash FROM users WHERE username = 'pete'`).Scan(&hash)
		if !strings.HasPrefix(hash, sqlite.PepperedPrefix) {
			t.Fatalf("hash after log-in %q: not upgraded", hash)
		}
		if _, err := s.Authenticate(ctx, "pete", "password1"); err != nil {
			t.Fatalf("right password against the upgraded hash: %v", err)
		}
	})

	t.Run("the pepper is part of the hash", func(t *testing.T) {
		s := sqlitetest.NewStore(t)
		s.PasswordPepper = []byte("one pepper")
		sqlitetest.User(t, s, "quin")
		s.PasswordPepper = []byte("another pepper")
		if _, err := s.Authenticate(ctx, "quin", "password1"); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Fatalf("another pepper: %v, want unauthorized", err)
		}
	})
}
