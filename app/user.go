package app

import (
	"regexp"
	"strings"
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
		return Errorf(EINVALID, "A username is 3 to 32 characters, each a lowercase letter a–z, a digit, _ or -. Choose one like that.")
	}
	return CheckPasswordLength(password, MinPasswordBytes)
}

// CheckPasswordLength checks that a password is min to MaxPasswordBytes
// bytes long.
func CheckPasswordLength(password string, min int) error {
	if n := len(password); n > MaxPasswordBytes {
		return Errorf(EINVALID, "The password is %d bytes; the limit is %d bytes. Choose a shorter one.", n, MaxPasswordBytes)
	} else if n < min {
		return Errorf(EINVALID, "The password is too short: choose one of at least %d bytes (most letters take 1 byte).", min)
	}
	return nil
}
