// notesync: one live connection to the node (docs/PROTOCOL.md §4, §13),
// with nothing of the page in it, so that it runs in a tab or in the
// worker that the tabs of a browser share (socket-worker.js, relay.js).
//
// One live transport at a time: a WebSocket, or an EventSource after the
// WebSocket failed to open WS_FAILS_BEFORE_SSE times in a row; while on
// SSE, the WebSocket is tried again in the background. Every (re)connection
// asks for since=<a version the tabs have>, so the server follows its
// hello with a catch-up "sync" when they are behind: nothing is missed.
// Reconnects back off exponentially with jitter, capped at 10 s, and never
// follow a 1008 (the session ended).

const PING_EVERY_MS = 20000;      // client text "ping" while a socket is open
const SILENCE_LIMIT_MS = 45000;   // no message for this long: link is dead
const HEARTBEAT_TICK_MS = 5000;   // how often the heartbeat checks the above
const PING_AT_MOST_MS = 2000;     // pings asked for (a tab came into view) at most this often
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;
const BACKOFF_MIN_MS = 250;
const WS_FAILS_BEFORE_SSE = 2;    // WebSocket failed to open this many times in a row
const WS_PROBE_FIRST_MS = 2000;   // while on SSE, try the WebSocket again after this,
const WS_PROBE_CAP_MS = 60000;    // doubling up to this
const REPORT_PATIENCE_MS = 2000;  // how long an editing report over SSE is tried
const REPORT_RETRY_MS = 400;
// Reports go at most this often: a browser restoring a hundred tabs at once
// must stay under the server's 10 client messages a second (§7).
const REPORT_GAP_MS = 250;

function parseJSON(text) {
  try { return JSON.parse(text); } catch { return null; }
}

