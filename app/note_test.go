package app

import (
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
