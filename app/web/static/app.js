// notesync: the notes of a signed-in page, kept live. The entry module of
// the notes page, and of the assistant page beside its chat.
//
// Each concern is a module of its own (ES modules, no build step; htmx is
// loaded before them as a classic script):
//   page.js       helpers, the tab's pin, window.notesync (the test hook)
//   write.js      the one write path: Idempotency-Key, If-Match, one retry
//   status.js     #conn-status, the note error line, the event log
//   transport.js  the tab's way to the connection its browser's tabs share
//                 (connection.js, relay.js, socket-worker.js: WebSocket,
//                 SSE where it cannot connect, backoff)
//   list.js       #notes-list: refresh, htmx's "notes" swap, glow and fade
//   pages.js      the list's older pages, loaded as the person scrolls
//   note.js       one note element: clamping, names, editor notices
//   note-form.js  #note-form, sent by htmx; the length count
//   editor.js     editing a note, and its conflicts
//   undo.js       deleting a note, and Undo
//   queue.js      the writes that wait for the connection (idb.js keeps
//                 them, pending.js shows them)
//   offline.js    the service worker, the list as last seen, and asking
//                 before unsent text is dropped
//   presence.js   the user's other tabs, and the notes they edit
//   cluster.js    #cluster-panel
// The DOM and wire contract is docs/PROTOCOL.md, sections 3–7, 9 and 12.

import { notesync, toVersion, pinLinks } from './page.js';
import { start as startTransport } from './transport.js';
import { listEl, startList, refreshTo, restartList } from './list.js';
import { startPages } from './pages.js';
import { showExpanded } from './note.js';
import { startNoteForm } from './note-form.js';
import { openEditor, closeEditor, keepMine, saveAsNew } from './editor.js';
import { deleteNote, takePendingFocus } from './undo.js';
import { connected, showPresence, markEditingElsewhere } from './presence.js';
import { pollCluster, startCluster } from './cluster.js';
import { startQueue, flush, resolve } from './queue.js';
import { registerServiceWorker, restoreLastSeen, keepLastSeen, guardLeaving } from './offline.js';

// A note with a write the server refused has its own buttons (pending.js).
const keeps = { 'keep-mine': true, 'save-as-new': true, 'pending-keep': true, 'take-theirs': false, 'pending-discard': false };

// onAction runs the note control that was clicked (data-action).
function onAction(e) {
  const btn = e.target.closest('button[data-action]');
  if (!btn || !listEl.contains(btn)) return;
  const li = btn.closest('[data-note-id]');
  if (!li) return;
  if (li.classList.contains('note-failed') && btn.closest('.pending-error') && btn.dataset.action in keeps) {
    resolve(li, keeps[btn.dataset.action]);
    return;
  }
  switch (btn.dataset.action) {
    case 'delete': deleteNote(li); break;
    case 'edit': openEditor(li); break;
    case 'edit-cancel': closeEditor(li); break;
    case 'keep-mine': keepMine(li); break;
    case 'take-theirs': closeEditor(li); break;
    case 'save-as-new': saveAsNew(li); break;
    case 'expand': showExpanded(li, !li.classList.contains('note-expanded')); break;
  }
}

if (listEl) { // not on a page without notes (e.g. the login page)
  notesync.version = toVersion(listEl.dataset.version) ?? toVersion(document.body.dataset.version) ?? 0;
  notesync.change = listEl.dataset.change || '';
  registerServiceWorker();
  // The list as last seen and the writes that wait show before the page
  // says it is there (window.notesync).
  await restoreLastSeen();
  await startQueue();
  window.notesync = notesync;
  pinLinks();
  startNoteForm();
  startList();
  startPages();
  guardLeaving();
  keepLastSeen();
  // After each swap of the list: a restored note takes the focus it was
  // promised, the notes other tabs edit are marked, and the list is kept
  // as last seen.
  listEl.addEventListener('htmx:afterSwap', () => { takePendingFocus(); markEditingElsewhere(); keepLastSeen(); });
  listEl.addEventListener('click', onAction);
  startTransport({
    hello(msg) {
      const v = toVersion(msg.version);
      if (v !== null && v > notesync.version) refreshTo(v, msg.change);
      connected(msg.conn);
      flush();
    },
    changed(msg) {
      const v = toVersion(msg.version);
      if (v !== null && msg.diverged) restartList(v, msg.change);
      else if (v !== null) refreshTo(v, msg.change);
    },
    presence(msg) {
      pollCluster(true);
      showPresence(msg);
    },
  });
  startCluster();
}
