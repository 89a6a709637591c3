package app

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswords(t *testing.T) {
	ctx := context.Background()

	t.Run("every byte of a 256-byte password counts", func(t *testing.T) {
		s := newTestStore(t)
		pass := strings.Repeat("p", 100) + strings.Repeat("é", 78) // 256 bytes
		if _, err := s.CreateUser(ctx, "olga", pass); err != nil {
			t.Fatalf("a 256-byte password: %v", err)
		}
		if _, err := s.Authenticate(ctx, "olga", pass); err != nil {
			t.Fatalf("the right password: %v", err)
		}
		for _, wrong := range []string{pass[:72], pass[:255], pass[:254] + "ê", pass + "x"} {
			if _, err := s.Authenticate(ctx, "olga", wrong); ErrorCode(err) != EUNAUTHORIZED {
				t.Errorf("a %d-byte password sharing a prefix: %v, want unauthorized", len(wrong), err)
			}
		}
	})

	t.Run("hashes made before the pepper still verify and are upgraded at the next log-in", func(t *testing.T) {
		s := newTestStore(t)
		old, _ := bcrypt.GenerateFromPassword([]byte("password1"), bcrypt.MinCost)
		if _, err := s.db.write.Exec(`INSERT INTO users (username, password_hash, created_at) VALUES ('pete', ?, 0)`, old); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, "pete", "wrong-pass"); ErrorCode(err) != EUNAUTHORIZED {
			t.Fatalf("wrong password against an old hash: %v", err)
		}
		if _, err := s.Authenticate(ctx, "pete", "password1"+strings.Repeat("x", 70)); ErrorCode(err) != EUNAUTHORIZED {
			t.Fatalf("a longer password with the old one as its first 72 bytes: %v", err)
		}
		if _, err := s.Authenticate(ctx, "pete", "password1"); err != nil {
			t.Fatalf("right password against an old hash: %v", err)
		}
		var hash string
		s.db.read.QueryRow(`SELECT password_hash FROM users WHERE username = 'pete'`).Scan(&hash)
		if !strings.HasPrefix(hash, pepperedPrefix) {
			t.Fatalf("hash after log-in %q: not upgraded", hash)
		}
		if _, err := s.Authenticate(ctx, "pete", "password1"); err != nil {
			t.Fatalf("right password against the upgraded hash: %v", err)
		}
	})

	t.Run("the pepper is part of the hash", func(t *testing.T) {
		s := newTestStore(t)
		s.PasswordPepper = []byte("one pepper")
		mustUser(t, s, "quin")
		s.PasswordPepper = []byte("another pepper")
		if _, err := s.Authenticate(ctx, "quin", "password1"); ErrorCode(err) != EUNAUTHORIZED {
			t.Fatalf("another pepper: %v, want unauthorized", err)
		}
	})

	t.Run("over the wire: long passwords work, over 256 bytes is a 400 that says so, and the forms say the rule", func(t *testing.T) {
		ts := newTestServer(t)
		long := strings.Repeat("long-pass-", 10) // 100 bytes: bcrypt alone refuses it
		b := ts.browser(t)
		if resp, body := b.Form("/signup", url.Values{"username": {"rosa"}, "password": {long}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-up with 100 bytes: %d %q", resp.StatusCode, formError(body))
		}
		if resp, _ := ts.browser(t).Form("/login", url.Values{"username": {"rosa"}, "password": {long[:72] + "different tail"}}); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("log-in with the same first 72 bytes: %d, want 401", resp.StatusCode)
		}
		if resp, _ := ts.browser(t).Form("/login", url.Values{"username": {"rosa"}, "password": {long}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("log-in with 100 bytes: %d", resp.StatusCode)
		}
		tooLong := strings.Repeat("x", 300)
		for _, path := range []string{"/signup", "/login"} {
			resp, body := ts.browser(t).Form(path, url.Values{"username": {"sam"}, "password": {tooLong}})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(formError(body), "300 bytes; the limit is 256 bytes") {
				t.Errorf("%s with 300 bytes: %d %q, want 400 saying the limit", path, resp.StatusCode, formError(body))
			}
		}
		for _, path := range []string{"/signup", "/login"} {
			_, page := ts.browser(t).Do("GET", path, "", "")
			if !strings.Contains(page, `id="password-rule"`) || !strings.Contains(page, "256 bytes") {
				t.Errorf("%s does not show the password rule", path)
			}
		}
	})
}
