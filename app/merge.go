package app

import (
	"strings"

	"github.com/aymanbagabas/go-udiff"
)

// MergeLines merges two edits of one text made from the same base, line by
// line, as diff3 does (docs/PROTOCOL.md §12): theirs is the text saved
// meanwhile, mine the text of the edit that started from base. It reports
// false, and no text, when both changed the same lines differently: that
// is for a person to settle.
//
// What each side changed is its line diff against base. Changes to
// different lines both stand; the same change made on both sides is made
// once, so a merge of an edit with itself is that edit; a line that both
// sides left in place stays; lines both sides inserted at the same place
// are all kept, theirs first, as nothing of either is replaced.
//
// The diffs and the merge of their edits are go-udiff's (Go's own gopls
// diff, made public): Myers' algorithm with a bounded search, so a very
// different pair of texts may get a longer diff than the shortest, which
// can make a conflict of what could have merged, never a wrong merge.
func MergeLines(base, theirs, mine string) (string, bool) {
	if theirs == mine || base == mine {
		return theirs, true
	}
	if base == theirs {
		return mine, true
	}
	// Every line, the last one too, ends in a newline while merging, so
	// that a line added after a last line without one is an insertion
	// rather than a change of that line.
	base, theirs, mine = base+"\n", theirs+"\n", mine+"\n"
	edits, ok := udiff.Merge(udiff.Lines(base, theirs), udiff.Lines(base, mine))
	if !ok {
		return "", false
	}
	merged, err := udiff.Apply(base, edits)
	if err != nil {
		return "", false
	}
	return strings.TrimSuffix(merged, "\n"), true
}
