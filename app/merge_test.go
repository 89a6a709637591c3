package app

import (
	"strings"
	"testing"

	"github.com/aymanbagabas/go-udiff"
)

func TestMergeLines(t *testing.T) {
	const base = "one\ntwo\nthree\nfour"
	for _, c := range []struct {
		name, theirs, mine, want string
		conflict                 bool
	}{
		{name: "changes to the first and the last line both stand",
			theirs: "ONE\ntwo\nthree\nfour", mine: "one\ntwo\nthree\nFOUR", want: "ONE\ntwo\nthree\nFOUR"},
		{name: "changes to neighbouring lines both stand",
			theirs: "one\nTWO\nthree\nfour", mine: "one\ntwo\nTHREE\nfour", want: "one\nTWO\nTHREE\nfour"},
		{name: "a line added at the end and a line changed at the start",
			theirs: "one\ntwo\nthree\nfour\nfive", mine: "ONE\ntwo\nthree\nfour", want: "ONE\ntwo\nthree\nfour\nfive"},
		{name: "a line deleted and another changed",
			theirs: "one\nthree\nfour", mine: "one\ntwo\nthree\nFOUR", want: "one\nthree\nFOUR"},
		{name: "the same change on both sides is made once",
			theirs: "one\nTWO\nthree\nfour", mine: "one\nTWO\nthree\nFOUR", want: "one\nTWO\nthree\nFOUR"},
		{name: "lines added at the same place are all kept, theirs first",
			theirs: "one\ntwo\nthree\nfour\nfrom them", mine: "one\ntwo\nthree\nfour\nfrom me", want: "one\ntwo\nthree\nfour\nfrom them\nfrom me"},
		{name: "only mine changed", theirs: base, mine: "one\ntwo\n3\nfour", want: "one\ntwo\n3\nfour"},
		{name: "only theirs changed", theirs: "1\ntwo\nthree\nfour", mine: base, want: "1\ntwo\nthree\nfour"},
		{name: "the same line changed differently conflicts",
			theirs: "one\nTWO\nthree\nfour", mine: "one\n2\nthree\nfour", conflict: true},
		{name: "a line changed on one side and deleted on the other conflicts",
			theirs: "one\nthree\nfour", mine: "one\n2\nthree\nfour", conflict: true},
		{name: "overlapping changes conflict",
			theirs: "one\nTWO\nTHREE\nfour", mine: "one\ntwo\n3\n4", conflict: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := MergeLines(base, c.theirs, c.mine)
			if c.conflict {
				if ok {
					t.Fatalf("merged to %q, want a conflict", got)
				}
				return
			}
			if !ok {
				t.Fatalf("a conflict, want %q", c.want)
			}
			if got != c.want {
				t.Fatalf("merged to %q, want %q", got, c.want)
			}
		})
	}
}

// FuzzMerge checks what a merge promises whatever the texts: a merge of
// an edit with itself is that edit, a merge with an unchanged side is the
// other side, and a line that both sides left in place is never dropped.
func FuzzMerge(f *testing.F) {
	f.Add("one\ntwo\nthree", "ONE\ntwo\nthree", "one\ntwo\nTHREE")
	f.Add("a\nb\nc\nd", "a\nc\nd", "a\nb\nc\nd\ne")
	f.Add("", "x", "y")
	f.Add("a\n\nb\n", "a\n\nb\n\n", "\na\n\nb\n")
	f.Add("x\nx\nx", "x\ny\nx", "x\nx\nz")
	f.Fuzz(func(t *testing.T, base, theirs, mine string) {
		if got, ok := MergeLines(base, mine, mine); !ok || got != mine {
			t.Fatalf("merge of an edit with itself: %q, %v; want %q", got, ok, mine)
		}
		if got, ok := MergeLines(base, base, mine); !ok || got != mine {
			t.Fatalf("merge with theirs unchanged: %q, %v; want %q", got, ok, mine)
		}
		if got, ok := MergeLines(base, theirs, base); !ok || got != theirs {
			t.Fatalf("merge with mine unchanged: %q, %v; want %q", got, ok, theirs)
		}
		merged, ok := MergeLines(base, theirs, mine)
		if !ok {
			return
		}
		kept := keptByBoth(base, theirs, mine)
		if !isSubsequence(kept, strings.SplitAfter(merged+"\n", "\n")) {
			t.Fatalf("merge %q of %q and %q from %q drops some of the lines both kept: %q", merged, theirs, mine, base, kept)
		}
	})
}

// keptByBoth lists the lines of base, in order, that neither side's line
// diff touches (every line ending in a newline, as MergeLines sees them).
func keptByBoth(base, theirs, mine string) []string {
	base, theirs, mine = base+"\n", theirs+"\n", mine+"\n"
	touched := make([]bool, len(base))
	for _, side := range []string{theirs, mine} {
		for _, e := range udiff.Lines(base, side) {
			for i := e.Start; i < e.End; i++ {
				touched[i] = true
			}
		}
	}
	var kept []string
	at := 0
	for _, line := range strings.SplitAfter(base, "\n") {
		if line != "" && !touched[at] {
			kept = append(kept, line)
		}
		at += len(line)
	}
	return kept
}

// isSubsequence reports whether every line of sub appears in lines, in
// the same order.
func isSubsequence(sub, lines []string) bool {
	i := 0
	for _, l := range lines {
		if i < len(sub) && l == sub[i] {
			i++
		}
	}
	return i == len(sub)
}
