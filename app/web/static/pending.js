// notesync: how the list shows the writes that wait (docs/PROTOCOL.md §5,
// §12). A note with writes not yet sent has the class note-pending and a
// badge that says so; one whose delete waits also note-pending-delete; a
// note the queue creates has the id pending-<key> until the server gives
// it one. A write refused for good adds note-failed and, beside the
// note, what happened in words and the buttons that settle it.

import { listEl } from './list.js';
import { labelNote, localizeTimes, button } from './note.js';

export const noteEl = (id) => listEl.querySelector(`:scope > [data-note-id="${CSS.escape(String(id))}"]`);

// makeNote makes the element of a note the list does not show (yet), as
// templates/notes.html does, at the top of the list.
function makeNote(id, body) {
  const li = document.createElement('li');
  li.className = 'note';
  li.setAttribute('data-note-id', id);
  li.setAttribute('data-rev', '0');
  const p = document.createElement('p');
  p.className = 'note-body';
  p.textContent = body;
  const meta = document.createElement('div');
  meta.className = 'note-meta';
  const time = document.createElement('time');
  time.dateTime = new Date().toISOString();
  const actions = document.createElement('span');
  actions.className = 'note-actions';
  const edit = button('edit', 'Edit');
  const del = button('delete', 'Delete');
  edit.className = del.className = '';
  actions.append(edit, ' ', del);
  meta.append(time, ' ', actions);
  li.append(p, meta);
  localizeTimes(li);
  listEl.prepend(li);
  return li;
}

// showItem shows a pending write on its note (items: all that wait).
export function showItem(item, items) {
  const mine = items.filter((i) => i.id === item.id);
  const texts = mine.filter((i) => i.op !== 'delete');
  let el = noteEl(item.id);
  if (!el && texts.length) el = makeNote(item.id, texts[texts.length - 1].body);
  if (!el) return;
  el.classList.remove('note-flash', 'note-leaving');
  const failed = mine.find((i) => i.failed);
  const body = el.querySelector('.note-body');
  if (body && texts.length) body.textContent = texts[texts.length - 1].body;
  // A delete refused over a changed note shows the note as it is now.
  if (body && failed?.op === 'delete' && failed.failed.note) body.textContent = failed.failed.note.body;
  el.classList.add('note-pending');
  el.classList.toggle('note-pending-delete', mine.some((i) => i.op === 'delete'));
  const meta = el.querySelector('.note-meta');
  let badge = el.querySelector('.pending-badge');
  if (!badge && meta) {
    badge = document.createElement('span');
    badge.className = 'pending-badge';
    meta.prepend(badge);
  }
  if (badge) badge.textContent = mine.some((i) => i.op === 'delete') ? 'Delete not sent yet' : 'Not sent yet';
  el.classList.toggle('note-failed', !!failed);
  el.querySelector(':scope > .pending-error')?.remove();
  if (failed) el.append(failureBlock(failed));
  labelNote(el);
}

// settleNote takes the marks off a note once no write on it waits.
export function settleNote(el, items) {
  const id = el.getAttribute('data-note-id');
  if (items.some((i) => i.id === id)) return;
  el.classList.remove('note-pending', 'note-pending-delete', 'note-failed');
  el.querySelector('.pending-badge')?.remove();
  el.querySelector(':scope > .pending-error')?.remove();
}

// failureBlock says, beside the note, why a write was refused, and offers
// the ways out: keep it, or discard it.
function failureBlock(item) {
  const { status, text, note } = item.failed;
  const box = document.createElement('div');
  box.className = 'pending-error form-error';
  box.setAttribute('role', 'alert');
  box.append(text);
  if (status === 412 && note && item.op === 'edit') {
    const theirs = document.createElement('blockquote');
    theirs.className = 'pending-theirs';
    theirs.textContent = note.body;
    box.append(' The other text: ', theirs);
  }
  const row = document.createElement('span');
  row.className = 'notice-actions';
  if (item.op === 'edit' && status === 412) {
    row.append(button('keep-mine', 'Keep my text', true), ' ', button('take-theirs', 'Take the other text'));
  } else if (item.op === 'edit' && status === 404) {
    row.append(button('save-as-new', 'Save as a new note', true), ' ', button('pending-discard', 'Discard my text'));
  } else {
    row.append(button('pending-keep', item.op === 'delete' ? 'Delete it anyway' : 'Send it again', true), ' ',
      button('pending-discard', item.op === 'delete' ? 'Keep the note' : 'Discard it'));
  }
  box.append(' ', row);
  return box;
}

// failureText puts a write the server refused for good in words.
export function failureText(item, status, data = {}) {
  const said = typeof data.error === 'string' ? data.error.trim() : '';
  const what = item.op === 'create' ? 'This note, written while offline,'
    : item.op === 'edit' ? 'Your edit, made while offline,' : 'Your delete, made while offline,';
  switch (status) {
    case 412:
      return item.op === 'delete'
        ? `${what} was not sent: the note was changed elsewhere meanwhile. Its new text is shown.`
        : `${what} was not saved: the note was changed elsewhere meanwhile. Your text is shown.`;
    case 404:
      return `${what} was not saved: the note was deleted elsewhere meanwhile. Your text is kept here.`;
    case 400:
      return `${what} was refused: ${said || 'the server did not take the text'}. Your text is kept here.`;
    default:
      return `${what} was refused by the server (${status}${said ? `: ${said}` : ''}). It is kept here.`;
  }
}
