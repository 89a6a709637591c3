package assistant

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"

	"notesync/realtime"
)

// sseEmitter writes the agent's Server-Sent Events and flushes each one.
// It is safe for concurrent use (the agent and the keep-alive). A failed
// write (the client is gone) calls onFail, and nothing more is written.
type sseEmitter struct {
	mu     sync.Mutex
	w      io.Writer
	rc     *http.ResponseController // nil: nothing to flush
	onFail func()
	failed bool
}

func (e *sseEmitter) flush() {
	if e.rc != nil {
		if err := e.rc.Flush(); err != nil {
			e.fail()
		}
	}
}

func (e *sseEmitter) fail() {
	if !e.failed && e.onFail != nil {
		e.onFail()
	}
	e.failed = true
}

func (e *sseEmitter) write(frame []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed {
		return
	}
	if _, err := e.w.Write(frame); err != nil {
		e.fail()
		return
	}
	e.flush()
}

// event writes an event whose data is v as JSON.
func (e *sseEmitter) event(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte(`{}`)
	}
	e.write(realtime.AppendSSEEvent(nil, name, data, 0))
}

// comment writes an SSE comment, which clients ignore: a keep-alive.
func (e *sseEmitter) comment(text string) { e.write(realtime.AppendSSEComment(nil, text)) }

// token streams a piece of the answer text.
func (e *sseEmitter) token(text string) {
	if text != "" {
		e.event("token", map[string]string{"text": text})
	}
}
