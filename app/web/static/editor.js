// notesync: a note's editor, and what it shows when the note changes
// elsewhere meanwhile (docs/PROTOCOL.md §6, §12).
//
// Every edit names the revision it was made against (If-Match), so that
// nothing typed or saved elsewhere is overwritten unseen: the server
// merges a save over a newer revision that changed other lines, and one
// that changed the same lines shows both texts and lets the user choose;
// a note deleted elsewhere keeps its editor with "Save as a new note".
// Nothing typed is dropped without asking: Escape in an editor whose text
// changed asks first, inline. What went wrong with a save shows beside
// its note.

import { notesync, toVersion, parseJSON, nl } from './page.js';
import { send, viaFetch, ifMatch, beginOwnWrite, failure, newIdempotencyKey } from './write.js';
import { offline, mustQueue, queueEdit } from './queue.js';
import { checkSessionThenEnd } from './transport.js';
import { ownCreated, ownEdits, gone, refreshTo, flash, fadeOutAndRemove } from './list.js';
import {
  noteId, noteRev, isEditing, applyNote, clampNote, labelNote, button, setNotice, markDeletedElsewhere, showNoteMessage,
} from './note.js';
import { editorOpened, editorClosed } from './presence.js';

export function openEditor(li) {
  if (isEditing(li) || li.classList.contains('note-leaving')) return;
  const bodyEl = li.querySelector('.note-body');
  if (!bodyEl) return;

  const form = document.createElement('form');
  form.className = 'note-edit';
  form.dataset.baseRev = String(noteRev(li));
  form.dataset.baseBody = bodyEl.textContent;
  const notice = document.createElement('p');
  notice.className = 'edit-notice';
  notice.setAttribute('role', 'status');
  notice.tabIndex = -1;
  notice.hidden = true;
  const ta = document.createElement('textarea');
  ta.name = 'body';
  ta.required = true;
  ta.maxLength = 10000;
  ta.value = bodyEl.textContent;
  ta.rows = Math.min(12, Math.max(3, ta.value.split('\n').length + 1));
  const row = document.createElement('div');
  row.className = 'form-row';
  row.append(button('edit-save', 'Save', true), button('edit-cancel', 'Cancel'));
  form.append(notice, ta, row);
  ta.addEventListener('input', () => form.querySelector('.edit-confirm')?.remove());

  form.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.preventDefault(); escapeEditor(li, form); }
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (li.classList.contains('note-conflict')) keepMine(li);
    else if (li.classList.contains('note-deleted-elsewhere')) saveAsNew(li);
    else saveEdit(li, form, ta.value);
  });

  li.classList.add('editing');
  bodyEl.after(form);
  labelNote(li);
  ta.focus();
  editorOpened(noteId(li));
}

// escapeEditor closes the editor on Escape when its text is as it
// opened; when the text changed it asks first, inline: p.edit-confirm
// with [data-action=keep-editing] (focused, and what a second Escape
// does) and [data-action=discard].
function escapeEditor(li, form) {
  if (form.querySelector('.edit-confirm')) { keepEditing(form); return; }
  if (nl(form.querySelector('textarea').value) === nl(form.dataset.baseBody)) { closeEditor(li); return; }
  const ask = document.createElement('p');
  ask.className = 'edit-confirm';
  ask.setAttribute('role', 'alert');
  const keep = button('keep-editing', 'Keep editing', true);
  const discard = button('discard', 'Discard my changes');
  keep.addEventListener('click', () => keepEditing(form));
  discard.addEventListener('click', () => closeEditor(li));
  const row = document.createElement('span');
  row.className = 'notice-actions';
  row.append(keep, discard);
  ask.append('Discard what you typed in this note?', row);
  form.querySelector('.form-row').before(ask);
  labelNote(li);
  keep.focus();
}

function keepEditing(form) {
  form.querySelector('.edit-confirm')?.remove();
  form.querySelector('textarea').focus();
}

// closeEditor drops the editor (and what was typed in it), and what its
// saves' failures said. A note that was deleted elsewhere goes with it.
export function closeEditor(li) {
  const form = li.querySelector('.note-edit');
  if (form) form.remove();
  showNoteMessage(li, '');
  editorClosed(noteId(li));
  li.classList.remove('editing', 'note-changed-elsewhere', 'note-conflict');
  if (li.classList.contains('note-deleted-elsewhere')) {
    gone.set(noteId(li), notesync.version);
    fadeOutAndRemove(li);
    return;
  }
  clampNote(li);
  li.querySelector('button[data-action="edit"]')?.focus();
}

