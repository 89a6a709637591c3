// notesync: the writes that wait for the connection (docs/PROTOCOL.md §12).
//
// A note added, edited or deleted while the tab cannot reach its node
// shows at once, marked note-pending, and is kept in IndexedDB (idb.js)
// with its Idempotency-Key and the revision it was made against, so that
// it survives a reload and a browser restart. When the connection returns
// (hello), flush() sends the writes one at a time, in the order they were
// made, each with its own key: a write whose answer was lost is applied
// once. A write on a note that has writes waiting goes behind them, even
// online, so the order holds; its revision is the one the write before it
// made.
//
// A write the server refuses for good (400, 404, 412, …) stays, marked
// note-failed, with what happened in words and a way out: keep it (try
// it again over the note as it is now, or as a new note when the note is
// gone) or discard it. Nothing is dropped without the person's word.

import { notesync, toVersion, parseJSON } from './page.js';
import { send, viaFetch, ifMatch, beginOwnWrite, newIdempotencyKey, retryAfterMs } from './write.js';
import { connState, setPending } from './status.js';
import { checkSessionThenEnd } from './transport.js';
import { ownCreated, ownEdits, gone, refreshTo, fadeOutAndRemove } from './list.js';
import { applyNote } from './note.js';
import { pendingOf, putPending, dropPending } from './idb.js';
import { showItem, settleNote, noteEl, failureText } from './pending.js';

const RETRY_LATER_MS = 5000; // a flush stopped by a busy server tries again after this

export const user = document.body.dataset.user || '';
let items = [];          // this user's pending writes, oldest first
let flushing = false;
let retryTimer = 0;

// offline reports whether a write now would not reach the node: the live
// connection is not open, or the browser knows it has no network.
export const offline = () => connState() !== 'open' || navigator.onLine === false;

export const pendingCount = () => items.length;

// mustQueue reports whether a write on note id goes to the queue: the
// tab is offline, the note is one the queue has not created yet, or
// writes on it wait already.
export const mustQueue = (id) => offline() || String(id).startsWith('pending-') || items.some((i) => i.id === String(id));

// startQueue loads the user's pending writes and shows them.
export async function startQueue() {
  if (!user) return;
  items = await pendingOf(user);
  for (const item of items) showItem(item, items);
  setPending(items.length);
}

async function add(item) {
  item.user = user;
  item.at = Date.now();
  item.key = item.key || newIdempotencyKey();
  item.saving = true; // not sent before it is kept
  items.push(item);
  showItem(item, items);
  setPending(items.length);
  await putPending(item);
  delete item.saving;
  if (!offline()) flush();
  return item;
}

// chained is the revision a write on note id is made against: rev, or
// null when writes on it wait (the last of them will say).
const chained = (id, rev) => (items.some((i) => i.id === id) ? null : rev);

export function queueCreate(body, key) {
  return add({ op: 'create', id: `pending-${newIdempotencyKey()}`, body, baseRev: null, key });
}

export function queueEdit(id, body, rev, key) {
  id = String(id);
  return add({ op: 'edit', id, body, baseRev: chained(id, rev), key });
}

export function queueDelete(id, rev, key) {
  id = String(id);
  return add({ op: 'delete', id, baseRev: chained(id, rev), key });
}

// flush sends the waiting writes in order, once the tab is connected,
// until none is left that can go: writes queued meanwhile go too. The
// tabs of one browser flush in turn (a Web Lock), each first taking off
// what another tab has sent meanwhile.
export async function flush() {
  if (flushing || offline() || !user) return;
  flushing = true;
  clearTimeout(retryTimer);
  try {
    if (navigator.locks) await navigator.locks.request(`notesync-flush-${user}`, flushInTurn);
    else await flushInTurn();
  } finally {
    flushing = false;
  }
}

async function flushInTurn() {
  await forgetSentElsewhere();
  for (;;) {
    if (offline()) return;
    const blocked = new Set(); // notes with a failed write: theirs wait behind it
    const item = items.find((i) => {
      if (i.failed) blocked.add(i.id);
      return !blocked.has(i.id);
    });
    if (!item || item.saving || (await sendItem(item)) === 'stop') return;
  }
}

