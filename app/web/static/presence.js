// notesync: where else the user is (docs/PROTOCOL.md §7, §13).
//
// The tab reports the note open in its editor (the last one opened, while
// several are), and shows what the server says of the user's tabs on
// every node: #presence, and note-editing-elsewhere on the notes another
// tab edits.

import { $, plural } from './page.js';
import { reportEditing as tellConnection } from './transport.js';
import { listEl } from './list.js';
import { noteId } from './note.js';

const presenceEl = $('#presence');
const presenceNodesEl = $('#presence-nodes');
const editing = { open: [], last: null };

export function editorOpened(id) {
  editing.open = editing.open.filter((x) => x !== id).concat(id);
  reportEditing();
}

export function editorClosed(id) {
  editing.open = editing.open.filter((x) => x !== id);
  reportEditing();
}

// connected: a connection opened (its hello). The connection tells each
// new connection what the tabs it carries edit; this tab says its own
// once more, in case the connection is new to it.
export function connected() {
  reportEditing();
}

// reportEditing tells the connection which note this tab edits, and the
// connection tells the server when that changed (transport.js).
function reportEditing() {
  tellConnection(editing.open.length ? Number(editing.open[editing.open.length - 1]) : null);
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
    const browsers = Number(msg.browsers) || tabs;
    presenceEl.dataset.tabs = String(tabs);
    presenceEl.dataset.browsers = String(browsers);
    presenceEl.textContent = presenceText(tabs, browsers, nodes.length);
    const names = nodes.sort(([a], [b]) => a.localeCompare(b)).map(([n, k]) => `${n}: ${k}`).join(', ');
    presenceEl.title = names;
    if (presenceNodesEl) presenceNodesEl.textContent = names;
    presenceEl.hidden = false;
  }
  markEditingElsewhere();
}

// presenceText says where the user's tabs are: "5 tabs in 2 browsers on
// 2 nodes". Browsers (the connections that carry the tabs) are named
// where they tell something: more than one, and fewer than the tabs or
// more than the nodes (one browser on two nodes holds two connections,
// and is not two browsers).
function presenceText(tabs, browsers, nodes) {
  const where = `on ${plural(nodes, 'node', 'nodes')}`;
  if (browsers > 1 && (browsers < tabs || browsers > nodes)) {
    return `${plural(tabs, 'tab', 'tabs')} in ${plural(browsers, 'browser', 'browsers')} ${where}`;
  }
  return `${plural(tabs, 'tab', 'tabs')} ${where}`;
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
