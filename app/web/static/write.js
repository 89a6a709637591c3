// notesync: the one way the page writes (docs/PROTOCOL.md §3, §6).
//
// Every write, whether fetch() sends it or htmx does (the note form), goes
// through send(): a fresh Idempotency-Key, and retries with the SAME key
// after a 503 (no primary took it), a 504 (outcome unknown) or a network
// error, for as long as the primary can take to move (§11), so that the
// server applies the write once. Meanwhile the page says, calmly, that it
// waits for the cluster. Edits and deletes add If-Match. A write that
// cannot reach the node while the tab is offline is not tried again here:
// its caller hands it, with its key, to the queue of pending writes
// (queue.js), which sends it once the connection returns (§12).
//
// It also keeps the tab's own writes in flight: the server may push our own
// note_changed before the write's answer arrives, and the list must not
// glow our own note as if it came from elsewhere (waitForOwnWrites).

import { sleep, withPin, inWords } from './page.js';
import { waitingForCluster, connState } from './status.js';

// A write waits for as long as a failover can take: the lease's TTL (5 s
// locally, 10 s on Fly.io), its lock delay, the election and a node's
// restart, with room to spare (docs/PROTOCOL.md §11).
export const WRITE_PATIENCE_MS = 30000;
const RETRY_FIRST_MS = 500;     // the first wait without a Retry-After; doubles
const RETRY_MAX_MS = 4000;      // no wait between two tries is longer
const OWN_WRITE_WAIT_MS = 2500; // see waitForOwnWrites()

// An Idempotency-Key per write. crypto.randomUUID only exists in secure
// contexts (https, or http on localhost/127.0.0.1); a cluster node reached
// over plain http by another name has only getRandomValues.
export function newIdempotencyKey() {
  const c = window.crypto;
  if (c && typeof c.randomUUID === 'function') {
    try { return c.randomUUID(); } catch { /* insecure context: fall through */ }
  }
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') {
    c.getRandomValues(b);
  } else {
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  }
  b[6] = (b[6] & 0x0f) | 0x40; // version 4
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const ifMatch = (rev) => ({ 'If-Match': `"${rev}"` });

// send makes one write. attempt(key) sends it once with that
// Idempotency-Key and resolves with the answer (a Response, or what
// viaHtmx makes of htmx's XMLHttpRequest), or null when the server was not
// reached. send resolves with the final answer, or null.
//
// A 503, a 504 or no answer is tried again with the same key, after what
// Retry-After says (capped, with jitter) or a growing wait, until patienceMs
// have gone by; any other answer, a 4xx above all, is final. While it
// waits the page shows that it waits for the cluster (quiet: it does not;
// the editor's reports, which are short and many, are quiet). No answer
// while the tab is offline is final at once: the node is gone, and the
// caller queues the write with the same key. key is the write's
// Idempotency-Key, a new one unless given.
export async function send(attempt, { patienceMs = WRITE_PATIENCE_MS, quiet = false, key = newIdempotencyKey() } = {}) {
  const start = Date.now();
  let waiting = false;
  try {
    for (let tries = 1; ; tries++) {
      const res = await attempt(key);
      if (!res && (connState() !== 'open' || navigator.onLine === false)) return null;
      const wait = retryWait(res, tries, Date.now() - start, patienceMs);
      if (wait < 0) return res;
      if (!waiting && !quiet) { waiting = true; waitingForCluster(+1); }
      await sleep(wait);
    }
  } finally {
    if (waiting) waitingForCluster(-1);
  }
}

// retryWait says how long to wait before trying a write again after res,
// the answer to try number tries, elapsed ms after the first was sent; or
// -1 when res is final: it is not a 503, a 504 or a network error, or the
// wait would end past patienceMs. Waits are jittered so that the tabs of a
// cluster that lost its primary do not all come back at once.
export function retryWait(res, tries, elapsed, patienceMs, random = Math.random) {
  if (res && res.status !== 503 && res.status !== 504) return -1;
  const backoff = Math.min(RETRY_FIRST_MS * 2 ** (tries - 1), RETRY_MAX_MS);
  const base = Math.min(retryAfterMs(res, backoff), RETRY_MAX_MS);
  const wait = Math.round(base * (0.75 + random() / 2));
  return elapsed + wait > patienceMs ? -1 : wait;
}

// viaFetch is the attempt of a write that fetch() sends: JSON in, JSON out.
export function viaFetch(method, url, { json, headers = {} } = {}) {
  const target = withPin(url);
  return (key) => {
    const init = {
      method,
      credentials: 'same-origin',
      headers: { Accept: 'application/json', ...headers, 'Idempotency-Key': key },
    };
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    }
    return fetch(target, init).catch(() => null);
  };
}

