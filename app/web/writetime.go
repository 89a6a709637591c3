package web

import (
	"net/http"
	"time"
)

// WriteTimeout is how long a node spends writing an answer that is not a
// stream before it gives up on the client and closes its connection
// (docs/PROTOCOL.md §8).
const WriteTimeout = 60 * time.Second

// WriteWithin returns next with a deadline on every answer that is not a
// stream: an answer that has not been written within d of its request
// reaching the node fails to write, the handler ends and the connection
// is closed, so that a client that never reads cannot hold the answer's
// memory. http.Server's WriteTimeout would cut every stream short.
//
// Streams (/ws, /events, POST /api/assistant) set no deadline here; they
// bound each of their writes themselves. Their connection's deadline is
// lifted, in case an earlier answer on the same kept-alive connection set
// one.
func WriteWithin(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline := time.Now().Add(d)
		if Stream(r) {
			deadline = time.Time{}
		}
		_ = http.NewResponseController(w).SetWriteDeadline(deadline)
		next.ServeHTTP(w, r)
	})
}

// Stream reports a request whose answer streams for as long as the client
// stays: the real-time endpoints and the Assistant's run.
func Stream(r *http.Request) bool {
	switch r.URL.Path {
	case "/ws", "/events":
		return r.Method == http.MethodGet
	case "/api/assistant":
		return r.Method == http.MethodPost
	}
	return false
}
