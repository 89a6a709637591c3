// notesync: what the page says of itself. The connection's status line
// (#conn-status, with data-pending: how many writes wait for the
// connection), the note error line (#note-error), the line that says
// writes wait for the cluster or the connection (#write-wait) and the
// real-time events in #event-log (docs/PROTOCOL.md §5, §12).

import { $, logItem, inWords, plural } from './page.js';

const EVENT_LOG_MAX = 100;

const statusEl = $('#conn-status');
const noteErrorEl = $('#note-error');
const writeWaitEl = $('#write-wait');
const eventLogEl = $('#event-log');

const conn = { state: statusEl?.dataset.state || 'connecting', countdown: 0 };

// connState is the live connection's state: 'open', 'connecting' or
// 'closed' (#conn-status's data-state).
export const connState = () => conn.state;

// setStatus says what the connection does. A change of state is also
// told to the page as the event notesync:conn on document (detail: the
// state), so that what depends on the connection (presence) follows it.
export function setStatus(state, text, link) {
  clearInterval(conn.countdown);
  conn.countdown = 0;
  const was = conn.state;
  conn.state = state;
  if (statusEl) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
    if (link) {
      const a = document.createElement('a');
      a.href = link.href;
      a.textContent = link.text;
      statusEl.append(' ', a);
    }
  }
  if (was !== state) document.dispatchEvent(new CustomEvent('notesync:conn', { detail: state }));
}

// reconnectingIn says that the tab is not connected and tries again in
// ms, counting the seconds down as they pass.
export function reconnectingIn(ms) {
  const at = Date.now() + ms;
  const say = () => `Not connected: trying again in ${inWords(Math.max(0, at - Date.now()))}…`;
  setStatus('connecting', say());
  conn.countdown = setInterval(() => {
    if (statusEl) statusEl.textContent = say();
    if (Date.now() >= at) { clearInterval(conn.countdown); conn.countdown = 0; }
  }, 1000);
}

// setStatusTitle says over which transport the live updates come.
export function setStatusTitle(title) {
  if (statusEl) statusEl.title = title;
}

// The note error line. An error whose cause passes by itself (the server
// was unreachable) is cleared once the connection is open again: the page
// never shows a state that is over.
let noteErrorPasses = false;
export function showNoteError(msg, passes = false) {
  if (!noteErrorEl) return;
  noteErrorEl.textContent = msg || '';
  noteErrorEl.hidden = !msg;
  noteErrorPasses = !!msg && passes;
}

// waitingForCluster counts the writes that wait for the cluster to take
// them (the primary is moving: write.js tries them again) and says so
// beside the note form while any does. Waiting is not an error: the line
// is a calm status, and it goes when the last write is answered.
let waitingWrites = 0;
let pendingWrites = 0;
export function waitingForCluster(delta) {
  waitingWrites = Math.max(0, waitingWrites + delta);
  showWaits();
}

// setPending says how many writes wait for the connection (queue.js):
// #conn-status's data-pending, and a line beside the note form.
export function setPending(n) {
  pendingWrites = n;
  if (statusEl) statusEl.dataset.pending = String(n);
  showWaits();
}

function showWaits() {
  if (!writeWaitEl) return;
  const n = waitingWrites;
  const lines = [];
  if (n > 0) {
    lines.push(`Waiting for the cluster… ${n === 1 ? 'your change is' : `${n} changes are`} sent again as soon as a server can take ${n === 1 ? 'it' : 'them'}.`);
  }
  if (pendingWrites > 0) {
    lines.push(`${plural(pendingWrites, 'change waits', 'changes wait')} to be sent: kept in this browser, ${pendingWrites === 1 ? 'it is' : 'they are'} sent when the connection returns.`);
  }
  writeWaitEl.textContent = lines.join(' ');
  writeWaitEl.hidden = lines.length === 0;
}

// showFailure shows what failure() made of a write.
export function showFailure(f) { showNoteError(f.text, !!f.passes); }

export function clearPassedErrors() {
  if (noteErrorPasses) showNoteError('');
}

// The real-time events go to #event-log only where the page asks for them
// (data-log="realtime"); the assistant page's log is the assistant's.
const logsRealtime = !!eventLogEl && eventLogEl.dataset.log === 'realtime';

export function logEvent(type, text) {
  if (!logsRealtime) return;
  const { li, time } = logItem(type);
  li.append(time, ' ', text);
  eventLogEl.prepend(li);
  while (eventLogEl.children.length > EVENT_LOG_MAX) eventLogEl.lastElementChild.remove();
}

// describe puts a real-time message in a few words for the log.
export function describe(msg) {
  switch (msg.type) {
    case 'hello':
      return `hello from ${msg.node || '?'}${msg.region ? ` (${msg.region})` : ''} v${msg.version}`;
    case 'note_changed': {
      const id = msg.note_id !== undefined && msg.op !== 'sync' ? ` #${msg.note_id}` : '';
      return `note_changed ${msg.op || '?'}${id} v${msg.version}${msg.node ? ` from ${msg.node}` : ''}`;
    }
    default:
      return `${msg.type} ${JSON.stringify(msg)}`;
  }
}
