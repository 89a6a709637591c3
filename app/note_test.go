package app

import (
	"net/http"
	"strings"
	"testing"
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
		if ErrorStatus(err) != http.StatusBadRequest || !strings.Contains(ErrorMessage(err), c.want) {
			t.Errorf("%s %q: %d %q, want 400 saying %q", c.name, c.body, ErrorStatus(err), ErrorMessage(err), c.want)
		}
	}
	for _, body := range []string{"a", "\tindented\nand on two lines", "windows\r\nline breaks", "😀", "👩\u200d💻", "¡", "\u00a0x\u200b", "e\u0301"} {
		if err := ValidateNoteBody(body); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}
