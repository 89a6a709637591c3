// notesync: deleting a note, and bringing it back (docs/PROTOCOL.md §6).
//
// A delete names the revision it was made against (If-Match): a note
// changed elsewhere meanwhile is not deleted, and shows its new text. The
// tab that deleted offers Undo for UNDO_SHOW_MS (the server keeps a note
// restorable for 30 s), and the focus goes where the person types next.

import { $, notesync, toVersion, parseJSON, snippet } from './page.js';
import { send, viaFetch, ifMatch, failure, newIdempotencyKey } from './write.js';
import { offline, mustQueue, queueDelete } from './queue.js';
import { showNoteError } from './status.js';
import { checkSessionThenEnd } from './transport.js';
import { listEl, ownCreated, pendingDeletes, gone, refreshTo, flash, fadeOutAndRemove, LEAVE_MS } from './list.js';
import { noteId, noteRev, applyNote, button, showNoteMessage } from './note.js';

const UNDO_SHOW_MS = 15000;     // Undo after a delete (spec: at least 10 s; restorable for 30 s)
const FOCUS_WAIT_MS = 2500;     // how long a restored note's focus waits for it to show

const undoBar = $('#undo-bar');

export async function deleteNote(li) {
  const id = noteId(li);
  if (pendingDeletes.has(id) || li.dataset.removing || li.classList.contains('note-pending-delete')) return;
  // Offline, or behind writes of this note that wait: the delete waits too.
  if (mustQueue(id)) { queueDelete(id, noteRev(li)); return; }
  pendingDeletes.add(id);
  const hadFocus = li.contains(document.activeElement);
  const words = snippet(li.querySelector('.note-body')?.textContent);
  const startedAt = Date.now();
  li.classList.add('note-leaving'); // optimistic: start fading at once
  const key = newIdempotencyKey();
  const res = await send(viaFetch('DELETE', `/api/notes/${encodeURIComponent(id)}`, { headers: ifMatch(noteRev(li)) }), { key });
  if (!res && offline()) {
    pendingDeletes.delete(id);
    li.classList.remove('note-leaving');
    queueDelete(id, noteRev(li), key);
    return;
  }
  if (res && (res.status === 204 || res.status === 404 || res.ok)) {
    gone.set(id, toVersion(res.headers.get('X-Notes-Version')) ?? notesync.version);
    pendingDeletes.delete(id);
    showNoteError('');
    // The fade started at the click; keep the element LEAVE_MS in total.
    fadeOutAndRemove(li, Math.max(0, LEAVE_MS - (Date.now() - startedAt)));
    if (res.status !== 404) offerUndo(id, words, hadFocus);
    return;
  }
  pendingDeletes.delete(id);
  li.classList.remove('note-leaving');
  if (res && res.status === 412) {
    const data = parseJSON(await res.text()) || {};
    if (data.note) { applyNote(li, data.note); flash(li); }
    showNoteMessage(li, 'This note was changed elsewhere, so it was not deleted. Its new text is shown; delete it again if you still want to.');
    return;
  }
  showNoteMessage(li, failure('the note was not deleted', res, res ? parseJSON(await res.text().catch(() => '')) || {} : {}).text);
  if (res && res.status === 401) checkSessionThenEnd();
}

// offerUndo shows Undo for a note this tab deleted, for UNDO_SHOW_MS.
function offerUndo(id, words, focus) {
  if (!undoBar) return;
  const item = document.createElement('p');
  item.className = 'undo-item';
  item.dataset.undoId = id;
  const undo = button('undo', 'Undo', true);
  undo.setAttribute('aria-label', `Undo deleting note: ${words}`);
  item.append(`Deleted “${words}”. `, undo);
  undoBar.append(item);
  undoBar.hidden = false;
  const timer = setTimeout(() => dropUndo(item), UNDO_SHOW_MS);
  undo.addEventListener('click', () => { clearTimeout(timer); undoDelete(id, item); });
  if (focus) undo.focus();
}

// dropUndo removes an Undo; the focus it had goes where the person will
// type next, or to the note it brought back (restoredId).
function dropUndo(item, restoredId = null, hadFocus = item.contains(document.activeElement)) {
  item.remove();
  undoBar.hidden = !undoBar.querySelector('.undo-item');
  if (!hadFocus) return;
  if (restoredId !== null) focusNoteWhenShown(restoredId);
  else focusTypingPlace();
}

// focusTypingPlace puts the focus where the person types next: the new
// note's textarea, or on a page without one the first note.
function focusTypingPlace() {
  const ta = $('#note-form')?.querySelector('textarea');
  if (ta) { ta.focus(); return; }
  listEl.querySelector(':scope > [data-note-id] button[data-action="edit"]')?.focus();
}

// focusNoteWhenShown focuses note id's Edit as soon as the list shows it
// (takePendingFocus runs after each swap), or the typing place if it does
// not come soon.
const pendingFocus = { id: null, timer: 0 };
function focusNoteWhenShown(id) {
  clearTimeout(pendingFocus.timer);
  pendingFocus.id = String(id);
  if (takePendingFocus()) return;
  pendingFocus.timer = setTimeout(() => {
    if (pendingFocus.id === null) return;
    pendingFocus.id = null;
    if (document.activeElement === document.body) focusTypingPlace();
  }, FOCUS_WAIT_MS);
}

export function takePendingFocus() {
  if (pendingFocus.id === null) return false;
  const el = listEl.querySelector(`:scope > [data-note-id="${CSS.escape(pendingFocus.id)}"]:not(.note-leaving)`);
  const btn = el?.querySelector('button[data-action="edit"]');
  if (!btn) return false;
  pendingFocus.id = null;
  clearTimeout(pendingFocus.timer);
  if (document.activeElement === document.body || !document.activeElement) btn.focus();
  return true;
}

async function undoDelete(id, item) {
  const btn = item.querySelector('button');
  const hadFocus = item.contains(document.activeElement);
  btn.disabled = true;
  const res = await send(viaFetch('POST', `/api/notes/${encodeURIComponent(id)}/restore`));
  const data = res ? parseJSON(await res.text()) || {} : {};
  if (res && res.ok && data.note) {
    ownCreated.add(String(id));
    gone.delete(String(id));
    dropUndo(item, id, hadFocus);
    refreshTo(toVersion(data.version));
    return;
  }
  btn.disabled = false;
  if (res && res.status === 404) {
    item.replaceChildren('Too late to undo: the note is gone for good.');
    setTimeout(() => dropUndo(item), 5000);
    return;
  }
  // Undo stays, to be tried again, with what went wrong beside it.
  const f = failure('the note was not brought back', res, data);
  item.replaceChildren(`${f.text} `, btn);
  btn.focus();
  setTimeout(() => dropUndo(item), UNDO_SHOW_MS);
}