// showConflict: the save was refused because the note is at a newer
// revision. Both texts are shown, theirs as the note and the user's in
// the editor, and the user chooses.
function showConflict(li, note) {
  applyNote(li, note);
  li.classList.add('note-changed-elsewhere', 'note-conflict');
  const form = li.querySelector('.note-edit');
  form.dataset.theirRev = String(note.rev);
  setNotice(li, 'This note was changed elsewhere before you saved. Its new text is shown above, yours below. ',
    [button('keep-mine', 'Keep my text', true), button('take-theirs', 'Take the other text')]);
  form.querySelector('.edit-notice').focus();
}

// sendFromEditor sends a write of the editor's text with its controls
// disabled meanwhile, as one of the tab's own writes, and hands the
// answer and its JSON to then.
async function sendFromEditor(form, attempt, then) {
  const controls = form.querySelectorAll('button, textarea');
  controls.forEach((c) => { c.disabled = true; });
  const done = beginOwnWrite();
  try {
    const res = await send(attempt);
    const data = res ? parseJSON(await res.text()) || {} : {};
    controls.forEach((c) => { c.disabled = false; });
    then(res, data);
  } finally {
    done();
  }
}

function saveEdit(li, form, body, rev = Number(form.dataset.baseRev)) {
  const id = noteId(li);
  const bodyEl = li.querySelector('.note-body');
  const unchanged = body === form.dataset.baseBody && !li.classList.contains('note-conflict');
  if (unchanged || (bodyEl && bodyEl.textContent === body && noteRev(li) === rev)) { closeEditor(li); return; }
  // Offline, or behind writes of this note that wait: the edit waits too.
  if (mustQueue(id)) { queueEdit(id, body, rev); closeEditor(li); return; }
  ownEdits.set(id, body);
  const key = newIdempotencyKey();
  const attempt = viaFetch('PATCH', `/api/notes/${encodeURIComponent(id)}`, { json: { body }, headers: ifMatch(rev) });
  return sendFromEditor(form, attempt, (res, data) => {
    if (!res && offline()) {
      ownEdits.delete(id);
      queueEdit(id, body, rev, key);
      closeEditor(li);
      return;
    }
    if (res && res.ok && data.note) {
      ownEdits.set(id, data.note.body);
      applyNote(li, data.note); // no flash for our own edit, unless merged
      closeEditor(li);
      if (data.merged) {
        flash(li);
        showNoteMessage(li, 'Saved, together with a change made elsewhere to other lines of this note.', 'info');
      }
      refreshTo(toVersion(data.version));
      return;
    }
    ownEdits.delete(id);
    if (res && res.status === 412 && data.note) { showConflict(li, data.note); return; }
    if (res && res.status === 404) { markDeletedElsewhere(li); return; }
    showNoteMessage(li, failure('your changes were not saved; they are still in the editor', res, data).text);
    if (res && res.status === 401) checkSessionThenEnd();
  }, key);
}

// keepMine saves the typed text over the revision the conflict showed.
export function keepMine(li) {
  const form = li.querySelector('.note-edit');
  if (!form) return;
  const rev = Number(form.dataset.theirRev || form.dataset.baseRev);
  form.dataset.baseRev = String(rev);
  saveEdit(li, form, form.querySelector('textarea').value, rev);
}

// saveAsNew keeps the text of a note deleted elsewhere as a new note.
export function saveAsNew(li) {
  const form = li.querySelector('.note-edit');
  if (!form) return;
  const body = form.querySelector('textarea').value;
  return sendFromEditor(form, viaFetch('POST', '/api/notes', { json: { body } }), (res, data) => {
    if (res && res.status === 201 && data.note) {
      ownCreated.add(String(data.note.id));
      gone.set(noteId(li), notesync.version);
      li.remove();
      refreshTo(toVersion(data.version));
      return;
    }
    showNoteMessage(li, failure('your text was not saved as a note; it is still in the editor', res, data).text);
    if (res && res.status === 401) checkSessionThenEnd();
  });
}
