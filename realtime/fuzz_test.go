package realtime

import (
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"
)

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"ping", "PING", "ping ", "", "pong", `{"type":"ping"}`, "\xff\xfe", "caf\xe9", "\xed\xa0\x80"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, p string, text bool) {
		typ := websocket.MessageBinary
		if text {
			typ = websocket.MessageText
		}
		got := classify(typ, []byte(p))
		switch {
		case !text && got != clientBinary:
			t.Fatalf("binary %q classified %v", p, got)
		case text && p == "ping" && got != clientPing:
			t.Fatalf("ping classified %v", got)
		case text && !utf8.ValidString(p) && got != clientInvalidUTF8:
			t.Fatalf("invalid UTF-8 %q classified %v", p, got)
		case text && p != "ping" && utf8.ValidString(p) && got != clientText:
			t.Fatalf("text %q classified %v", p, got)
		}
	})
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"", "0", "42", "-1", "abc", "9223372036854775807", "9223372036854775808", "1e3", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseResume(s, "", "")
		v, ok := r.since, r.has
		want, perr := strconv.ParseInt(s, 10, 64)
		switch {
		case s == "":
			if ok || err != nil {
				t.Fatalf("empty since: ok=%v err=%v", ok, err)
			}
		case perr != nil || want < 0:
			if err == nil {
				t.Fatalf("%q accepted as %d", s, v)
			}
		default:
			if err != nil || !ok || v != want {
				t.Fatalf("%q: got %d %v %v, want %d", s, v, ok, err, want)
			}
		}
	})
}
