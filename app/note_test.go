package app

import (
	"strings"
	"testing"
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
