package app

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestValidateNoteBodySaysWhatHappenedAndWhatToDo(t *testing.T) {
	for _, c := range []struct {
		body, want string
	}{
		{"", "The note is empty: write something in it."},
		{strings.Repeat("é", MaxNoteChars+1), "The note is 10,001 characters long; the limit is 10,000. Shorten it by 1 to save it."},
		{strings.Repeat("a", 1234567), "The note is 1,234,567 characters long; the limit is 10,000. Shorten it by 1,224,567 to save it."},
	} {
		if got := ErrorMessage(ValidateNoteBody(c.body)); got != c.want {
			t.Errorf("a body of %d characters: %q, want %q", len([]rune(c.body)), got, c.want)
		}
	}
	if err := ValidateNoteBody(strings.Repeat("é", MaxNoteChars)); err != nil {
		t.Errorf("a body of exactly %d characters: %v", MaxNoteChars, err)
	}
}

func TestValidateNoteBodyWantsSomethingVisible(t *testing.T) {
	for _, c := range []struct {
		name, body, want string
	}{
		{"zero-width spaces", "\u200b\u200b", "nothing visible"},
		{"a byte order mark", "\ufeff", "nothing visible"},
		{"a blank Braille pattern", "\u2800", "nothing visible"},
		{"a Hangul filler between spaces", " \u3164 ", "nothing visible"},
		{"a NUL", "\u0000", "control character"},
		{"a NUL inside text", "a\u0000b", "control character"},
		{"an escape sequence", "\x1b[31mred", "control character"},
		{"a C1 control", "a\u0085b", "control character"},
		{"a lone carriage return", "a\rb", "control character"},
	} {
		err := ValidateNoteBody(c.body)
		if ErrorCode(err) != EINVALID || !strings.Contains(ErrorMessage(err), c.want) {
			t.Errorf("%s %q: %s %q, want %s saying %q", c.name, c.body, ErrorCode(err), ErrorMessage(err), EINVALID, c.want)
		}
	}
	for _, body := range []string{"a", "\tindented\nand on two lines", "windows\r\nline breaks", "😀", "👩\u200d💻", "¡", "\u00a0x\u200b", "e\u0301"} {
		if err := ValidateNoteBody(body); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}

// FuzzValidateNoteBody: an accepted body is valid UTF-8 of at most
// MaxNoteChars characters, has a letter, digit, punctuation or symbol, and
// no control character but tab and line breaks; a body of such characters
// with an ASCII letter or digit among them is accepted; a refusal is a 400
// with words (EINVALID: 400).
func FuzzValidateNoteBody(f *testing.F) {
	for _, s := range []string{"", "a", "\xff", strings.Repeat("a", 10000), strings.Repeat("a", 10001), "日本語", " \n\t ", "\u00a0\u2003", " a ",
		"\u200b\u200b", "\ufeff", "\u2800", "\u0000", "a\u0000", "a\r\nb", "a\rb", "\u3164", "\u0301", "👩\u200d💻"} {
		f.Add(s)
	}
	badControl := func(r rune) bool { return unicode.Is(unicode.Cc, r) && r != '\t' && r != '\n' }
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateNoteBody(s)
		shape := utf8.ValidString(s) && utf8.RuneCountInString(s) <= MaxNoteChars &&
			!strings.ContainsFunc(strings.ReplaceAll(s, "\r\n", "\n"), badControl)
		if err == nil {
			if !shape || !strings.ContainsFunc(s, func(r rune) bool { return unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S) }) {
				t.Fatalf("accepted %q", s)
			}
			return
		}
		if shape && strings.ContainsFunc(s, func(r rune) bool { return r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) }) {
			t.Fatalf("refused %q: %v", s, err)
		}
		if ErrorCode(err) != EINVALID || ErrorMessage(err) == "" {
			t.Fatalf("%q refused with %s %q", s, ErrorCode(err), ErrorMessage(err))
		}
	})
}
