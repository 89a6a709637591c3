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

// Connection connects once resumed (resume()), and keeps connected until
// end() or suspend(); openConnection makes one.
//
//   pin     the tab's pin as a query string ("node=node2"), carried on
//           every request (docs/PROTOCOL.md §3)
//   since   () => the version to ask since= for, at each (re)connection
//   change  () => the change the tabs have seen at that version ('' when
//           not known), asked for beside it (change=, docs/PROTOCOL.md §11)
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
export class Connection {
  constructor({ pin = '', since = () => 0, change = () => '', emit = () => {} }) {
    this.pin = pin;
    this.since = since;
    this.change = change;
    this.emit = emit;
    this.ended = false;
    this.ws = null;
    this.es = null;
    this.transport = null;
    this.wsFailuresBeforeOpen = 0;
    this.preferSSE = false;
    this.backoffAttempt = 0;
    this.nextDelay = 0;         // delay that preceded the coming attempt (for attempts[])
    this.reconnectTimer = 0;
    this.heartbeatTimer = 0;
    this.probeTimer = 0;
    this.lastMessageAt = 0;
    this.lastPingAt = 0;
    this.unansweredSince = 0;   // first ping sent since the last message, 0 if none
    this.suspended = true;      // not started, or set aside (no tab, or the page is hidden in the back/forward cache)
    this.conn = '';             // the id the current connection's hello carried
    this.wanted = null;         // the report to make: {tabs} or {note_id}
    this.reported = null;       // JSON of the report the current connection has
    this.reportedAt = 0;        // when the last report went, on this connection
    this.reportTimer = 0;
  }

