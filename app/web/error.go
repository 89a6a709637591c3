package web

import (
	"errors"
	"net/http"
	"strconv"

	"notesync/app"
)

var codeStatus = map[string]int{
	app.EINVALID:       http.StatusBadRequest,
	app.EUNAUTHORIZED:  http.StatusUnauthorized,
	app.EFORBIDDEN:     http.StatusForbidden,
	app.ENOTFOUND:      http.StatusNotFound,
	app.ECONFLICT:      http.StatusConflict,
	app.ETOOMANY:       http.StatusTooManyRequests,
	app.EUNAVAILABLE:   http.StatusServiceUnavailable,
	app.EINTERNAL:      http.StatusInternalServerError,
	app.EUNSUPPORTED:   http.StatusUnsupportedMediaType,
	app.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	app.ETIMEOUT:       http.StatusRequestTimeout,
	app.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	app.ESTALE:         http.StatusPreconditionFailed,
	app.EUNCONFIRMED:   http.StatusGatewayTimeout,
}

// setErrorHeaders sets the headers that go with an error answer:
// Retry-After, and Connection: close after a body that did not arrive (the
// rest of it may still be on its way).
func setErrorHeaders(w http.ResponseWriter, err error) {
	var e *app.Error
	if !errors.As(err, &e) {
		return
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Code == app.ETIMEOUT {
		w.Header().Set("Connection", "close")
	}
}

// ErrorStatus maps err to its HTTP status: the one place where domain errors
// become HTTP answers.
func ErrorStatus(err error) int {
	if s, ok := codeStatus[app.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}
