package browsertest

import (
	"strings"
	"testing"
	"time"
)

// CheckEditsMerge runs the two-tab scenarios of docs/PROTOCOL.md §12 on
// tabs a and b of one user (see TwoTabs): both tabs edit one note, a the
// first line and b the last, and after both save each tab shows both
// lines, with no conflict to settle; when both change the same line, the
// second save shows §6's conflict view as before.
func CheckEditsMerge(t *testing.T, a, b *Tab) {
	t.Run("edits of different lines both stand, in both tabs, with no conflict", func(t *testing.T) { checkMerge(t, a, b) })
	t.Run("edits of the same line show the conflict", func(t *testing.T) { checkSameLine(t, a, b) })
}

const mergeBase = "Shopping list\nmilk\neggs\nbread"

// editBoth has a and b open the editor of a new note each and type their
// text, then a saves and b waits for a's text to show beside its editor.
func editBoth(t *testing.T, a, b *Tab, textA, textB string) int64 {
	t.Helper()
	id := CreateNote(t, b, mergeBase).ID
	a.WaitFor(t, 5*time.Second, "the new note", HasNote(id))
	a.EditNote(t, id, textA)
	b.EditNote(t, id, textB)
	a.SaveNote(t, id)
	b.WaitNote(t, id, 5*time.Second, "note-changed-elsewhere with A's text", func(s NoteState) bool {
		return s.Has("note-changed-elsewhere") && s.Body == textA
	})
	return id
}

func checkMerge(t *testing.T, a, b *Tab) {
	textA := "Shopping list for Saturday\nmilk\neggs\nbread"
	textB := "Shopping list\nmilk\neggs\nbread and butter"
	merged := "Shopping list for Saturday\nmilk\neggs\nbread and butter"
	id := editBoth(t, a, b, textA, textB)

	b.ClickNote(t, id, "edit-save")
	s := b.WaitNote(t, id, 10*time.Second, "the save to merge", func(s NoteState) bool {
		if s.Buttons["keep-mine"] != "" || s.Buttons["take-theirs"] != "" {
			t.Fatalf("%s: a save of other lines shows the conflict: %+v", b.Name, s)
		}
		return !s.Editing
	})
	if s.Body != merged || s.Rev != 3 || s.Has("note-conflict") {
		t.Fatalf("%s after its save: %+v; want %q at rev 3", b.Name, s, merged)
	}
	if msg := Eval[string](t, b, `document.querySelector(`+JSString(NoteSelector(id)+" .note-message.note-info")+`)?.textContent || ''`); !strings.Contains(msg, "together with a change made elsewhere") {
		t.Errorf("%s: the merged note says %q beside it, want that it was saved with a change made elsewhere", b.Name, msg)
	}
	a.WaitNote(t, id, 5*time.Second, "the merged text", func(s NoteState) bool { return s.Body == merged && s.Rev == 3 })
	if _, body, rev := a.ServerNote(t, id); body != merged || rev != 3 {
		t.Fatalf("the server holds %q at rev %d, want %q at rev 3", body, rev, merged)
	}
}

func checkSameLine(t *testing.T, a, b *Tab) {
	textA := strings.Replace(mergeBase, "eggs", "six eggs", 1)
	textB := strings.Replace(mergeBase, "eggs", "a dozen eggs", 1)
	id := editBoth(t, a, b, textA, textB)

	b.ClickNote(t, id, "edit-save")
	s := b.WaitNote(t, id, 10*time.Second, "the conflict", func(s NoteState) bool {
		return s.Buttons["keep-mine"] != "" && s.Buttons["take-theirs"] != ""
	})
	if s.Body != textA || s.Draft != textB {
		t.Fatalf("%s: the conflict does not show both texts: %+v", b.Name, s)
	}
	if _, body, rev := b.ServerNote(t, id); body != textA || rev != 2 {
		t.Fatalf("the refused save changed the note: %q at rev %d", body, rev)
	}
	b.ClickNote(t, id, "take-theirs")
	b.WaitNote(t, id, 5*time.Second, "take-theirs to close the editor", func(s NoteState) bool { return !s.Editing })
}

// CheckEditorKeepsWhatIsTyped checks, in one tab, that nothing typed in a
// note's editor is dropped without asking (docs/PROTOCOL.md §12): Escape
// closes an editor whose text is unchanged, and asks inline first when it
// changed; and that what went wrong with a save shows beside its note, the
// messages of several notes at once.
func CheckEditorKeepsWhatIsTyped(t *testing.T, tab *Tab) {
	t.Run("Escape asks before it drops typed text", func(t *testing.T) { checkEscape(t, tab) })
	t.Run("errors show beside their notes, several at once", func(t *testing.T) { checkNoteErrors(t, tab) })
}

