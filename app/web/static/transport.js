// notesync: the tab's live connection to its node (docs/PROTOCOL.md §4,
// §5, §13).
//
// The tabs of a browser share one connection (connection.js, carried by
// relay.js for the tabs that join it):
//   - a SharedWorker holds it (socket-worker.js), named by the release of
//     the page's code and the tab's pin, so that only tabs that speak the
//     same protocol and want the same node share it;
//   - where there is no SharedWorker, the tab that holds the Web Lock
//     "leader" holds it, and the others reach it over a BroadcastChannel;
//     when that tab goes, the next one in line takes the lock and connects;
//   - where neither works (no Web Locks, or a worker that does not
//     answer), and with ?socket=tab (kept for the tab's session until
//     ?socket=shared), the tab has a connection of its own, as every tab
//     once had: for debugging, and for tests of one tab's connection.
// Whichever holds it, each tab shows its own #conn-status and event log,
// mirrors the attempts in window.notesync, and reports its own editor.

import { notesync, withPin } from './page.js';
import { setStatus, setStatusTitle, clearPassedErrors, logEvent, describe, reconnectingIn } from './status.js';
import { createRelay, lockName } from './relay.js';

const JOIN_PATIENCE_MS = 5000; // a shared worker that has not answered by then is given up

const tab = {
  id: randomId(),
  ended: false,
  hub: null,         // {post(message), close()}: the way to the connection
  editing: null,     // the note open in this tab's editor
  suspended: false,  // the page is hidden in the back/forward cache
};

// What the page does with the messages: set by start().
let handlers = { hello() {}, changed() {}, presence() {} };

function randomId() {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(36).padStart(2, '0')).join('');
}

// isEnded reports whether the session ended (log-out, or 1008).
export const isEnded = () => tab.ended;

// reportEditing tells the connection which note this tab has open in its
// editor (null for none); it tells the server (§7).
export function reportEditing(noteId) {
  tab.editing = noteId;
  tab.hub?.post({ op: 'editing', tab: tab.id, note_id: noteId });
}

// checkSessionThenEnd ends the session if the API says it is over. A 401
// on a page request may also be a misbehaving proxy; the API is asked to
// be sure.
export async function checkSessionThenEnd({ otherwise } = {}) {
  let status = 0;
  try {
    const res = await fetch(withPin('/api/notes'), {
      credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' },
    });
    status = res.status;
  } catch { /* offline: not proof of anything */ }
  if (status === 401) {
    tab.hub?.post({ op: 'end' });
    endSession();
  } else if (otherwise) {
    otherwise();
  }
}

function endSession() {
  if (tab.ended) return;
  tab.ended = true;
  setStatus('closed', 'Your session ended. Log in again to see your notes:', { href: '/login', text: 'Log in' });
}

function addAttempt(entry) {
  notesync.attempts.push(entry);
  if (notesync.attempts.length > 500) notesync.attempts.splice(0, notesync.attempts.length - 500);
}

// onEvent shows what the connection says (relay.js, connection.js).
function onEvent(ev) {
  if (!ev || typeof ev !== 'object' || (ev.to && ev.to !== tab.id)) return;
  if ('transport' in ev) notesync.transport = ev.transport;
  switch (ev.op) {
    case 'state': showState(ev); break;
    case 'attempt': addAttempt(ev.entry); break;
    case 'waiting':
      if (!tab.ended) reconnectingIn(ev.delay);
      break;
    case 'reconnecting': if (!tab.ended) setStatus('connecting', 'Reconnecting…'); break;
    case 'message': handleMessage(ev.msg, ev.via); break;
    case 'log': logEvent(ev.type, ev.text); break;
    case 'ended': endSession(); break;
    case 'leader': join(); break; // a tab took the lead: it knows nothing of this one yet
  }
}

// showState catches a tab that joined up with the connection: the
// attempts it has not seen, and the hello and presence it missed.
function showState(st) {
  const seen = notesync.attempts.length ? notesync.attempts[notesync.attempts.length - 1].at : 0;
  for (const entry of st.attempts || []) if (entry.at > seen) addAttempt(entry);
  if (st.ended) { endSession(); return; }
  if (st.hello) handleMessage(st.hello, st.via);
  if (st.presence) handleMessage(st.presence, st.via);
}

function handleMessage(msg, via) {
  if (tab.ended || !msg) return;
  logEvent(msg.type, describe(msg));
  switch (msg.type) {
    case 'hello': {
      const where = `${msg.node || 'the server'}${msg.region ? ` (${msg.region})` : ''}`;
      setStatus('open', `Connected to ${where}`);
      setStatusTitle(via === 'sse' ? 'live updates over server-sent events' : 'live updates over a WebSocket');
      clearPassedErrors();
      handlers.hello(msg);
      break;
    }
    case 'note_changed':
      handlers.changed(msg);
      break;
    case 'presence':
      handlers.presence(forThisTab(msg));
      break;
    default:
      break; // unknown types are logged and otherwise ignored
  }
}

// forThisTab turns the presence of a connection that tabs share into this
// tab's: own_editing is this tab's entry of own_editing_by_tab.
function forThisTab(msg) {
  const byTab = msg.own_editing_by_tab;
  if (!byTab || typeof byTab !== 'object') return msg;
  const { own_editing_by_tab: _, ...mine } = msg;
  if (typeof byTab[tab.id] === 'string') mine.own_editing = byTab[tab.id];
  return mine;
}

