package app

import (
	"errors"
	"fmt"
)

// Error codes: what went wrong, in terms a client can act on. Each maps to
// one HTTP status in web.ErrorStatus.
const (
	EINVALID       = "invalid"       // bad input
	EUNAUTHORIZED  = "unauthorized"  // no session, or wrong password
	EFORBIDDEN     = "forbidden"     // refused (cross-site request)
	ENOTFOUND      = "not_found"     // no such thing for this user
	ECONFLICT      = "conflict"      // name taken, idempotency key reused
	ETOOMANY       = "too_many"      // rate limited
	EUNAVAILABLE   = "unavailable"   // try again later (replica behind, no primary)
	EINTERNAL      = "internal"      // a bug or an outage: details are logged, not shown
	EUNSUPPORTED   = "unsupported"   // wrong content type
	ETOOLARGE      = "too_large"     // request body over the limit
	ETIMEOUT       = "timeout"       // request body did not arrive in time
	EUNPROCESSABLE = "unprocessable" // well-formed but cannot be applied
	ESTALE         = "stale"         // made against a revision that is no longer current
	EUNCONFIRMED   = "unconfirmed"   // committed, but not yet held by another node: retry with the same key
)

// Error is the one error type of the notes domain. Message is safe to show
// to the user; internal errors are wrapped in Err and never shown.
type Error struct {
	Code    string
	Message string
	Err     error
	// RetryAfter, when positive, is sent as a Retry-After header (seconds).
	RetryAfter int
	// Note, with ESTALE, is the note as it is now, so that the client can
	// show both versions.
	Note *Note
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted, user-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, EINTERNAL for anything that is not an
// *Error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error"
}
