// notesync: what the page says of itself. The connection's status line
// (#conn-status), the note error line (#note-error), the line that says a
// write waits for the cluster (#write-wait) and the real-time
// events in #event-log (docs/PROTOCOL.md §5).

import { $, logItem } from './page.js';

const EVENT_LOG_MAX = 100;

const statusEl = $('#conn-status');
const noteErrorEl = $('#note-error');
const writeWaitEl = $('#write-wait');
const eventLogEl = $('#event-log');

export function setStatus(state, text, link) {
  if (!statusEl) return;
  statusEl.dataset.state = state;
  statusEl.textContent = text;
  if (link) {
    const a = document.createElement('a');
    a.href = link.href;
    a.textContent = link.text;
    statusEl.append(' ', a);
  }
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
export function waitingForCluster(delta) {
  waitingWrites = Math.max(0, waitingWrites + delta);
  if (!writeWaitEl) return;
  const n = waitingWrites;
  writeWaitEl.textContent = n === 0 ? ''
    : `Waiting for the cluster… ${n === 1 ? 'your change is' : `${n} changes are`} sent again as soon as a server can take ${n === 1 ? 'it' : 'them'}.`;
  writeWaitEl.hidden = n === 0;
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
