package realtime

import (
	"bufio"
	"bytes"
	"testing"
)

func TestSSEFraming(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"event, data and id", AppendSSEEvent(nil, "note_changed", []byte(`{"version":7}`), 7),
			"event: note_changed\ndata: {\"version\":7}\nid: 7\n\n"},
		{"no event name: the client sees a message event", AppendSSEEvent(nil, "", []byte(`{}`), 3),
			"data: {}\nid: 3\n\n"},
		{"no id", AppendSSEEvent(nil, "token", []byte(`{"text":"hi"}`), 0),
			"event: token\ndata: {\"text\":\"hi\"}\n\n"},
		{"appended after what the buffer holds", AppendSSEEvent([]byte("x"), "done", []byte(`{}`), 0),
			"xevent: done\ndata: {}\n\n"},
		{"comment", AppendSSEComment(nil, "ping"), ": ping\n\n"},
	} {
		if got := string(c.frame); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	t.Run("into a bufio.Writer's free space, across its end", func(t *testing.T) {
		var out bytes.Buffer
		w := bufio.NewWriterSize(&out, 16)
		w.WriteString("0123456789")
		w.Write(AppendSSEEvent(w.AvailableBuffer(), "token", []byte(`{"text":"longer than the buffer"}`), 12))
		w.Flush()
		if got, want := out.String(), "0123456789event: token\ndata: {\"text\":\"longer than the buffer\"}\nid: 12\n\n"; got != want {
			t.Fatalf("%q, want %q", got, want)
		}
	})
}