  // via names the transport that is open: 'ws', 'sse' or null.
  via() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return 'ws';
    return this.es ? 'sse' : null;
  }

  tell(event) { this.emit({ ...event, transport: this.transport, via: this.via() }); }

  withPin(path) { return this.pin ? `${path}${path.includes('?') ? '&' : '?'}${this.pin}` : path; }

  recordAttempt(transport, probe = false) {
    const entry = { at: Date.now(), transport, delay: probe ? 0 : Math.round(this.nextDelay) };
    if (probe) entry.probe = true;
    else this.nextDelay = 0;
    this.tell({ op: 'attempt', entry });
  }

  connect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = 0;
    if (this.ended || this.suspended) return;
    if (this.preferSSE) this.openSSE(); else this.openWebSocket(false);
  }

  // resumeQuery names what the tabs have seen: since=V, and change=C when
  // the change at V is known.
  resumeQuery() {
    const change = this.change();
    return `since=${this.since()}${change ? `&change=${encodeURIComponent(change)}` : ''}`;
  }

  wsURL() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}${this.withPin(`/ws?${this.resumeQuery()}`)}`;
  }

  // probe=true: on SSE, the WebSocket is tried on the side; it replaces the
  // EventSource only if it opens, and its failure only schedules the next
  // try (onProbeFailed).
  openWebSocket(probe, onProbeFailed = () => {}) {
    let ws;
    if (!probe) this.transport = 'ws';
    this.recordAttempt('ws', probe);
    try {
      ws = new WebSocket(this.wsURL());
    } catch {
      if (probe) onProbeFailed(); else this.onWebSocketFailed(false);
      return;
    }
    if (!probe) this.ws = ws;
    let opened = false;

    ws.onopen = () => {
      opened = true;
      if (probe) {
        if (this.ended || this.ws) { ws.close(1000); return; }
        this.closeEventSource();
        this.ws = ws;
        this.transport = 'ws';
        this.preferSSE = false;
      }
      this.wsFailuresBeforeOpen = 0;
      this.startHeartbeat(ws);
    };

    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      this.lastMessageAt = Date.now();
      if (typeof e.data !== 'string' || e.data === 'pong') return;
      const msg = parseJSON(e.data);
      if (msg && typeof msg.type === 'string') this.handleMessage(msg);
    };

    ws.onclose = (e) => {
      if (probe && !opened) { onProbeFailed(); return; }
      if (ws !== this.ws) return; // a dropped probe or an abandoned socket
      this.ws = null;
      this.stopHeartbeat();
      if (e.code === 1008) { this.end(); return; }
      this.onWebSocketFailed(opened);
    };
    // onerror is always followed by onclose; nothing to do there.
  }

  onWebSocketFailed(hadOpened) {
    if (!hadOpened && ++this.wsFailuresBeforeOpen >= WS_FAILS_BEFORE_SSE) this.preferSSE = true;
    this.scheduleReconnect();
  }

  // Dead-link detection. A socket can look open for minutes after the
  // network died, so a ping goes every PING_EVERY_MS and the link is given
  // up after SILENCE_LIMIT_MS without any message. It only counts as dead
  // if a ping has itself gone unanswered for a while: a background tab's
  // timers may be throttled to once a minute, and the resulting lull must
  // not look like silence on a perfectly healthy link.
  startHeartbeat(ws) {
    this.stopHeartbeat();
    this.lastMessageAt = Date.now();
    this.lastPingAt = this.lastMessageAt;
    this.unansweredSince = 0;
    const tick = () => {
      if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
      const now = Date.now();
      if (this.unansweredSince > this.lastMessageAt) {
        if (now - this.lastMessageAt > SILENCE_LIMIT_MS && now - this.unansweredSince > HEARTBEAT_TICK_MS * 2) {
          this.abandonWebSocket(4000, 'heartbeat timeout');
          this.scheduleReconnect();
          return;
        }
      } else {
        this.unansweredSince = 0;
      }
      if (now - this.lastPingAt >= PING_EVERY_MS) this.sendPing(ws);
    };
    this.heartbeatTimer = setInterval(tick, HEARTBEAT_TICK_MS);
  }

  sendPing(ws) {
    try {
      ws.send('ping');
      const now = Date.now();
      this.lastPingAt = now;
      if (this.unansweredSince <= this.lastMessageAt) this.unansweredSince = now;
    } catch { /* closing: onclose handles it */ }
  }

  stopHeartbeat() {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = 0;
  }

  // Forget the current socket without waiting for its close event: on a
  // dead link the closing handshake can take minutes to time out.
  abandonWebSocket(code = 1000, reason = '') {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(code, reason); } catch { /* already closed */ }
    }
  }

  openSSE() {
    this.transport = 'sse';
    this.recordAttempt('sse');
    let es;
    try {
      es = new EventSource(this.withPin(`/events?${this.resumeQuery()}`));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.es = es;
    // Whether this stream ever reached the server: if SSE cannot connect
    // either, the server is down rather than WebSocket-hostile, so the next
    // attempt goes back to trying the WebSocket first.
    let reached = false;
    es.onopen = () => { reached = true; };

    const onEvent = (e) => {
      if (es !== this.es) return;
      this.lastMessageAt = Date.now();
      const msg = parseJSON(e.data);
      if (!msg || typeof msg !== 'object') return;
      if (!msg.type) msg.type = e.type;
      this.handleMessage(msg);
    };
    for (const type of ['hello', 'note_changed', 'presence', 'message']) es.addEventListener(type, onEvent);

    // The server's way to say "closed with code N" on a stream.
    es.addEventListener('close', (e) => {
      if (es !== this.es) return;
      const info = parseJSON(e.data) || {};
      this.tell({ op: 'log', type: 'close', text: `close ${info.code ?? ''} ${info.reason ?? ''}`.trim() });
      this.closeEventSource();
      if (Number(info.code) === 1008) this.end();
      else this.scheduleReconnect();
    });

    es.onerror = () => {
      if (es !== this.es) return;
      const refused = es.readyState === EventSource.CLOSED; // e.g. HTTP 401/403/5xx
      // The connection runs its own backoff rather than the browser's
      // built-in retry, so the delays, the attempts log and since= stay
      // its own.
      this.closeEventSource();
      if (!reached) {
        this.preferSSE = false;
        this.wsFailuresBeforeOpen = 0;
      }
      if (refused) this.checkSession().then((over) => { if (over) this.end(); else this.scheduleReconnect(); });
      else this.scheduleReconnect();
    };
  }

  closeEventSource() {
    const es = this.es;
    this.es = null;
    clearTimeout(this.probeTimer);
    this.probeTimer = 0;
    if (es) es.close();
  }

  scheduleReconnect() {
    if (this.ended || this.suspended) return;
    clearTimeout(this.reconnectTimer);
    // Exponential backoff with full jitter, capped: spreads the reconnect
    // storm when a node restarts with many browsers attached.
    const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(this.backoffAttempt, 16));
    const delay = Math.max(BACKOFF_MIN_MS, Math.random() * cap);
    this.backoffAttempt++;
    this.nextDelay = delay;
    this.tell({ op: 'waiting', delay });
    this.reconnectTimer = setTimeout(() => {
      this.tell({ op: 'reconnecting' });
      this.connect();
    }, delay);
  }

  // checkSession resolves true when the API says the session is over. A
  // 401 on a stream may also be a misbehaving proxy; the API is asked to
  // be sure.
  async checkSession() {
    try {
      const res = await fetch(this.withPin('/api/notes'), {
        credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' },
      });
      return res.status === 401;
    } catch {
      return false; // offline: not proof of anything
    }
  }

  // shut closes whatever is open and stops trying.
  shut(code, reason) {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = 0;
    this.abandonWebSocket(code, reason);
    this.closeEventSource();
    this.conn = '';
  }

  end() {
    if (this.ended) return;
    this.ended = true;
    this.shut();
    this.tell({ op: 'ended' });
  }

  handleMessage(msg) {
    if (this.ended) return;
    if (msg.type === 'hello') {
      this.backoffAttempt = 0;
      this.conn = typeof msg.conn === 'string' ? msg.conn : '';
      this.reported = null;
      this.reportedAt = 0;
      if (this.es !== null && this.ws === null) this.scheduleWebSocketProbe(0);
    }
    this.tell({ op: 'message', msg });
    if (msg.type === 'hello') this.sendReport();
  }

  // While on SSE, the WebSocket is tried again in the background, in hidden
  // tabs too: after WS_PROBE_FIRST_MS, then twice as long each time up to
  // WS_PROBE_CAP_MS, each delay jittered (half fixed, half random) so that
  // the browsers of a restarted node do not all try at once. The first
  // WebSocket that opens takes over from the EventSource.
  scheduleWebSocketProbe(attempt) {
    clearTimeout(this.probeTimer);
    const span = Math.min(WS_PROBE_CAP_MS, WS_PROBE_FIRST_MS * 2 ** Math.min(attempt, 16));
    const delay = span / 2 + Math.random() * (span / 2);
    this.probeTimer = setTimeout(() => {
      this.probeTimer = 0;
      if (!this.es || this.ws || this.ended || this.suspended) return;
      this.openWebSocket(true, () => {
        if (this.es && !this.ws) this.scheduleWebSocketProbe(attempt + 1);
      });
    }, delay);
  }

  // sendReport tells the server what the tabs have open, when that changed
  // since this connection was last told: a text message on a WebSocket, a
  // POST on SSE (§7), which waits a moment, quietly: a report is soon out
  // of date.
  sendReport() {
    const json = this.wanted && JSON.stringify(this.wanted);
    if (!json || json === this.reported || !this.conn || this.reportTimer) return;
    const wait = this.reportedAt + REPORT_GAP_MS - Date.now();
    if (wait > 0) {
      this.reportTimer = setTimeout(() => { this.reportTimer = 0; this.sendReport(); }, wait);
      return;
    }
    const type = this.wanted.tabs ? 'tabs' : 'editing';
    switch (this.via()) {
      case 'ws':
        try { this.ws.send(JSON.stringify({ type, ...this.wanted })); } catch { return; }
        break;
      case 'sse':
        this.postReport(this.conn, json);
        break;
      default:
        return;
    }
    this.reported = json;
    this.reportedAt = Date.now();
  }

  async postReport(conn, json) {
    const key = typeof crypto.randomUUID === 'function' ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    const body = JSON.stringify({ conn, ...JSON.parse(json) });
    for (const start = Date.now(); Date.now() - start < REPORT_PATIENCE_MS;) {
      const res = await fetch(this.withPin('/api/editing'), {
        method: 'POST', credentials: 'same-origin', body,
        headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'Idempotency-Key': key },
      }).catch(() => null);
      if (res && res.status !== 503 && res.status !== 504) return;
      await new Promise((resolve) => setTimeout(resolve, REPORT_RETRY_MS));
    }
    if (this.conn === conn && this.reported === json) this.reported = null; // tried again on the next change or connection
  }

  // isEnded reports whether the session ended (1008, or end()).
  isEnded() { return this.ended; }

  // report sets what the tabs have open: {tabs: {<tab>: note_id|null}}
  // for a connection that tabs share, {note_id} for a tab's own.
  report(fields) {
    this.wanted = fields;
    this.sendReport();
  }

  // ping checks a quiet socket now (a tab came into view).
  ping() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && Date.now() - this.lastPingAt >= PING_AT_MOST_MS) this.sendPing(this.ws);
  }

  // online: back online, do not sit out the rest of a long backoff.
  online() {
    if (this.reconnectTimer && !this.ws && !this.es) this.connect();
  }

  // suspend closes the connection, and resume opens it again: for a
  // page in the back/forward cache, or a shared connection no tab uses.
  suspend() {
    this.suspended = true;
    this.shut(1000, 'page closed');
  }

  resume() {
    if (!this.suspended && !this.ended) return;
    this.suspended = false;
    this.ended = false;
    this.backoffAttempt = 0;
    this.connect();
  }
}

// openConnection connects (see Connection).
export const openConnection = (opts) => new Connection(opts);