function join() {
  tab.hub?.post({ op: 'join', tab: tab.id, version: notesync.version, change: notesync.change, note_id: tab.editing });
}

// ------------------------------------------------------ the way to the connection

// The tabs of one release and one pin share: the release from the page
// (data-release on its script), the pin from the tab's URL.
const release = document.querySelector('script[data-release]')?.dataset.release || '';
const pin = new URL(withPin('/'), location.href).search.slice(1);
const named = (what) => lockName(release, pin, what);

// wanted says how this tab reaches a connection: 'worker', 'leader' or 'tab'.
function wanted() {
  let asked = new URLSearchParams(location.search).get('socket');
  try {
    if (asked) sessionStorage.setItem('notesync.socket', asked);
    else asked = sessionStorage.getItem('notesync.socket');
  } catch { /* storage off: the URL alone says */ }
  if (asked === 'tab') return 'tab';
  if (typeof SharedWorker === 'function') return 'worker';
  if (navigator.locks && typeof BroadcastChannel === 'function') return 'leader';
  return 'tab';
}

// ownConnection gives the tab a connection of its own.
function ownConnection() {
  const relay = createRelay({ pin, shared: false, post: onEvent });
  tab.hub = { post: (m) => relay.receive(m), close: () => relay.close() };
  join();
}

// viaWorker reaches the connection of the browser's SharedWorker; a worker
// that fails or does not answer in time leaves the tab with its own.
function viaWorker() {
  let worker;
  try {
    worker = new SharedWorker(`/static/socket-worker.js?${new URLSearchParams({ release })}${pin ? `&${pin}` : ''}`,
      { type: 'module', name: named('connection') });
  } catch {
    ownConnection();
    return;
  }
  const port = worker.port;
  let answered = false;
  const giveUp = () => {
    if (answered || tab.hub?.port !== port) return;
    answered = true;
    port.close();
    ownConnection();
  };
  const patience = setTimeout(giveUp, JOIN_PATIENCE_MS);
  worker.onerror = giveUp;
  port.onmessage = (e) => {
    if (tab.hub?.port !== port) return;
    if (!answered) { answered = true; clearTimeout(patience); }
    onEvent(e.data);
  };
  port.start();
  tab.hub = {
    port,
    post: (m) => port.postMessage(m),
    close() { port.postMessage({ op: 'bye', tab: tab.id }); port.close(); },
  };
  join();
}

// viaLeader reaches the connection of the tab that holds the lock
// "leader", over a BroadcastChannel, and lines up to take the lock: when
// it comes, this tab holds the connection for all of them.
function viaLeader() {
  const channel = new BroadcastChannel(named('channel'));
  let relay = null;   // while this tab leads
  let resign = null;  // gives the lock up
  const hub = {
    post: (m) => (relay ? relay.receive(m) : channel.postMessage({ up: m })),
    close() {
      if (relay) relay.close(); else channel.postMessage({ up: { op: 'bye', tab: tab.id } });
      relay = null;
      channel.close();
      resign?.();
    },
  };
  channel.onmessage = (e) => {
    const m = e.data || {};
    if (relay && m.up) relay.receive(m.up);
    else if (!relay && m.down) onEvent(m.down);
  };
  tab.hub = hub;
  navigator.locks.request(named('leader'), () => new Promise((resolve) => {
    if (tab.hub !== hub) { resolve(); return; }
    resign = resolve;
    relay = createRelay({
      pin,
      shared: true,
      post(ev, to) {
        if (to !== tab.id) channel.postMessage({ down: to ? { ...ev, to } : ev });
        if (to === undefined || to === tab.id) onEvent(ev);
      },
      watch: (id, gone) => navigator.locks.request(named(`tab ${id}`), () => gone()),
    });
    channel.postMessage({ down: { op: 'leader' } });
    join();
  }));
  join(); // to the tab that leads now, if any
}

// holdTabLock takes the lock named for this tab, which it holds while it
// lives: the worker or the leading tab learns so that it is gone. It
// resolves once the lock is held.
let tabLock = null;
function holdTabLock() {
  tabLock ??= new Promise((held) => {
    navigator.locks.request(named(`tab ${tab.id}`), () => {
      held();
      return new Promise(() => {}); // held until the page goes
    });
  });
  return tabLock;
}

// openHub finds this tab's way to a connection.
async function openHub() {
  const how = wanted();
  if (how === 'tab' || !navigator.locks) {
    if (how === 'worker') viaWorker(); else ownConnection();
    return;
  }
  await holdTabLock();
  if (tab.suspended) return;
  if (how === 'worker') viaWorker(); else viaLeader();
}

// start opens the connection. The messages go to on.hello, on.changed
// (note_changed) and on.presence, each called with the message.
export function start(on) {
  handlers = { ...handlers, ...on };

  // Back online, or back in view: do not sit out the rest of a long
  // backoff, and check a quiet socket right away.
  window.addEventListener('online', () => tab.hub?.post({ op: 'online' }));
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') tab.hub?.post({ op: 'visible' });
  });

  // Leaving the page (or entering the back/forward cache): the tab leaves
  // the connection, or closes its own; a page restored from the cache
  // joins again.
  window.addEventListener('pagehide', () => {
    tab.suspended = true;
    tab.hub?.close();
    tab.hub = null;
  });
  window.addEventListener('pageshow', (e) => {
    if (!e.persisted || tab.ended) return;
    tab.suspended = false;
    openHub();
  });

  setStatus('connecting', 'Connecting…');
  openHub();
}
