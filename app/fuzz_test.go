package app

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadNoteWrite feeds arbitrary bodies and content types to the note
// input parser: it must never panic, and whatever it accepts is a valid note
// body.
func FuzzReadNoteWrite(f *testing.F) {
	seeds := []struct{ ct, body string }{
		{"application/json", `{"body":"hello"}`},
		{"application/json", `{"body":""}`},
		{"application/json", `{"body":"a\u0000b"}`},
		{"application/json", "{\"body\":\"\xff\"}"},
		{"application/json", `{"body":"\ud800"}`},
		{"application/json", `{"body":"x"} trailing`},
		{"application/json; charset=utf-8", `{"body":"<script>alert(1)</script>"}`},
		{"application/x-www-form-urlencoded", "body=hi%20there"},
		{"application/x-www-form-urlencoded", "body=%ff"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nhi\r\n--x--\r\n"},
		{"text/plain", "body"},
		{"", ""},
		{"application/json", `{"body":"` + strings.Repeat("é", 10001) + `"}`},
		{"application/json", `{"body":" \n\t "}`},
		{"application/x-www-form-urlencoded", "body=%20%0D%0A"},
	}
	for _, s := range seeds {
		f.Add(s.ct, s.body)
	}
	f.Fuzz(func(t *testing.T, ct, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/notes", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		got, _, err := readNoteWrite(httptest.NewRecorder(), req)
		if err != nil {
			if s := ErrorStatus(err); s < 400 || s >= 500 {
				t.Fatalf("input error mapped to %d: %v", s, err)
			}
			return
		}
		if !utf8.ValidString(got) || strings.TrimSpace(got) == "" || utf8.RuneCountInString(got) > MaxNoteChars {
			t.Fatalf("accepted an invalid body %q", got)
		}
	})
}

func FuzzValidateNoteBody(f *testing.F) {
	for _, s := range []string{"", "a", "\xff", strings.Repeat("a", 10000), strings.Repeat("a", 10001), "日本語", " \n\t ", "\u00a0\u2003", " a "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateNoteBody(s)
		valid := utf8.ValidString(s) && strings.TrimSpace(s) != "" && utf8.RuneCountInString(s) <= MaxNoteChars
		if (err == nil) != valid {
			t.Fatalf("%q: err=%v, valid=%v", s, err, valid)
		}
	})
}

// FuzzParseIfMatch: any header either parses or is EINVALID, never panics;
// what it allows round-trips through etag; and a revision written by etag
// is always allowed.
func FuzzParseIfMatch(f *testing.F) {
	for _, s := range []string{`"1"`, `*`, `W/"2"`, `"1", "2"`, `"a"`, `1`, `"1`, `"1" "2"`, `"1",`, ``, `,`, `"0"`, `"-1"`, `"01"`, "\"\x7f\"", `W/`, `"9223372036854775808"`} {
		f.Add(s, int64(3))
	}
	f.Fuzz(func(t *testing.T, h string, rev int64) {
		revs, err := parseIfMatch([]string{h})
		if err != nil {
			if ErrorCode(err) != EINVALID {
				t.Fatalf("%q: error %v is not EINVALID", h, err)
			}
			return
		}
		if len(revs) > 0 {
			var tags []string
			for _, r := range revs {
				if r < 0 {
					t.Fatalf("%q: negative revision %d", h, r)
				}
				tags = append(tags, etag(r))
			}
			again, err := parseIfMatch([]string{strings.Join(tags, ", ")})
			if err != nil || !slices.Equal(again, revs) && !(len(revs) == 1 && revs[0] == 0) {
				t.Fatalf("%q: %v does not round-trip: %v %v", h, revs, again, err)
			}
		}
		if rev > 0 {
			got, err := parseIfMatch([]string{h + ", " + etag(rev)})
			if err == nil && !got.allow(rev) {
				t.Fatalf("%q + %s: revision %d not allowed (%v)", h, etag(rev), rev, got)
			}
		}
	})
}
