package web

import (
	"io"
	"net/http"
	"time"
)

// BodyTimeout is how long a request's body may take to arrive
// (docs/PROTOCOL.md §8).
const BodyTimeout = 10 * time.Second

// ReadBodyWithin returns next with a deadline on request bodies: a body that
// has not fully arrived within d of the request reaching the handler fails
// to read, which the handlers answer with 408 and by closing the connection
// (ETIMEOUT). http.Server's ReadHeaderTimeout covers headers only, and its
// ReadTimeout would cut every stream short.
//
// Requests without a body (WebSocket and SSE among them) are untouched.
// Once a body has been read to its end the deadline is lifted, so that an
// answer may take as long as it needs (a streamed one).
func ReadBodyWithin(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(d)) == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body has been read.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// The server now reads the connection in the background to notice a
		// client that goes away; that read must not time out.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
