// notesync: one note element of #notes-list, as the server renders it
// (templates/notes.html, notes_list) and as the page shows it: its long
// text clamped behind "Show more", its controls named after its first
// words, its times in the reader's zone, the notices an open editor
// shows when the note changes elsewhere, and what became of its writes
// (docs/PROTOCOL.md §5, §6, §12).

import { toVersion, snippet } from './page.js';

export const noteId = (el) => el.getAttribute('data-note-id');
export const noteRev = (el) => toVersion(el.getAttribute('data-rev')) ?? 0;
export const isEditing = (el) => !!el.querySelector('.note-edit');

// applyNote shows a note from a JSON answer ({id, body, rev}).
export function applyNote(el, note) {
  const bodyEl = el.querySelector('.note-body');
  if (bodyEl && typeof note.body === 'string') bodyEl.textContent = note.body;
  if (note.rev) el.setAttribute('data-rev', String(note.rev));
  labelNote(el);
  clampNote(el);
}

// ---------------------------------------------------------------- long notes
//
// CSS shows a long note's first lines (--clamp-lines); a note whose text
// runs past them gets class note-clamped and a "Show more" button
// (data-action="expand", aria-expanded), which shows it all.

export function clampNote(el) {
  const bodyEl = el.querySelector('.note-body');
  if (!bodyEl) return;
  const lines = Number(getComputedStyle(el).getPropertyValue('--clamp-lines')) || 8;
  const lineHeight = parseFloat(getComputedStyle(bodyEl).lineHeight) || 24;
  // scrollHeight is the text's whole height, clamped or not; 0 while the
  // note is not laid out (an open editor hides it): leave it as it is.
  if (bodyEl.scrollHeight === 0) return;
  const long = bodyEl.scrollHeight > lines * lineHeight + 2;
  el.classList.toggle('note-clamped', long);
  let more = el.querySelector(':scope > .note-more');
  if (!long) {
    more?.remove();
    el.classList.remove('note-expanded');
    return;
  }
  if (!more) {
    more = document.createElement('button');
    more.type = 'button';
    more.className = 'note-more link-button';
    more.dataset.action = 'expand';
    if (bodyEl.id) more.setAttribute('aria-controls', bodyEl.id);
    bodyEl.after(more);
  }
  showExpanded(el, el.classList.contains('note-expanded'));
}

export function showExpanded(el, on) {
  el.classList.toggle('note-expanded', on);
  const more = el.querySelector(':scope > .note-more');
  if (!more) return;
  more.textContent = on ? 'Show less' : 'Show more';
  more.setAttribute('aria-expanded', String(on));
  labelNote(el);
}

// labelNote names a note's controls after its first words, so that a
// screen reader can tell one note's Delete from another's.
export function labelNote(el) {
  const words = snippet(el.querySelector('.note-body')?.textContent);
  const names = {
    edit: 'Edit note', delete: 'Delete note', 'keep-mine': 'Keep my text for note',
    'take-theirs': 'Take the other text for note', 'save-as-new': 'Save my text as a new note, from note',
    'edit-cancel': 'Cancel editing note', 'edit-save': 'Save note',
    discard: 'Discard my changes to note', 'keep-editing': 'Keep editing note',
    'dismiss-message': 'Dismiss the message about note',
    expand: el.classList.contains('note-expanded') ? 'Show less of note' : 'Show more of note',
  };
  for (const b of el.querySelectorAll('button[data-action]')) {
    const name = names[b.dataset.action];
    if (name) b.setAttribute('aria-label', `${name}: ${words}`);
  }
  const ta = el.querySelector('.note-edit textarea');
  if (ta) ta.setAttribute('aria-label', `Your text for note: ${words}`);
}

// Server renders times in UTC; show them in the reader's time zone.
const timeFormat = new Intl.DateTimeFormat([], { dateStyle: 'medium', timeStyle: 'short' });
export function localizeTimes(root) {
  for (const t of root.querySelectorAll('time[datetime]')) {
    const d = new Date(t.dateTime);
    if (Number.isNaN(d.getTime())) continue;
    t.textContent = timeFormat.format(d);
    t.title = d.toISOString();
  }
}

// ---------------------------------------------------------------- notices

export function button(action, text, primary = false) {
  const b = document.createElement('button');
  b.type = action === 'edit-save' ? 'submit' : 'button';
  b.dataset.action = action;
  b.textContent = text;
  if (!primary) b.className = 'secondary';
  return b;
}

// setNotice shows a message and the buttons for it above the editor's
// textarea; the editor's own Save goes while they are shown.
export function setNotice(li, text, buttons = []) {
  const form = li.querySelector('.note-edit');
  if (!form) return;
  const notice = form.querySelector('.edit-notice');
  notice.replaceChildren(text);
  if (buttons.length) {
    const row = document.createElement('span');
    row.className = 'notice-actions';
    row.append(...buttons);
    notice.append(row);
  }
  notice.hidden = false;
  form.querySelector('[data-action="edit-save"]').hidden = buttons.length > 0;
  labelNote(li);
}

// showNoteMessage shows what became of a write of note li beside it, in
// place of the message it had ('' clears it). Each note has its own, so
// the messages of several notes stand at once. An error
// (p.note-message.note-error, role=alert) stays until the note's next
// write goes through, its editor closes or the person dismisses it
// ([data-action=dismiss-message]); news (p.note-message.note-info,
// role=status) goes after NEWS_MS.
const NEWS_MS = 8000;
const newsTimers = new WeakMap();
export function showNoteMessage(li, text, kind = 'error') {
  let p = li.querySelector(':scope > .note-message');
  clearTimeout(newsTimers.get(li));
  if (!text) { p?.remove(); return; }
  if (!p) {
    p = document.createElement('p');
    const meta = li.querySelector(':scope > .note-meta');
    if (meta) meta.before(p); else li.append(p);
  }
  p.className = `note-message note-${kind}`;
  p.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  const dismiss = button('dismiss-message', 'Dismiss');
  dismiss.addEventListener('click', () => {
    p.remove();
    (li.querySelector('.note-edit textarea') || li.querySelector('button[data-action="edit"]'))?.focus();
  });
  p.replaceChildren(`${text} `, dismiss);
  labelNote(li);
  if (kind !== 'error') newsTimers.set(li, setTimeout(() => p.remove(), NEWS_MS));
}

export function markChangedElsewhere(li) {
  if (li.classList.contains('note-conflict') || li.classList.contains('note-deleted-elsewhere')) return;
  li.classList.add('note-changed-elsewhere');
  setNotice(li, 'Changed elsewhere while you were editing: the new text is shown above. ' +
    'Your text below is kept; saving merges the two where they changed different lines, ' +
    'and asks which one to keep where they changed the same ones.');
}

export function markDeletedElsewhere(li) {
  if (li.classList.contains('note-deleted-elsewhere')) return;
  li.classList.remove('note-changed-elsewhere', 'note-conflict', 'note-flash');
  li.classList.add('note-deleted-elsewhere');
  setNotice(li, 'Deleted elsewhere while you were editing. Your text is kept: ',
    [button('save-as-new', 'Save as a new note', true), button('edit-cancel', 'Discard')]);
}

export function clearDeletedElsewhere(li) {
  li.classList.remove('note-deleted-elsewhere');
  const form = li.querySelector('.note-edit');
  if (!form) return;
  form.querySelector('.edit-notice').hidden = true;
  form.querySelector('[data-action="edit-save"]').hidden = false;
  // Restored elsewhere: it is the same note again; a newer revision is
  // marked by the list's update.
}
