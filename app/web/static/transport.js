// notesync: the tab's live connection to its node (docs/PROTOCOL.md §4, §5).
//
// One live transport at a time: a WebSocket, or an EventSource after the
// WebSocket failed to open WS_FAILS_BEFORE_SSE times in a row; while on
// SSE, the WebSocket is tried again in the background. Every (re)connection
// asks for since=<version shown>, so the server follows its hello with a
// catch-up "sync" when the tab is behind: nothing is missed. It names the
// change it has seen at that version too (&change=), so that a node whose
// history went another way tells it to start again. Reconnects
// back off exponentially with jitter, capped at 10 s, and never follow a
// 1008 (the session ended).

import { notesync, parseJSON, withPin, inWords, changeQuery } from './page.js';
import { setStatus, setStatusTitle, clearPassedErrors, logEvent, describe, reconnectingIn } from './status.js';

const PING_EVERY_MS = 20000;      // client text "ping" while a socket is open
const SILENCE_LIMIT_MS = 45000;   // no message for this long: link is dead
const HEARTBEAT_TICK_MS = 5000;   // how often the heartbeat checks the above
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;
const BACKOFF_MIN_MS = 250;
const WS_FAILS_BEFORE_SSE = 2;    // WebSocket failed to open this many times in a row
const WS_PROBE_FIRST_MS = 2000;   // while on SSE, try the WebSocket again after this,
const WS_PROBE_CAP_MS = 60000;    // doubling up to this

const session = {
  ended: false,
  ws: null,
  es: null,
  wsFailuresBeforeOpen: 0,
  preferSSE: false,
  backoffAttempt: 0,
  nextDelay: 0,         // delay that preceded the coming attempt (for attempts[])
  reconnectTimer: 0,
  heartbeatTimer: 0,
  probeTimer: 0,
  lastMessageAt: 0,
  lastPingAt: 0,
  unansweredSince: 0,   // first ping sent since the last message, 0 if none
  suspended: false,     // page hidden into the back/forward cache
};

// What the page does with the messages: set by start().
let handlers = { hello() {}, changed() {}, presence() {} };

// isEnded reports whether the session ended (log-out, or 1008).
export const isEnded = () => session.ended;

// via names the transport that is open: 'ws', 'sse' or null.
export function via() {
  if (session.ws && session.ws.readyState === WebSocket.OPEN) return 'ws';
  return session.es ? 'sse' : null;
}

// sendOnSocket sends text on the open WebSocket; false if it could not.
export function sendOnSocket(text) {
  try { session.ws.send(text); return true; } catch { return false; }
}

// window.notesync.attempts: one entry per connection attempt, with the
// backoff delay that preceded it (0 for the first one and for probes).
function recordAttempt(transport, probe = false) {
  const entry = { at: Date.now(), transport, delay: probe ? 0 : Math.round(session.nextDelay) };
  if (probe) entry.probe = true;
  else session.nextDelay = 0;
  notesync.attempts.push(entry);
  if (notesync.attempts.length > 500) notesync.attempts.splice(0, notesync.attempts.length - 500);
}

function connect() {
  clearTimeout(session.reconnectTimer);
  session.reconnectTimer = 0;
  if (session.ended || session.suspended) return;
  if (session.preferSSE) openSSE(); else openWebSocket(false);
}