// openConnection connects, and keeps connected until end() or suspend().
//
//   pin     the tab's pin as a query string ("node=node2"), carried on
//           every request (docs/PROTOCOL.md §3)
//   since   () => the version to ask since= for, at each (re)connection
//   emit    (event) => void: what becomes of the connection, for the tabs
//           to show. Every event carries transport (what window.notesync
//           says: 'ws', 'sse' or null) and via (the transport that is
//           open, or null):
//             {op: 'attempt', entry}       one entry of window.notesync.attempts
//             {op: 'waiting', delay}       the next attempt comes in delay ms
//             {op: 'reconnecting'}         it is being made
//             {op: 'message', msg}         a message of the server's
//             {op: 'log', type, text}      a line for the event log
//             {op: 'ended'}                the session ended: no more attempts
//
// What the connection reports of the tabs' editors is set with report()
// (§7, §13): it is sent on every new connection, and again when it changes.
export function openConnection({ pin = '', since = () => 0, emit = () => {} }) {
  const s = {
    ended: false,
    ws: null,
    es: null,
    transport: null,
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
    suspended: true,      // not started, or set aside (no tab, or the page is hidden in the back/forward cache)
    conn: '',             // the id the current connection's hello carried
    wanted: null,         // the report to make: {tabs} or {note_id}
    reported: null,       // JSON of the report the current connection has
    reportedAt: 0,        // when the last report went, on this connection
    reportTimer: 0,
  };

  const via = () => {
    if (s.ws && s.ws.readyState === WebSocket.OPEN) return 'ws';
    return s.es ? 'sse' : null;
  };
  const tell = (event) => emit({ ...event, transport: s.transport, via: via() });
  const withPin = (path) => (pin ? `${path}${path.includes('?') ? '&' : '?'}${pin}` : path);

  function recordAttempt(transport, probe = false) {
    const entry = { at: Date.now(), transport, delay: probe ? 0 : Math.round(s.nextDelay) };
    if (probe) entry.probe = true;
    else s.nextDelay = 0;
    tell({ op: 'attempt', entry });
  }

  function connect() {
    clearTimeout(s.reconnectTimer);
    s.reconnectTimer = 0;
    if (s.ended || s.suspended) return;
    if (s.preferSSE) openSSE(); else openWebSocket(false);
  }

  function wsURL() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}${withPin(`/ws?since=${since()}`)}`;
  }

  // probe=true: on SSE, the WebSocket is tried on the side; it replaces the
  // EventSource only if it opens, and its failure only schedules the next
  // try (onProbeFailed).
  function openWebSocket(probe, onProbeFailed = () => {}) {
    let ws;
    if (!probe) s.transport = 'ws';
    recordAttempt('ws', probe);
    try {
      ws = new WebSocket(wsURL());
    } catch {
      if (probe) onProbeFailed(); else onWebSocketFailed(false);
      return;
    }
    if (!probe) s.ws = ws;
    let opened = false;

    ws.onopen = () => {
      opened = true;
      if (probe) {
        if (s.ended || s.ws) { ws.close(1000); return; }
        closeEventSource();
        s.ws = ws;
        s.transport = 'ws';
        s.preferSSE = false;
      }
      s.wsFailuresBeforeOpen = 0;
      startHeartbeat(ws);
    };

    ws.onmessage = (e) => {
      if (ws !== s.ws) return;
      s.lastMessageAt = Date.now();
      if (typeof e.data !== 'string' || e.data === 'pong') return;
      const msg = parseJSON(e.data);
      if (msg && typeof msg.type === 'string') handleMessage(msg);
    };

    ws.onclose = (e) => {
      if (probe && !opened) { onProbeFailed(); return; }
      if (ws !== s.ws) return; // a dropped probe or an abandoned socket
      s.ws = null;
      stopHeartbeat();
      if (e.code === 1008) { end(); return; }
      onWebSocketFailed(opened);
    };
    // onerror is always followed by onclose; nothing to do there.
  }

  function onWebSocketFailed(hadOpened) {
    if (!hadOpened && ++s.wsFailuresBeforeOpen >= WS_FAILS_BEFORE_SSE) s.preferSSE = true;
    scheduleReconnect();
  }

  // Dead-link detection. A socket can look open for minutes after the
  // network died, so a ping goes every PING_EVERY_MS and the link is given
  // up after SILENCE_LIMIT_MS without any message. It only counts as dead
  // if a ping has itself gone unanswered for a while: a background tab's
  // timers may be throttled to once a minute, and the resulting lull must
  // not look like silence on a perfectly healthy link.
  function startHeartbeat(ws) {
    stopHeartbeat();
    s.lastMessageAt = Date.now();
    s.lastPingAt = s.lastMessageAt;
    s.unansweredSince = 0;
    const tick = () => {
      if (ws !== s.ws || ws.readyState !== WebSocket.OPEN) return;
      const now = Date.now();
      if (s.unansweredSince > s.lastMessageAt) {
        if (now - s.lastMessageAt > SILENCE_LIMIT_MS && now - s.unansweredSince > HEARTBEAT_TICK_MS * 2) {
          abandonWebSocket(4000, 'heartbeat timeout');
          scheduleReconnect();
          return;
        }
      } else {
        s.unansweredSince = 0;
      }
      if (now - s.lastPingAt >= PING_EVERY_MS) sendPing(ws);
    };
    s.heartbeatTimer = setInterval(tick, HEARTBEAT_TICK_MS);
  }

  function sendPing(ws) {
    try {
      ws.send('ping');
      const now = Date.now();
      s.lastPingAt = now;
      if (s.unansweredSince <= s.lastMessageAt) s.unansweredSince = now;
    } catch { /* closing: onclose handles it */ }
  }

  function stopHeartbeat() {
    clearInterval(s.heartbeatTimer);
    s.heartbeatTimer = 0;
  }

  // Forget the current socket without waiting for its close event: on a
  // dead link the closing handshake can take minutes to time out.
  function abandonWebSocket(code = 1000, reason = '') {
    const ws = s.ws;
    s.ws = null;
    stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(code, reason); } catch { /* already closed */ }
    }
  }

  function openSSE() {
    s.transport = 'sse';
    recordAttempt('sse');
    let es;
    try {
      es = new EventSource(withPin(`/events?since=${since()}`));
    } catch {
      scheduleReconnect();
      return;
    }
    s.es = es;
    // Whether this stream ever reached the server: if SSE cannot connect
    // either, the server is down rather than WebSocket-hostile, so the next
    // attempt goes back to trying the WebSocket first.
    let reached = false;
    es.onopen = () => { reached = true; };

    const onEvent = (e) => {
      if (es !== s.es) return;
      s.lastMessageAt = Date.now();
      const msg = parseJSON(e.data);
      if (!msg || typeof msg !== 'object') return;
      if (!msg.type) msg.type = e.type;
      handleMessage(msg);
    };
    for (const type of ['hello', 'note_changed', 'presence', 'message']) es.addEventListener(type, onEvent);

    // The server's way to say "closed with code N" on a stream.
    es.addEventListener('close', (e) => {
      if (es !== s.es) return;
      const info = parseJSON(e.data) || {};
      tell({ op: 'log', type: 'close', text: `close ${info.code ?? ''} ${info.reason ?? ''}`.trim() });
      closeEventSource();
      if (Number(info.code) === 1008) end();
      else scheduleReconnect();
    });

    es.onerror = () => {
      if (es !== s.es) return;
      const refused = es.readyState === EventSource.CLOSED; // e.g. HTTP 401/403/5xx
      // The connection runs its own backoff rather than the browser's
      // built-in retry, so the delays, the attempts log and since= stay
      // its own.
      closeEventSource();
      if (!reached) {
        s.preferSSE = false;
        s.wsFailuresBeforeOpen = 0;
      }
      if (refused) checkSession().then((over) => { if (over) end(); else scheduleReconnect(); });
      else scheduleReconnect();
    };
  }

  function closeEventSource() {
    const es = s.es;
    s.es = null;
    clearTimeout(s.probeTimer);
    s.probeTimer = 0;
    if (es) es.close();
  }

  function scheduleReconnect() {
    if (s.ended || s.suspended) return;
    clearTimeout(s.reconnectTimer);
    // Exponential backoff with full jitter, capped: spreads the reconnect
    // storm when a node restarts with many browsers attached.
    const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(s.backoffAttempt, 16));
    const delay = Math.max(BACKOFF_MIN_MS, Math.random() * cap);
    s.backoffAttempt++;
    s.nextDelay = delay;
    tell({ op: 'waiting', delay });
    s.reconnectTimer = setTimeout(() => {
      tell({ op: 'reconnecting' });
      connect();
    }, delay);
  }

  // checkSession resolves true when the API says the session is over. A
  // 401 on a stream may also be a misbehaving proxy; the API is asked to
  // be sure.
  async function checkSession() {
    try {
      const res = await fetch(withPin('/api/notes'), {
        credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' },
      });
      return res.status === 401;
    } catch {
      return false; // offline: not proof of anything
    }
  }

  // shut closes whatever is open and stops trying.
  function shut(code, reason) {
    clearTimeout(s.reconnectTimer);
    s.reconnectTimer = 0;
    abandonWebSocket(code, reason);
    closeEventSource();
    s.conn = '';
  }

  function end() {
    if (s.ended) return;
    s.ended = true;
    shut();
    tell({ op: 'ended' });
  }

  function handleMessage(msg) {
    if (s.ended) return;
    if (msg.type === 'hello') {
      s.backoffAttempt = 0;
      s.conn = typeof msg.conn === 'string' ? msg.conn : '';
      s.reported = null;
      s.reportedAt = 0;
      if (s.es !== null && s.ws === null) scheduleWebSocketProbe(0);
    }
    tell({ op: 'message', msg });
    if (msg.type === 'hello') sendReport();
  }

  // While on SSE, the WebSocket is tried again in the background, in hidden
  // tabs too: after WS_PROBE_FIRST_MS, then twice as long each time up to
  // WS_PROBE_CAP_MS, each delay jittered (half fixed, half random) so that
  // the browsers of a restarted node do not all try at once. The first
  // WebSocket that opens takes over from the EventSource.
  function scheduleWebSocketProbe(attempt) {
    clearTimeout(s.probeTimer);
    const span = Math.min(WS_PROBE_CAP_MS, WS_PROBE_FIRST_MS * 2 ** Math.min(attempt, 16));
    const delay = span / 2 + Math.random() * (span / 2);
    s.probeTimer = setTimeout(() => {
      s.probeTimer = 0;
      if (!s.es || s.ws || s.ended || s.suspended) return;
      openWebSocket(true, () => {
        if (s.es && !s.ws) scheduleWebSocketProbe(attempt + 1);
      });
    }, delay);
  }

  // sendReport tells the server what the tabs have open, when that changed
  // since this connection was last told: a text message on a WebSocket, a
  // POST on SSE (§7), which waits a moment, quietly: a report is soon out
  // of date.
  function sendReport() {
    const json = s.wanted && JSON.stringify(s.wanted);
    if (!json || json === s.reported || !s.conn || s.reportTimer) return;
    const wait = s.reportedAt + REPORT_GAP_MS - Date.now();
    if (wait > 0) {
      s.reportTimer = setTimeout(() => { s.reportTimer = 0; sendReport(); }, wait);
      return;
    }
    const type = s.wanted.tabs ? 'tabs' : 'editing';
    switch (via()) {
      case 'ws':
        try { s.ws.send(JSON.stringify({ type, ...s.wanted })); } catch { return; }
        break;
      case 'sse':
        postReport(s.conn, json);
        break;
      default:
        return;
    }
    s.reported = json;
    s.reportedAt = Date.now();
  }

  async function postReport(conn, json) {
    const key = typeof crypto.randomUUID === 'function' ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    const body = JSON.stringify({ conn, ...JSON.parse(json) });
    for (const start = Date.now(); Date.now() - start < REPORT_PATIENCE_MS;) {
      const res = await fetch(withPin('/api/editing'), {
        method: 'POST', credentials: 'same-origin', body,
        headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'Idempotency-Key': key },
      }).catch(() => null);
      if (res && res.status !== 503 && res.status !== 504) return;
      await new Promise((resolve) => setTimeout(resolve, REPORT_RETRY_MS));
    }
    if (s.conn === conn && s.reported === json) s.reported = null; // tried again on the next change or connection
  }

  return {
    via,
    isEnded: () => s.ended,
    // report sets what the tabs have open: {tabs: {<tab>: note_id|null}}
    // for a connection that tabs share, {note_id} for a tab's own.
    report(fields) {
      s.wanted = fields;
      sendReport();
    },
    // ping checks a quiet socket now (a tab came into view).
    ping() {
      if (s.ws && s.ws.readyState === WebSocket.OPEN && Date.now() - s.lastPingAt >= PING_AT_MOST_MS) sendPing(s.ws);
    },
    // online: back online, do not sit out the rest of a long backoff.
    online() {
      if (s.reconnectTimer && !s.ws && !s.es) connect();
    },
    end,
    // suspend closes the connection, and resume opens it again: for a
    // page in the back/forward cache, or a shared connection no tab uses.
    suspend() {
      s.suspended = true;
      shut(1000, 'page closed');
    },
    resume() {
      if (!s.suspended && !s.ended) return;
      s.suspended = false;
      s.ended = false;
      s.backoffAttempt = 0;
      connect();
    },
  };
}
