// The node's secrets: the session secret, kept in the data dir when not
// given, and the password pepper derived from it.

package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"notesync/internal/fileperm"
)

// sessionSecret returns SESSION_SECRET, or a secret generated once and kept
// in the data dir so sessions survive restarts. The file is this user's
// only (0600), narrowed before it is read: it signs cookies, peppers
// passwords and signs forwarded writes. A node that cannot narrow it does
// not start.
func sessionSecret(cfg *config) ([]byte, error) {
	if cfg.SessionSecret != "" {
		return []byte(cfg.SessionSecret), nil
	}
	path := filepath.Join(cfg.DataDir, "session_secret")
	if err := fileperm.Restrict(path); err != nil {
		return nil, fmt.Errorf("narrow session secret to 0600 (chmod 600 it, or set SESSION_SECRET): %w", err)
	}
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read session secret: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write session secret: %w", err)
	}
	return []byte(secret), nil
}

// passwordPepper is the key of the HMAC that passwords go through before
// bcrypt: derived from -password-pepper, else from the session secret. A
// deployment that changes its session secret (which signs everyone out)
// keeps its passwords working by setting the old one as the pepper.
func passwordPepper(cfg *config, sessionSecret []byte) []byte {
	from := sessionSecret
	if cfg.PasswordPepper != "" {
		from = []byte(cfg.PasswordPepper)
	}
	key := sha256.Sum256(append([]byte("notesync password pepper\x00"), from...))
	return key[:]
}