func checkEscape(t *testing.T, tab *Tab) {
	id := CreateNote(t, tab, "Water the plants").ID
	tab.WaitFor(t, 5*time.Second, "the new note", HasNote(id))
	asking := `!!document.querySelector(` + JSString(NoteSelector(id)+" .edit-confirm") + `)`

	tab.ClickNote(t, id, "edit")
	tab.WaitNote(t, id, 5*time.Second, "the editor to open", func(s NoteState) bool { return s.Editing })
	tab.Press(t, KeyEscape)
	tab.WaitNote(t, id, 5*time.Second, "Escape to close an unchanged editor", func(s NoteState) bool { return !s.Editing })

	tab.EditNote(t, id, "Water the plants and the garden")
	tab.Exec(t, `document.querySelector(`+JSString(NoteSelector(id)+" .note-edit textarea")+`).focus()`)
	tab.Press(t, KeyEscape)
	s := tab.WaitNote(t, id, 5*time.Second, "Escape to ask", func(s NoteState) bool {
		return s.Buttons["discard"] != "" && s.Buttons["keep-editing"] != ""
	})
	if !s.Editing || s.Draft != "Water the plants and the garden" {
		t.Fatalf("%s: Escape with typed text: %+v", tab.Name, s)
	}
	checkDistinctNames(t, tab.Name, s.Buttons)
	if f := tab.Focus(t); !strings.Contains(f, "keep-editing") {
		t.Errorf("%s: the question has the focus on %s, want Keep editing", tab.Name, f)
	}
	CheckAccessibility(t, tab, "the question before typed text is dropped")
	tab.Press(t, KeyEscape) // a second Escape keeps editing
	tab.WaitFor(t, 5*time.Second, "the question to go", `!`+asking)
	if s := tab.Note(t, id); !s.Editing || s.Draft != "Water the plants and the garden" {
		t.Fatalf("%s: keep editing: %+v", tab.Name, s)
	}
	tab.Press(t, KeyEscape)
	tab.WaitFor(t, 5*time.Second, "the question", asking)
	tab.ClickNote(t, id, "discard")
	s = tab.WaitNote(t, id, 5*time.Second, "discard to close the editor", func(s NoteState) bool { return !s.Editing })
	if s.Body != "Water the plants" {
		t.Fatalf("%s: after discard the note shows %q", tab.Name, s.Body)
	}
}

func checkNoteErrors(t *testing.T, tab *Tab) {
	var ids []int64
	for _, body := range []string{"First note", "Second note"} {
		id := CreateNote(t, tab, body).ID
		tab.WaitFor(t, 5*time.Second, "the new note", HasNote(id))
		ids = append(ids, id)
	}
	// A control character is refused by the server (400), with words.
	for _, id := range ids {
		tab.EditNote(t, id, "Refused \u0001 text")
		tab.ClickNote(t, id, "edit-save")
	}
	for _, id := range ids {
		sel := JSString(NoteSelector(id) + " .note-message.note-error")
		tab.WaitFor(t, 10*time.Second, "the error beside the note", `!!document.querySelector(`+sel+`)`)
		if msg := Eval[string](t, tab, `document.querySelector(`+sel+`).textContent`); !strings.Contains(msg, "control character") {
			t.Errorf("%s: note %d says %q beside it", tab.Name, id, msg)
		}
		if s := tab.Note(t, id); !s.Editing || s.Draft != "Refused \u0001 text" {
			t.Errorf("%s: note %d after the refused save: %+v", tab.Name, id, s)
		}
	}
	CheckAccessibility(t, tab, "two notes with an error each")
	if Eval[bool](t, tab, `!document.querySelector('#note-error').hidden`) {
		t.Errorf("%s: the note form shows an error that is about an edit", tab.Name)
	}
	tab.Type(t, ids[0], "First note, fixed")
	tab.SaveNote(t, ids[0])
	tab.WaitFor(t, 5*time.Second, "the first note's error to go", `!document.querySelector(`+JSString(NoteSelector(ids[0])+" .note-message")+`)`)
	if !Eval[bool](t, tab, `!!document.querySelector(`+JSString(NoteSelector(ids[1])+" .note-message.note-error")+`)`) {
		t.Errorf("%s: the second note's error went with the first's", tab.Name)
	}
}