// forgetSentElsewhere takes off the writes that another tab of this
// browser has sent since this one loaded them.
async function forgetSentElsewhere() {
  const kept = new Set((await pendingOf(user)).map((i) => i.seq));
  const sent = items.filter((i) => i.seq !== undefined && !kept.has(i.seq));
  if (!sent.length) return;
  items = items.filter((i) => !sent.includes(i));
  setPending(items.length);
  for (const i of sent) {
    const el = noteEl(i.id);
    if (el && i.op === 'create') el.remove(); // the list shows it under its id
    else if (el) settleNote(el, items);
  }
}

function request(item) {
  const path = `/api/notes/${encodeURIComponent(item.id)}`;
  const headers = item.baseRev ? ifMatch(item.baseRev) : {};
  switch (item.op) {
    case 'create': return viaFetch('POST', '/api/notes', { json: { body: item.body } });
    case 'edit': return viaFetch('PATCH', path, { json: { body: item.body }, headers });
    default: return viaFetch('DELETE', path, { headers });
  }
}

// sendItem sends one write and says what the flush does next: 'next'
// (it was answered, applied or refused for good) or 'stop' (try again
// later).
async function sendItem(item) {
  const done = beginOwnWrite();
  try {
    if (item.op === 'edit') ownEdits.set(item.id, item.body);
    const res = await send(request(item), { key: item.key });
    const data = res ? parseJSON(await res.text().catch(() => '')) || {} : {};
    if (!res) return 'stop';
    if (res.ok || (item.op === 'delete' && res.status === 404)) {
      await landed(item, res, data);
      return 'next';
    }
    if (item.op === 'edit') ownEdits.delete(item.id);
    if (res.status === 401) { checkSessionThenEnd(); return 'stop'; }
    if (res.status === 408 || res.status === 429 || res.status >= 500) {
      retryTimer = setTimeout(flush, retryAfterMs(res, RETRY_LATER_MS));
      return 'stop';
    }
    item.failed = { status: res.status, text: failureText(item, res.status, data), note: data.note || null };
    await putPending(item);
    showItem(item, items);
    return 'next';
  } finally {
    done();
  }
}

// landed takes a write the server applied off the queue, and shows the
// note as the server has it.
async function landed(item, res, data) {
  items = items.filter((i) => i !== item);
  await dropPending(item.seq);
  setPending(items.length);
  const el = noteEl(item.id);
  const version = toVersion(data.version) ?? toVersion(res.headers.get('X-Notes-Version'));
  if (item.op === 'delete') {
    gone.set(item.id, version ?? notesync.version);
    if (el) fadeOutAndRemove(el);
  } else if (data.note) {
    const id = String(data.note.id);
    if (item.op === 'create') await renamed(item.id, id, el);
    else ownEdits.set(id, data.note.body);
    const next = items.find((i) => i.id === id);
    if (next && next.baseRev === null) { next.baseRev = data.note.rev; await putPending(next); }
    if (el) applyNote(el, data.note);
  }
  if (el && item.op !== 'delete') settleNote(el, items);
  refreshTo(version);
}

// renamed gives a created note its id: the element, and the writes that
// wait behind the create.
async function renamed(tempId, id, el) {
  ownCreated.add(id);
  if (el) el.setAttribute('data-note-id', id);
  for (const i of items) {
    if (i.id !== tempId) continue;
    i.id = id;
    await putPending(i);
  }
}

// resolve is the person's answer to a write that failed for good: keep
// it (sent again, over the note as it is now) or discard it.
export async function resolve(li, keep) {
  const id = li.getAttribute('data-note-id');
  const item = items.find((i) => i.id === id && i.failed);
  if (!item) return;
  const failed = item.failed;
  if (!keep) {
    const dropped = items.filter((i) => i.id === id);
    items = items.filter((i) => i.id !== id);
    for (const i of dropped) await dropPending(i.seq);
    setPending(items.length);
    discarded(li, item, failed);
    return;
  }
  item.failed = null;
  item.key = newIdempotencyKey(); // the person's new decision: a new request
  if (failed.status === 404 && item.op === 'edit') {
    item.op = 'create'; // the note is gone: the text comes back as a new note
    item.baseRev = null;
  } else if (failed.status === 412 && failed.note) {
    item.baseRev = failed.note.rev;
  }
  await putPending(item);
  showItem(item, items);
  flush();
}

// discarded shows the note as the server has it once its writes are
// dropped.
function discarded(li, item, failed) {
  if (item.op === 'create' || failed.status === 404) {
    gone.set(item.id, notesync.version);
    fadeOutAndRemove(li);
    return;
  }
  if (failed.note) applyNote(li, failed.note);
  settleNote(li, items);
}

