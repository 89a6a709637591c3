// notesync: the notes page without a connection (docs/PROTOCOL.md §12).
//
// The service worker (/sw.js) keeps the page and its assets, so that /
// opens with no network; the list as the tab last showed it is kept in
// IndexedDB for its user, so that a page the worker kept earlier shows
// the notes as last seen. What the person typed is never lost unasked:
// leaving the page with unsent text or pending writes asks first, and so
// does logging out with pending writes; a log-out drops what the browser
// keeps for the user, so that nobody else signing in on it sees it.

import { $, notesync, toVersion } from './page.js';
import { listEl } from './list.js';
import { user, pendingCount } from './queue.js';
import { lastSeenOf, putLastSeen, dropUser } from './idb.js';
import { button } from './note.js';

const KEEP_EVERY_MS = 300; // the list is kept at most this often

// registerServiceWorker installs /sw.js; the browser checks it for a new
// release at every visit. Where there is none (http on another host than
// localhost), the page works as before, online only.
export function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('/sw.js').catch(() => { /* online only */ });
}

// restoreLastSeen shows the list as last seen, when it is newer than the
// one the page came with (a page the service worker kept).
export async function restoreLastSeen() {
  if (!user) return;
  const kept = await lastSeenOf(user);
  const v = toVersion(kept?.version);
  if (v === null || v <= notesync.version || typeof kept.html !== 'string') return;
  listEl.innerHTML = kept.html;
  notesync.version = v;
  listEl.dataset.version = String(v);
  document.body.dataset.version = String(v);
}

// keepLastSeen keeps the list after each swap: the notes as the server
// has them, without the queue's notes, editors and passing marks.
let keepTimer = 0;
export function keepLastSeen() {
  if (!user) return;
  clearTimeout(keepTimer);
  keepTimer = setTimeout(() => {
    const copy = listEl.cloneNode(true);
    for (const el of copy.querySelectorAll('.note-leaving, [data-note-id^="pending-"], .note-edit, .pending-badge, .pending-error, .editing-badge')) el.remove();
    for (const el of copy.querySelectorAll('[data-note-id]')) el.className = 'note';
    putLastSeen({ user, version: notesync.version, html: copy.innerHTML, at: Date.now() });
  }, KEEP_EVERY_MS);
}

// unsaved reports text the person would lose by leaving: a note being
// written, an editor with changes, or writes that wait.
function unsaved() {
  if (pendingCount() > 0) return true;
  const draft = $('#note-form textarea');
  if (draft && draft.value.trim() !== '') return true;
  return Array.from(document.querySelectorAll('.note-edit'))
    .some((f) => f.querySelector('textarea')?.value !== f.dataset.baseBody);
}

// guardLeaving asks before a reload or a closed tab drops unsaved text,
// and before a log-out drops pending writes.
export function guardLeaving() {
  window.addEventListener('beforeunload', (e) => {
    if (!unsaved()) return;
    e.preventDefault();
    e.returnValue = '';
  });
  const form = $('#logout-form');
  if (!form) return;
  let confirmed = false;
  form.addEventListener('submit', (e) => {
    if (confirmed) return;
    e.preventDefault();
    if (pendingCount() > 0) { askLogout(form, () => { confirmed = true; logOut(form); }); return; }
    confirmed = true;
    logOut(form);
  });
}

// logOut forgets what the browser keeps for the user, then logs out.
async function logOut(form) {
  await dropUser(user);
  form.submit();
}

// askLogout says that writes wait and would be lost, with the choice.
function askLogout(form, discard) {
  let box = $('#logout-ask');
  if (box) { box.querySelector('button')?.focus(); return; }
  box = document.createElement('div');
  box.id = 'logout-ask';
  box.className = 'logout-ask form-error';
  box.setAttribute('role', 'alertdialog');
  box.setAttribute('aria-label', 'Log out with changes not sent');
  const n = pendingCount();
  const stay = button('logout-stay', 'Stay logged in', true);
  const drop = button('logout-discard', `Log out and discard ${n === 1 ? 'it' : 'them'}`);
  box.append(`${n === 1 ? '1 change was' : `${n} changes were`} made while offline and not sent yet. ` +
    'Logging out now discards them. Stay until the connection returns to send them. ', stay, ' ', drop);
  stay.addEventListener('click', () => box.remove());
  drop.addEventListener('click', () => { box.remove(); discard(); });
  form.after(box);
  stay.focus();
}
