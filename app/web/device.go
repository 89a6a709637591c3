package web

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"
)

// DeviceCookie marks a browser that has logged in to an account. A log-in
// from it to that account is not slowed down by the guesses others made
// against the username (docs/PROTOCOL.md §8): someone else's guessing never
// keeps the owner out. It holds a signed digest of the username, never the
// name itself, and is sent only to /login.
const DeviceCookie = "notesync_device"

// deviceTTL is how long a browser stays known after its last log-in.
const deviceTTL = 180 * 24 * time.Hour

// deviceMark is what DeviceCookie holds for username.
func deviceMark(username string) string {
	sum := sha256.Sum256([]byte("notesync device\x00" + username))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// RememberDevice sets DeviceCookie for username on the response.
func (st *SessionStore) RememberDevice(w http.ResponseWriter, r *http.Request, username string) error {
	v, err := st.device.Encode(DeviceCookie, deviceMark(username))
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: DeviceCookie, Value: v, Path: "/login",
		MaxAge: int(deviceTTL / time.Second), HttpOnly: true, Secure: isHTTPS(r), SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// KnownDevice reports whether r comes from a browser that has logged in to
// username before.
func (st *SessionStore) KnownDevice(r *http.Request, username string) bool {
	c, err := r.Cookie(DeviceCookie)
	if err != nil {
		return false
	}
	var mark string
	return st.device.Decode(DeviceCookie, c.Value, &mark) == nil && mark == deviceMark(username)
}
