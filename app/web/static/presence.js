// notesync: where else the user is (docs/PROTOCOL.md §7).
//
// The tab reports the note open in its editor (the last one opened, while
// several are), and shows what the server says of the user's tabs on
// every node: #presence, and note-editing-elsewhere on the notes another
// tab edits.

import { $, plural } from './page.js';
import { send, viaFetch } from './write.js';
import { via, sendOnSocket } from './transport.js';
import { listEl } from './list.js';
import { noteId } from './note.js';

const presenceEl = $('#presence');
const presenceNodesEl = $('#presence-nodes');
const editing = { open: [], conn: '', reported: null, last: null };
const EDITING_PATIENCE_MS = 2000; // how long a report of the note being edited is tried

export function editorOpened(id) {
  editing.open = editing.open.filter((x) => x !== id).concat(id);
  reportEditing();
}

export function editorClosed(id) {
  editing.open = editing.open.filter((x) => x !== id);
  reportEditing();
}

// connected starts a new connection's report: it knows nothing of this
// tab's editor yet. conn is the id its hello carried.
export function connected(conn) {
  editing.conn = typeof conn === 'string' ? conn : '';
  editing.reported = null;
  reportEditing();
}

// reportEditing tells the server which note this tab edits, when that
// changed since it was last told on this connection.
function reportEditing() {
  const current = editing.open.length ? Number(editing.open[editing.open.length - 1]) : null;
  if (current === editing.reported || !editing.conn) return;
  switch (via()) {
    case 'ws':
      if (!sendOnSocket(JSON.stringify({ type: 'editing', note_id: current }))) return;
      break;
    case 'sse':
      // A report is soon out of date: it waits a moment, quietly, not for
      // a failover.
      send(viaFetch('POST', '/api/editing', { json: { conn: editing.conn, note_id: current } }), { patienceMs: EDITING_PATIENCE_MS, quiet: true })
        .then((res) => { if (!res) editing.reported = undefined; });
      break;
    default:
      return;
  }
  editing.reported = current;
}

// While the tab is not connected it cannot know where else the user is:
// #presence says so (data-tabs empty) rather than the last count, and no
// note is marked as edited elsewhere. The next presence message, which
// follows every hello, says it again.
document.addEventListener('notesync:conn', (e) => {
  if (e.detail === 'open' || !presenceEl) return;
  editing.last = null;
  presenceEl.dataset.tabs = '';
  presenceEl.textContent = 'Other tabs: not known while offline';
  presenceEl.title = '';
  if (presenceNodesEl) presenceNodesEl.textContent = '';
  for (const li of listEl.querySelectorAll(':scope > .note-editing-elsewhere')) {
    li.classList.remove('note-editing-elsewhere');
    li.querySelector('.editing-badge')?.remove();
  }
});

export function showPresence(msg) {
  editing.last = msg;
  if (presenceEl) {
    const nodes = msg.nodes && typeof msg.nodes === 'object' ? Object.entries(msg.nodes) : [];
    const tabs = Number(msg.tabs) || 0;
    presenceEl.dataset.tabs = String(tabs);
    presenceEl.textContent = `${plural(tabs, 'tab', 'tabs')} on ${plural(nodes.length, 'node', 'nodes')}`;
    const names = nodes.sort(([a], [b]) => a.localeCompare(b)).map(([n, k]) => `${n}: ${k}`).join(', ');
    presenceEl.title = names;
    if (presenceNodesEl) presenceNodesEl.textContent = names;
    presenceEl.hidden = false;
  }
  markEditingElsewhere();
}

// markEditingElsewhere marks the notes that another tab has open in an
// editor: the count less this tab's own, as the server knew it. It runs
// on each presence message and after each swap of the list.
export function markEditingElsewhere() {
  const msg = editing.last;
  if (!msg) return;
  const counts = msg.editing && typeof msg.editing === 'object' ? msg.editing : {};
  for (const li of listEl.querySelectorAll(':scope > [data-note-id]')) {
    const id = noteId(li);
    const others = (Number(counts[id]) || 0) - (msg.own_editing === id ? 1 : 0);
    li.classList.toggle('note-editing-elsewhere', others > 0);
    let badge = li.querySelector('.editing-badge');
    if (others > 0 && !badge) {
      badge = document.createElement('span');
      badge.className = 'editing-badge';
      badge.textContent = 'open in another tab';
      li.querySelector('.note-meta')?.prepend(badge);
    } else if (others <= 0 && badge) {
      badge.remove();
    }
  }
}