// viaHtmx is the attempt of a form's write that htmx sends (with its
// validation, disabled controls and events): values are what is sent, the
// same on a retry whatever the form holds by then, so a retry is not
// checked against what the person types meanwhile (an emptied or
// over-long textarea). The answer looks like a Response: status, ok,
// headers.get() and text().
export function viaHtmx(form, url, values) {
  let tries = 0;
  const attempt = (key) => new Promise((resolve) => {
    const retry = tries++ > 0;
    const configuring = (e) => {
      if (retry && e.target === form && e.detail.headers['Idempotency-Key'] === key) e.detail.errors = [];
    };
    const answered = (e) => {
      const cfg = e.detail.requestConfig;
      if (e.detail.elt !== form || !cfg || cfg.headers['Idempotency-Key'] !== key) return;
      stop();
      resolve(xhrAnswer(e.detail.xhr));
    };
    // A first try that htmx's validation stops is never sent (halted).
    const halted = () => { stop(); attempt.halted = true; resolve(null); };
    const stop = () => {
      form.removeEventListener('htmx:configRequest', configuring);
      form.removeEventListener('htmx:afterRequest', answered);
      form.removeEventListener('htmx:validation:halted', halted);
    };
    form.addEventListener('htmx:configRequest', configuring);
    form.addEventListener('htmx:afterRequest', answered);
    form.addEventListener('htmx:validation:halted', halted);
    htmx.ajax('POST', withPin(url), { source: form, swap: 'none', values, headers: { 'Idempotency-Key': key } })
      .catch(() => { /* answered with status 0 */ });
  });
  return attempt;
}

function xhrAnswer(xhr) {
  if (!xhr || xhr.status === 0) return null;
  return {
    status: xhr.status,
    ok: xhr.status >= 200 && xhr.status < 300,
    headers: { get: (h) => xhr.getResponseHeader(h) },
    text: async () => xhr.responseText,
  };
}

// ---------------------------------------------------------------- own writes

const ownWrites = new Set(); // promises of in-flight creates/edits

// beginOwnWrite marks a create or edit of this tab as in flight; call what
// it returns when its answer has been handled.
export function beginOwnWrite() {
  let done;
  const p = new Promise((resolve) => { done = resolve; });
  ownWrites.add(p);
  return () => { ownWrites.delete(p); done(); };
}

export function waitForOwnWrites() {
  if (ownWrites.size === 0) return Promise.resolve();
  return Promise.race([Promise.allSettled([...ownWrites]), sleep(OWN_WRITE_WAIT_MS)]);
}

// ---------------------------------------------------------------- failures

// Retry-After is either seconds or an HTTP date; bounded to something sane.
export function retryAfterMs(res, fallback) {
  const h = res && res.headers && res.headers.get('Retry-After');
  if (!h) return fallback;
  const secs = Number(h);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(h) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 250), 30000) : fallback;
}

// failure says, in plain words, what became of a write that did not
// succeed and what to do: `what` is what was being done ("the note was
// not saved"), res the answer (null: the server was not reached), data
// its JSON. The server's own words are used where they are meant for a
// person (a note's text refused, a limit); the rest are for developers.
// passes: the cause goes away by itself (the server comes back), so the
// message is cleared when the connection is open again.
export function failure(what, res, data = {}) {
  const said = data && typeof data.error === 'string' ? data.error.trim() : '';
  const sentence = said ? said.charAt(0).toUpperCase() + said.slice(1).replace(/([^.!?])$/, '$1.') : '';
  if (!res) {
    return { text: `Could not reach the server, so ${what}. The page reconnects by itself; try again once it says it is connected.`, passes: true };
  }
  const wait = inWords(retryAfterMs(res, 2000));
  switch (res.status) {
    case 400:
      return { text: sentence || `The server refused it, so ${what}. Check the text and try again.` };
    case 413:
      return { text: `It is too long to send, so ${what}. Shorten it and try again.` };
    case 401:
      return { text: `Your session has ended, so ${what}. Log in again to go on.` };
    case 403:
      return { text: `The server refused the request, so ${what}. Reload the page and try again.` };
    case 429:
      return { text: `Too many requests in a short time, so ${what}. Try again in ${wait}.`, passes: true };
    case 503:
      return { text: `No server could take the change just now, so ${what}. Try again in ${wait}.`, passes: true };
    case 504:
      return { text: `The server did not confirm in time: it may have gone through. If it does not show in a few seconds, try again.`, passes: true };
    default:
      return { text: `Something went wrong on the server, so ${what}. Try again in a moment.`, passes: res.status >= 500 };
  }
}