function wsURL() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}${withPin(`/ws?since=${notesync.version}${changeQuery(notesync.change)}`)}`;
}

// probe=true: the tab is on SSE and tries the WebSocket on the side; it
// replaces the EventSource only if it opens, and its failure only schedules
// the next try (onProbeFailed).
function openWebSocket(probe, onProbeFailed = () => {}) {
  let ws;
  recordAttempt('ws', probe);
  if (!probe) notesync.transport = 'ws';
  try {
    ws = new WebSocket(wsURL());
  } catch {
    if (probe) onProbeFailed(); else onWebSocketFailed(false);
    return;
  }
  if (!probe) session.ws = ws;
  let opened = false;

  ws.onopen = () => {
    opened = true;
    if (probe) {
      if (session.ended || session.ws) { ws.close(1000); return; }
      closeEventSource();
      session.ws = ws;
      notesync.transport = 'ws';
      session.preferSSE = false;
    }
    session.wsFailuresBeforeOpen = 0;
    startHeartbeat(ws);
  };

  ws.onmessage = (e) => {
    if (ws !== session.ws) return;
    session.lastMessageAt = Date.now();
    if (typeof e.data !== 'string' || e.data === 'pong') return;
    const msg = parseJSON(e.data);
    if (msg && typeof msg.type === 'string') handleMessage(msg);
  };

  ws.onclose = (e) => {
    if (probe && !opened) { onProbeFailed(); return; }
    if (ws !== session.ws) return; // a dropped probe or an abandoned socket
    session.ws = null;
    stopHeartbeat();
    if (e.code === 1008) { endSession(); return; }
    onWebSocketFailed(opened);
  };
  // onerror is always followed by onclose; nothing to do there.
}

function onWebSocketFailed(hadOpened) {
  if (!hadOpened && ++session.wsFailuresBeforeOpen >= WS_FAILS_BEFORE_SSE) {
    session.preferSSE = true;
  }
  scheduleReconnect();
}

// Dead-link detection. A socket can look open for minutes after the network
// died, so the tab sends "ping" every PING_EVERY_MS and gives up after
// SILENCE_LIMIT_MS without any message. The link only counts as dead if a
// ping has itself gone unanswered for a while: a background tab's timers
// may be throttled to once a minute, and the resulting lull must not look
// like silence on a perfectly healthy link.
function startHeartbeat(ws) {
  stopHeartbeat();
  session.lastMessageAt = Date.now();
  session.lastPingAt = session.lastMessageAt;
  session.unansweredSince = 0;
  const tick = () => {
    if (ws !== session.ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (session.unansweredSince > session.lastMessageAt) {
      if (now - session.lastMessageAt > SILENCE_LIMIT_MS &&
          now - session.unansweredSince > HEARTBEAT_TICK_MS * 2) {
        abandonWebSocket(4000, 'heartbeat timeout');
        scheduleReconnect();
        return;
      }
    } else {
      session.unansweredSince = 0;
    }
    if (now - session.lastPingAt >= PING_EVERY_MS) sendPing(ws);
  };
  session.heartbeatTimer = setInterval(tick, HEARTBEAT_TICK_MS);
}

function sendPing(ws) {
  try {
    ws.send('ping');
    const now = Date.now();
    session.lastPingAt = now;
    if (session.unansweredSince <= session.lastMessageAt) session.unansweredSince = now;
  } catch { /* closing: onclose handles it */ }
}

function stopHeartbeat() {
  clearInterval(session.heartbeatTimer);
  session.heartbeatTimer = 0;
}

// Forget the current socket without waiting for its close event: on a dead
// link the closing handshake can take minutes to time out.
function abandonWebSocket(code = 1000, reason = '') {
  const ws = session.ws;
  session.ws = null;
  stopHeartbeat();
  if (ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(code, reason); } catch { /* already closed */ }
  }
}

function openSSE() {
  recordAttempt('sse');
  notesync.transport = 'sse';
  let es;
  try {
    es = new EventSource(withPin(`/events?since=${notesync.version}${changeQuery(notesync.change)}`));
  } catch {
    scheduleReconnect();
    return;
  }
  session.es = es;
  // Whether this stream ever reached the server: if SSE cannot connect
  // either, the server is down rather than WebSocket-hostile, so the next
  // attempt goes back to trying the WebSocket first.
  let reached = false;
  es.onopen = () => { reached = true; };

  const onEvent = (e) => {
    if (es !== session.es) return;
    session.lastMessageAt = Date.now();
    const msg = parseJSON(e.data);
    if (!msg || typeof msg !== 'object') return;
    if (!msg.type) msg.type = e.type;
    handleMessage(msg);
  };
  for (const type of ['hello', 'note_changed', 'presence', 'message']) es.addEventListener(type, onEvent);

  // The server's way to say "closed with code N" on a stream.
  es.addEventListener('close', (e) => {
    if (es !== session.es) return;
    const info = parseJSON(e.data) || {};
    logEvent('close', `close ${info.code ?? ''} ${info.reason ?? ''}`.trim());
    closeEventSource();
    if (Number(info.code) === 1008) endSession();
    else scheduleReconnect();
  });

  es.onerror = () => {
    if (es !== session.es) return;
    const refused = es.readyState === EventSource.CLOSED; // e.g. HTTP 401/403/5xx
    // The tab runs its own backoff rather than the browser's built-in
    // retry, so the delays, the attempts log and since= stay its own.
    closeEventSource();
    if (!reached) {
      session.preferSSE = false;
      session.wsFailuresBeforeOpen = 0;
    }
    if (refused) checkSessionThenEnd({ otherwise: scheduleReconnect });
    else scheduleReconnect();
  };
}

function closeEventSource() {
  const es = session.es;
  session.es = null;
  clearTimeout(session.probeTimer);
  session.probeTimer = 0;
  if (es) es.close();
}

function scheduleReconnect() {
  if (session.ended || session.suspended) return;
  clearTimeout(session.reconnectTimer);
  // Exponential backoff with full jitter, capped: spreads the reconnect
  // storm when a node restarts with many tabs attached.
  const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(session.backoffAttempt, 16));
  const delay = Math.max(BACKOFF_MIN_MS, Math.random() * cap);
  session.backoffAttempt++;
  session.nextDelay = delay;
  reconnectingIn(delay);
  session.reconnectTimer = setTimeout(() => {
    setStatus('connecting', 'Reconnecting…');
    connect();
  }, delay);
}

function endSession() {
  if (session.ended) return;
  session.ended = true;
  clearTimeout(session.reconnectTimer);
  abandonWebSocket();
  closeEventSource();
  setStatus('closed', 'Your session ended. Log in again to see your notes:', { href: '/login', text: 'Log in' });
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
  if (status === 401) endSession();
  else if (otherwise) otherwise();
}

function handleMessage(msg) {
  if (session.ended) return;
  logEvent(msg.type, describe(msg));
  switch (msg.type) {
    case 'hello': {
      session.backoffAttempt = 0;
      const where = `${msg.node || 'the server'}${msg.region ? ` (${msg.region})` : ''}`;
      const onSSE = session.es !== null && session.ws === null;
      setStatus('open', `Connected to ${where}`);
      setStatusTitle(onSSE ? 'live updates over server-sent events' : 'live updates over a WebSocket');
      clearPassedErrors();
      if (onSSE) scheduleWebSocketProbe(0);
      handlers.hello(msg);
      break;
    }
    case 'note_changed':
      handlers.changed(msg);
      break;
    case 'presence':
      handlers.presence(msg);
      break;
    default:
      break; // unknown types are logged and otherwise ignored
  }
}

// While on SSE, the tab tries the WebSocket again in the background, in
// hidden tabs too: after WS_PROBE_FIRST_MS, then twice as long each time
// up to WS_PROBE_CAP_MS, each delay jittered (half fixed, half random) so
// that the tabs of a restarted node do not all try at once. The first
// WebSocket that opens takes over from the EventSource.
function scheduleWebSocketProbe(attempt) {
  clearTimeout(session.probeTimer);
  const span = Math.min(WS_PROBE_CAP_MS, WS_PROBE_FIRST_MS * 2 ** Math.min(attempt, 16));
  const delay = span / 2 + Math.random() * (span / 2);
  session.probeTimer = setTimeout(() => {
    session.probeTimer = 0;
    if (!session.es || session.ws || session.ended || session.suspended) return;
    openWebSocket(true, () => {
      if (session.es && !session.ws) scheduleWebSocketProbe(attempt + 1);
    });
  }, delay);
}

// start opens the connection. The messages go to on.hello, on.changed
// (note_changed) and on.presence, each called with the message.
export function start(on) {
  handlers = { ...handlers, ...on };

  // Back online, or back in view: do not sit out the rest of a long
  // backoff, and check a quiet socket right away.
  window.addEventListener('online', () => {
    if (session.reconnectTimer && !session.ws && !session.es) connect();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    if (session.ws && session.ws.readyState === WebSocket.OPEN) sendPing(session.ws);
  });

  // Leaving the page (or entering the back/forward cache): close cleanly
  // and do not reconnect; a page restored from the cache connects again.
  window.addEventListener('pagehide', () => {
    session.suspended = true;
    clearTimeout(session.reconnectTimer);
    abandonWebSocket(1000, 'page closed');
    closeEventSource();
  });
  window.addEventListener('pageshow', (e) => {
    if (!e.persisted) return;
    session.suspended = false;
    session.backoffAttempt = 0;
    connect();
  });

  setStatus('connecting', 'Connecting…');
  connect();
}
