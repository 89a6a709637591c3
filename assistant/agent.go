package assistant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"notesync/realtime"
)

// Defaults of the limits that are zero in Agent and Model.
const (
	DefaultMaxToolCalls = 20               // tool calls per message
	DefaultMaxRounds    = 6                // model calls per message
	DefaultTimeout      = 60 * time.Second // per model call
)

// keepAlive is how often an idle stream gets an SSE comment.
const keepAlive = 5 * time.Second

// Agent answers one message of one user. Its fields are read when Answer
// starts.
type Agent struct {
	Notes  Notes
	UserID int64
	// Model answers when its BaseURL is set; otherwise the built-in
	// planner does.
	Model Model
	// MaxToolCalls bounds the tool calls of one answer (0:
	// DefaultMaxToolCalls). A call over it is refused and the model told.
	MaxToolCalls int
	Logger       *slog.Logger // nil: slog.Default()
}

// Answer runs the agent on message and streams its events as the answer to
// r, with status 200: token, tool_call and tool_result as they happen, an
// error event if the agent failed, and done last (README "Assistant").
//
// The agent stops when the client goes away (the page's Cancel, a closed
// tab), seen as the request ending or as a failed write; a keep-alive
// comment every few seconds makes a write, and so a dead peer's error,
// happen even while the model is thinking. Answer returns once the agent
// has stopped.
func (a *Agent) Answer(w http.ResponseWriter, r *http.Request, message string) {
	realtime.WriteSSEHeader(w)
	em := &sseEmitter{w: w, rc: http.NewResponseController(w)}
	em.flush()

	ctx, stop := context.WithCancel(r.Context())
	em.onFail = stop
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		t := time.NewTicker(keepAlive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				em.comment("keep-alive")
			}
		}
	})
	run := &agentRun{
		tools:    &noteTools{notes: a.Notes, userID: a.UserID, request: newRequestID()},
		em:       em,
		maxCalls: orDefault(a.MaxToolCalls, DefaultMaxToolCalls),
	}
	var err error
	if a.Model.BaseURL == "" {
		err = runPlanner(ctx, message, run)
	} else {
		err = a.Model.run(ctx, message, run)
	}
	if ctx.Err() != nil {
		return // the client went away: nobody to tell
	}
	if err != nil {
		var ae *agentError
		if errors.As(err, &ae) {
			em.event("error", map[string]string{"error": ae.msg})
		} else {
			a.logger().Error("assistant", "user", a.UserID, "err", err)
			em.event("error", map[string]string{"error": "internal error"})
		}
	}
	em.event("done", struct{}{})
}

func (a *Agent) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// orDefault is v, or def when v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// agentError is an error whose message is plain and safe to show the user.
type agentError struct{ msg string }

func (e *agentError) Error() string { return e.msg }

func agentErrorf(format string, args ...any) error {
	return &agentError{msg: fmt.Sprintf(format, args...)}
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
