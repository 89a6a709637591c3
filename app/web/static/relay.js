// notesync: one connection for the tabs that join it (docs/PROTOCOL.md
// §13). It runs in the worker that the tabs of a browser share
// (socket-worker.js), in the tab that leads where there is no such worker,
// or in a tab for itself alone (transport.js).
//
// The tabs speak to it with small objects, each with the tab's id:
//   {op: 'join', tab, version, change, note_id}
//                                        a tab is here; version is what its
//                                        list shows, change the change at
//                                        that version, note_id its editor's
//   {op: 'editing', tab, note_id}        the note open in its editor, or null
//   {op: 'bye', tab}                     the tab is gone
//   {op: 'end'}                          the session ended (a 401)
//   {op: 'visible'}                      a tab came into view: check the link
//   {op: 'online'}                       the browser is back online
// and it tells them what openConnection's events say, to every tab, and
// {op: 'state', ...} to a tab that joins: what it missed so far.

import { openConnection } from './connection.js';

const ATTEMPTS_KEPT = 500;   // as window.notesync.attempts keeps
const MAX_TABS = 100;        // a connection reports at most this many tabs (§13)

// lockName names a Web Lock (or a BroadcastChannel) of the tabs of one
// release and one pin: "tab <id>", held by each tab while it lives, and
// "leader", by the tab that holds the connection where there is no
// SharedWorker.
export const lockName = (release, pin, what) => `notesync ${release} ${pin} ${what}`;

const toNote = (v) => (Number.isSafeInteger(v) && v > 0 ? v : null);

// createRelay keeps one connection for the tabs that join it.
//
//   pin     the tabs' pin as a query string (openConnection)
//   shared  true: the connection carries its tabs and reports each one's
//           editor ({"type":"tabs"}); false: it is one tab's own
//   post    (event, tab) => void: sends an event to that tab, or to
//           every tab when tab is undefined
//   watch   (tab, gone) => void, optional: calls gone() once the tab is
//           gone, for a tab that cannot say so itself
export function createRelay({ pin, shared, post, watch = () => {} }) {
  const tabs = new Map(); // tab id -> the note open in its editor, or null
  const last = { hello: null, presence: null, attempts: [], ended: false, transport: null, via: null };
  let version = 0;        // the highest the tabs or the connection know of
  let change = '';        // the change at version, '' when not known
  let reportQueued = false;

  const conn = openConnection({ pin, since: () => version, change: () => change, emit: onEvent });

  // saw takes a version and the change at it that a tab or the server
  // names; a sync that says the history is gone (diverged) sets them even
  // when they go back (docs/PROTOCOL.md §11).
  function saw(v, c, diverged) {
    v = Number(v);
    if (!Number.isSafeInteger(v) || v < 0 || (v <= version && !diverged)) return;
    version = v;
    change = typeof c === 'string' ? c : '';
  }

  function onEvent(ev) {
    last.transport = ev.transport;
    last.via = ev.via;
    switch (ev.op) {
      case 'attempt':
        last.attempts.push(ev.entry);
        if (last.attempts.length > ATTEMPTS_KEPT) last.attempts.splice(0, last.attempts.length - ATTEMPTS_KEPT);
        break;
      case 'message': {
        saw(ev.msg.version, ev.msg.change, ev.msg.diverged === true);
        if (ev.msg.type === 'hello') [last.hello, last.presence] = [ev.msg, null];
        if (ev.msg.type === 'presence') last.presence = ev.msg;
        break;
      }
      case 'waiting':
      case 'ended':
        [last.hello, last.presence] = [null, null];
        last.ended = ev.op === 'ended';
        break;
    }
    post(ev);
  }

  // report tells the connection what the tabs have open, once for all
  // the changes of one turn (a tab that joins and opens its editor at once).
  function report() {
    if (reportQueued) return;
    reportQueued = true;
    queueMicrotask(() => {
      reportQueued = false;
      if (tabs.size === 0) return;
      if (!shared) {
        conn.report({ note_id: tabs.values().next().value });
        return;
      }
      conn.report({ tabs: Object.fromEntries([...tabs].slice(0, MAX_TABS)) });
    });
  }

  function join(m) {
    const known = tabs.has(m.tab);
    tabs.set(m.tab, toNote(m.note_id));
    saw(m.version, m.change, false);
    // A tab that joins after the session ended was loaded with a session
    // again (a log-in since, perhaps another user's): the connection
    // starts afresh, and the tab is not told of the session that ended.
    if (last.ended) last.ended = false;
    post({
      op: 'state', hello: last.hello, presence: last.presence, attempts: last.attempts,
      ended: last.ended, transport: last.transport, via: last.via,
    }, m.tab);
    if (!known) watch(m.tab, () => leave(m.tab));
    conn.resume();
    report();
  }

  function leave(tab) {
    if (!tabs.delete(tab)) return;
    if (tabs.size > 0) {
      report();
      return;
    }
    conn.suspend(); // nobody left to tell: the connection waits for a tab
    [last.hello, last.presence] = [null, null];
  }

  return {
    // receive takes a tab's message.
    receive(m) {
      if (!m || typeof m !== 'object') return;
      switch (m.op) {
        case 'join': if (typeof m.tab === 'string' && m.tab) join(m); break;
        case 'editing':
          if (tabs.has(m.tab)) { tabs.set(m.tab, toNote(m.note_id)); report(); }
          break;
        case 'bye': leave(m.tab); break;
        case 'end': conn.end(); break;
        case 'visible': conn.ping(); break;
        case 'online': conn.online(); break;
      }
    },
    // close lets the connection go: the tab that held it leaves.
    close() {
      tabs.clear();
      conn.suspend();
    },
  };
}
