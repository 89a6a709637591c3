package realtime

import (
	"net/http"
	"strconv"
)

// Server-Sent Events framing (the text/event-stream format) in one place:
// ServeSSE writes its stream with it, and so does any other stream of the
// service (the assistant's answer to POST /api/assistant).

// WriteSSEHeader starts a text/event-stream answer with status 200. It is
// never cached, and proxies that honour X-Accel-Buffering (nginx) pass each
// event on as soon as it is flushed.
func WriteSSEHeader(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// AppendSSEEvent appends one event to b and returns the extended buffer: an
// "event:" line when event is not empty, one "data:" line, an "id:" line
// when id is positive, and the blank line that ends the event. data must
// not hold a line break (JSON from encoding/json never does). Appending to
// a bufio.Writer's AvailableBuffer frames an event without a copy.
func AppendSSEEvent(b []byte, event string, data []byte, id int64) []byte {
	return appendSSEEvent(b, event, data, id, "")
}

// appendSSEEvent is AppendSSEEvent with change, when not empty, after the
// id: "id: 12.<change>" (Message.Change).
func appendSSEEvent(b []byte, event string, data []byte, id int64, change string) []byte {
	if event != "" {
		b = append(b, "event: "...)
		b = append(b, event...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	b = append(b, '\n')
	if id > 0 {
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, id, 10)
		if change != "" {
			b = append(b, '.')
			b = append(b, change...)
		}
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// AppendSSEComment appends a comment, which clients ignore: written to an
// idle stream, it keeps proxies from timing the stream out and makes a
// dead peer's error show.
func AppendSSEComment(b []byte, text string) []byte {
	b = append(b, ": "...)
	b = append(b, text...)
	return append(b, "\n\n"...)
}
