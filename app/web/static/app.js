// notesync browser client.
//
// Plain ES2020, no build step; the only dependency is htmx (for the note form).
// It runs wherever the page has #notes-list: the notes page, and the
// assistant page beside its chat. What it does:
//   * keeps a WebSocket (or, where that cannot connect, an EventSource) open to
//     the node, and refetches the notes list whenever the server says the
//     user's notes version moved; while on SSE, it tries the WebSocket again
//     in the background;
//   * reconciles the list in place by data-note-id, so notes that arrive from
//     elsewhere glow (.note-flash) and deleted ones fade out (.note-leaving);
//   * tags every write with an Idempotency-Key and retries a 504 / network
//     failure once with the same key;
//   * carries the tab's pin (?node= / ?region=) on every request it makes;
//   * says what went wrong in plain words, and clears what has passed.
//
// The DOM and wire contract is docs/PROTOCOL.md, sections 3–7 and 9. The only
// global is window.notesync ({transport, attempts, version}), read by tests.
(() => {
  'use strict';

  // ---------------------------------------------------------------- settings

  const PING_EVERY_MS = 20000;      // client text "ping" while a socket is open
  const SILENCE_LIMIT_MS = 45000;   // no message for this long: link is dead
  const HEARTBEAT_TICK_MS = 5000;   // how often the heartbeat checks the above
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 10000;
  const BACKOFF_MIN_MS = 250;
  const WS_FAILS_BEFORE_SSE = 2;    // WebSocket failed to open this many times in a row
  const WS_PROBE_FIRST_MS = 2000;   // while on SSE, try the WebSocket again after this,
  const WS_PROBE_CAP_MS = 60000;    // doubling up to this
  const FLASH_MS = 2000;            // .note-flash lifetime (spec: at least 1.5 s)
  const LEAVE_MS = 400;             // .note-leaving lifetime (CSS fade is 300 ms)
  const WRITE_RETRY_DELAY_MS = 800; // before the single retry of a 504 / network error
  const OWN_WRITE_WAIT_MS = 2500;   // see waitForOwnWrites()
  const UNDO_SHOW_MS = 15000;       // Undo after a delete (spec: at least 10 s; restorable for 30 s)
  const CLUSTER_POLL_MS = 5000;
  const EVENT_LOG_MAX = 100;

  // ---------------------------------------------------------------- elements

  const $ = (sel) => document.querySelector(sel);
  const listEl = $('#notes-list');
  if (!listEl) return; // not the notes page (e.g. the login page)

  const statusEl = $('#conn-status');
  const eventLogEl = $('#event-log');
  const noteForm = $('#note-form');
  const noteErrorEl = $('#note-error');
  const logoutForm = $('#logout-form') || $('form[action^="/logout"]');
  const clusterPanel = $('#cluster-panel');

  // ---------------------------------------------------------------- test hook

  const initialVersion = toVersion(listEl.dataset.version) ??
    toVersion(document.body.dataset.version) ?? 0;

  const notesync = { transport: null, attempts: [], version: initialVersion };
  window.notesync = notesync;

  // ---------------------------------------------------------------- helpers

  function toVersion(v) {
    if (v === null || v === undefined || v === '') return null;
    const n = Number(v);
    return Number.isSafeInteger(n) && n >= 0 ? n : null;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function timeOfDay(d = new Date()) {
    return d.toLocaleTimeString([], { hour12: false });
  }

  const nl = (s) => s.replace(/\r\n?/g, '\n');

  function parseJSON(text) {
    try { return JSON.parse(text); } catch { return null; }
  }

  // Retry-After is either seconds or an HTTP date; bounded to something sane.
  function retryAfterMs(res, fallback) {
    const h = res && res.headers && res.headers.get('Retry-After');
    if (!h) return fallback;
    const secs = Number(h);
    const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(h) - Date.now();
    return Number.isFinite(ms) ? Math.min(Math.max(ms, 250), 30000) : fallback;
  }

  // An Idempotency-Key per write. crypto.randomUUID only exists in secure
  // contexts (https, or http on localhost/127.0.0.1); a cluster node reached
  // over plain http by another name has only getRandomValues.
  function newIdempotencyKey() {
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

  // ---------------------------------------------------------------- tab pin
  //
  // /?node=NAME pins this tab (not the whole browser) to one node. The pin
  // lives in the URL rather than in a cookie precisely so that two tabs of the
  // same browser can be pinned to different nodes; the price is that every
  // request this page makes must carry it explicitly, hence withPin().

  const pin = new URLSearchParams();
  {
    const here = new URLSearchParams(location.search);
    for (const key of ['node', 'region']) {
      const v = here.get(key);
      if (v) pin.set(key, v);
    }
  }

  // withPin('/notes?min_version=3') -> '/notes?min_version=3&node=node2'
  function withPin(url) {
    if (!pin.toString()) return url;
    const u = new URL(url, location.href);
    for (const [k, v] of pin) u.searchParams.set(k, v);
    return u.origin === location.origin ? u.pathname + u.search + u.hash : u.href;
  }

  if (logoutForm) logoutForm.action = withPin(logoutForm.getAttribute('action') || '/logout');
  for (const a of document.querySelectorAll('.nav a[href^="/"]')) a.href = withPin(a.getAttribute('href'));

  // Keyboard hints name the keys this keyboard has.
  if (/Mac|iPhone|iPad/.test(navigator.platform || '')) {
    for (const k of document.querySelectorAll('.kbd-hint kbd')) if (k.textContent === 'Ctrl') k.textContent = '⌘';
  }

  // ---------------------------------------------------------------- writes
  //
  // Creates and edits of this tab are tracked while in flight: the server may
  // push our own note_changed before our POST/PATCH response arrives, and we
  // must not flash our own note as if it came from elsewhere.

  const ownWrites = new Set(); // promises of in-flight creates/edits

  function beginOwnWrite() {
    let done;
    const p = new Promise((resolve) => { done = resolve; });
    ownWrites.add(p);
    return () => { ownWrites.delete(p); done(); };
  }

  function waitForOwnWrites() {
    if (ownWrites.size === 0) return Promise.resolve();
    return Promise.race([Promise.allSettled([...ownWrites]), sleep(OWN_WRITE_WAIT_MS)]);
  }

  // fetch() for a state-changing request: fresh Idempotency-Key, and one retry
  // with the SAME key after a 504 (outcome unknown) or a network error, so
  // the server applies the write at most once. Resolves with the final
  // Response; rejects only if the retry also failed at the network level.
  async function sendWrite(method, url, { json, headers = {} } = {}) {
    const init = {
      method,
      credentials: 'same-origin',
      headers: { Accept: 'application/json', ...headers, 'Idempotency-Key': newIdempotencyKey() },
    };
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    }
    const target = withPin(url);
    try {
      const res = await fetch(target, init);
      if (res.status !== 504) return res;
    } catch { /* network error: retry below */ }
    await sleep(WRITE_RETRY_DELAY_MS);
    return fetch(target, init);
  }

  // A wait in words: "1 second", "20 seconds", "3 minutes".
  function inWords(ms) {
    const secs = Math.max(1, Math.ceil(ms / 1000));
    if (secs < 60) return secs === 1 ? '1 second' : `${secs} seconds`;
    const mins = Math.ceil(secs / 60);
    return mins === 1 ? '1 minute' : `${mins} minutes`;
  }

  // failure says, in plain words, what became of a write that did not
  // succeed and what to do: `what` is what was being done ("the note was
  // not saved"), res the answer (null: the server was not reached), data
  // its JSON. The server's own words are used where they are meant for a
  // person (a note's text refused, a limit); the rest are for developers.
  // passes: the cause goes away by itself (the server comes back), so the
  // message is cleared when the connection is open again.
  function failure(what, res, data = {}) {
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

  // The note error line. An error whose cause passes by itself (the server
  // was unreachable) is cleared once the connection is open again: the page
  // never shows a state that is over.
  let noteErrorPasses = false;
  function showNoteError(msg, passes = false) {
    if (!noteErrorEl) return;
    noteErrorEl.textContent = msg || '';
    noteErrorEl.hidden = !msg;
    noteErrorPasses = !!msg && passes;
  }

  function showFailure(f) { showNoteError(f.text, !!f.passes); }

  function clearPassedErrors() {
    if (noteErrorPasses) showNoteError('');
  }

  // ---------------------------------------------------------------- htmx glue

  const htmxWrites = new Map(); // Idempotency-Key -> { done, retried }

  document.addEventListener('htmx:configRequest', (evt) => {
    const d = evt.detail;
    d.path = withPin(d.path);
    if (d.verb === 'get') return;
    // A retry (see htmx:afterRequest) comes with its key already set.
    if (!d.headers['Idempotency-Key']) d.headers['Idempotency-Key'] = newIdempotencyKey();
  });

  // beforeRequest (not configRequest): it comes after htmx's own validation,
  // so every write registered here is sure to see an htmx:afterRequest.
  document.addEventListener('htmx:beforeRequest', (evt) => {
    const d = evt.detail;
    if (d.elt !== noteForm || !d.requestConfig) return;
    const key = d.requestConfig.headers['Idempotency-Key'];
    if (key && !htmxWrites.has(key)) htmxWrites.set(key, { done: beginOwnWrite(), retried: false });
  });

  document.addEventListener('htmx:afterRequest', (evt) => {
    const d = evt.detail;
    if (d.elt !== noteForm) return;
    const xhr = d.xhr;
    const key = d.requestConfig && d.requestConfig.headers['Idempotency-Key'];
    const write = htmxWrites.get(key);

    // 504: outcome unknown. status 0: network error, abort or timeout.
    if ((xhr.status === 504 || xhr.status === 0) && write && !write.retried) {
      write.retried = true;
      const body = d.requestConfig.parameters.body;
      setTimeout(() => {
        htmx.ajax('POST', '/api/notes', {
          source: noteForm, swap: 'none',
          values: { body }, headers: { 'Idempotency-Key': key },
        });
      }, WRITE_RETRY_DELAY_MS);
      return;
    }
    if (write) { htmxWrites.delete(key); write.done(); }

    const ta = noteForm.querySelector('textarea[name=body]');
    // The person types next where they typed last: the textarea keeps the
    // focus (htmx disabled the button that had it while the note was sent).
    const active = document.activeElement;
    if (ta && (!active || active === document.body || noteForm.contains(active))) ta.focus();

    if (xhr.status === 201) {
      const res = parseJSON(xhr.responseText) || {};
      if (res.note && res.note.id !== undefined) ownCreated.add(String(res.note.id));
      showNoteError('');
      // Clear only if the text is still what was sent (the user may have
      // started typing the next note while this one was saving).
      const sent = String(d.requestConfig.parameters.body ?? '');
      if (ta && nl(ta.value) === nl(sent)) ta.value = '';
      refreshTo(toVersion(res.version));
      return;
    }
    const headers = { get: (h) => xhr.getResponseHeader(h) };
    showFailure(failure('the note was not saved', xhr.status === 0 ? null : { status: xhr.status, headers },
      parseJSON(xhr.responseText) || {}));
    if (xhr.status === 401) checkSessionThenEnd();
  });

  if (noteForm) {
    noteForm.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && e.target.matches('textarea')) {
        e.preventDefault();
        noteForm.requestSubmit();
      }
    });
  }

  // ---------------------------------------------------------------- list
  //
  // The shown list has a version (notesync.version). Refreshes fetch
  // GET /notes?min_version=V, whose answer is at least V by the server's
  // promise (the exact version is in X-Notes-Version), and are serialised: one
  // in flight at a time, and the highest version wanted meanwhile is fetched
  // once more after it. A fragment older than what is shown is never applied.

  const ownCreated = new Set();   // ids this tab created: no flash
  const ownEdits = new Map();     // id -> body this tab saved: no flash
  const pendingDeletes = new Set(); // ids this tab is deleting right now
  // ids known to be deleted -> the list version at which they were. A list
  // at a later version that holds the id again shows a restored note (ids
  // are never reused); an older one must not bring it back.
  const gone = new Map();
  const flashTimers = new WeakMap();

  const refresh = { wanted: initialVersion, running: false, retryTimer: 0 };

  function setShownVersion(v) {
    notesync.version = v;
    listEl.dataset.version = String(v);
    document.body.dataset.version = String(v);
  }

  // Ask for the list to show at least `version`. A refresh in flight picks
  // the raised target up when it finishes (the loop in runRefresh).
  function refreshTo(version) {
    if (version !== null && version > refresh.wanted) refresh.wanted = version;
    if (refresh.wanted <= notesync.version || refresh.running) return;
    runRefresh();
  }

  async function runRefresh() {
    refresh.running = true;
    clearTimeout(refresh.retryTimer);
    let failures = 0;
    try {
      do {
        if (session.ended) return;
        const min = Math.max(refresh.wanted, notesync.version);
        const r = await fetchFragment(min);
        if (r.ended) { checkSessionThenEnd(); return; }
        if (!r.ok) {
          failures++;
          if (failures >= 4) {
            // Give up for now; a later event retries, and so does this timer.
            refresh.retryTimer = setTimeout(() => refreshTo(null), 15000);
            return;
          }
          await sleep(r.retryAfter ?? 500 * 2 ** failures);
          continue;
        }
        failures = 0;
        // Let our own in-flight creates/edits finish first, so we know their
        // ids/bodies and do not flash them.
        await waitForOwnWrites();
        if (r.version >= notesync.version) {
          reconcile(r.items, r.version);
          markEditingElsewhere();
          setShownVersion(r.version);
        }
      } while (refresh.wanted > notesync.version);
    } finally {
      refresh.running = false;
    }
  }

  async function fetchFragment(minVersion) {
    let res;
    try {
      res = await fetch(withPin(`/notes?min_version=${minVersion}`), {
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'text/html' },
        // /notes redirects an anonymous visitor to /login: do not follow that
        // into parsing the login page as a notes list.
        redirect: 'manual',
      });
    } catch {
      return { ok: false };
    }
    if (res.type === 'opaqueredirect' || res.status === 401) return { ended: true };
    if (!res.ok) return { ok: false, retryAfter: retryAfterMs(res, null) ?? undefined };
    const html = await res.text();
    const tpl = document.createElement('template');
    tpl.innerHTML = html;
    const items = Array.from(tpl.content.querySelectorAll('[data-note-id]'))
      .filter((el) => !el.parentElement || !el.parentElement.closest('[data-note-id]'));
    const headerVersion = toVersion(res.headers.get('X-Notes-Version'));
    const inlineVersion = toVersion((tpl.content.querySelector('[data-version]') || {}).dataset?.version);
    const version = headerVersion ?? inlineVersion ?? minVersion;
    // The server promised at least minVersion; anything else is a bad answer.
    if (version < minVersion) return { ok: false };
    return { ok: true, version, items };
  }

  const noteId = (el) => el.getAttribute('data-note-id');
  const noteRev = (el) => toVersion(el.getAttribute('data-rev')) ?? 0;
  const isEditing = (el) => !!el.querySelector('.note-edit');
  // Live notes take part in the list's order; leaving ones and ones
  // deleted elsewhere (kept for their open editor) stay where they are.
  const isLiveNote = (node) => node.nodeType === 1 && node.hasAttribute('data-note-id') &&
    !node.classList.contains('note-leaving') && !node.classList.contains('note-deleted-elsewhere');

  // Bring #notes-list in line with `items` (fresh <li>s from the server, in
  // the server's order, newest first), a list at `version`, without
  // replacing what is unchanged.
  function reconcile(items, version) {
    const existing = new Map();
    for (const el of listEl.querySelectorAll(':scope > [data-note-id]')) {
      const id = noteId(el);
      // Notes already fading out stay as they are (they are about to go).
      if (el.classList.contains('note-leaving') && !pendingDeletes.has(id)) continue;
      existing.set(id, el);
    }
    for (const fresh of items) {
      const id = noteId(fresh);
      if (gone.has(id) && version > gone.get(id)) gone.delete(id); // restored
    }

    const wanted = items.filter((fresh) => !gone.has(noteId(fresh)));
    const keep = new Set(wanted.map(noteId));

    // Notes no longer on the server fade out first, in place: the placement
    // loop below then steps over them instead of pushing them down. A note
    // open in an editor stays, with what the user typed (docs/PROTOCOL.md §6).
    for (const [id, el] of existing) {
      if (keep.has(id) || pendingDeletes.has(id)) continue;
      if (isEditing(el)) { markDeletedElsewhere(el); continue; }
      gone.set(id, version);
      fadeOutAndRemove(el);
    }

    let cursor = listEl.firstChild;
    for (const fresh of wanted) {
      const id = noteId(fresh);
      let el = existing.get(id);
      if (el && pendingDeletes.has(id)) continue; // our delete is in flight
      if (el) {
        if (el.classList.contains('note-deleted-elsewhere')) clearDeletedElsewhere(el);
        updateNote(el, fresh);
      } else {
        el = document.importNode(fresh, true);
        localizeTimes(el);
        if (!ownCreated.has(id)) flash(el);
      }
      // Place el at the cursor, skipping nodes that are fading out or are not
      // notes (whitespace), so leaving notes fade where they were.
      while (cursor && cursor !== el && !isLiveNote(cursor)) cursor = cursor.nextSibling;
      if (cursor === el) cursor = el.nextSibling;
      else listEl.insertBefore(el, cursor);
      clampNote(el);
    }
    takePendingFocus();
  }

  // updateNote shows a fresh copy of a note. While the note is open in an
  // editor, the typed text is never touched: a newer revision is shown
  // beside it, marked note-changed-elsewhere.
  function updateNote(el, fresh) {
    const id = noteId(el);
    const bodyEl = el.querySelector('.note-body');
    const freshBody = fresh.querySelector('.note-body');
    const rev = noteRev(fresh);
    const form = el.querySelector('.note-edit');
    if (bodyEl && freshBody && bodyEl.textContent !== freshBody.textContent) {
      bodyEl.textContent = freshBody.textContent;
      labelNote(el);
      clampNote(el);
      if (ownEdits.get(id) === freshBody.textContent) ownEdits.delete(id);
      else if (!form) flash(el);
    }
    if (rev > noteRev(el)) el.setAttribute('data-rev', String(rev));
    if (form && rev > Number(form.dataset.baseRev)) markChangedElsewhere(el, form);
    const timeEl = el.querySelector('time');
    const freshTime = fresh.querySelector('time');
    if (timeEl && freshTime && timeEl.dateTime !== freshTime.dateTime) {
      timeEl.dateTime = freshTime.dateTime;
      localizeTimes(el);
    }
  }

  // applyNote shows a note from a JSON answer ({id, body, rev}).
  function applyNote(el, note) {
    const bodyEl = el.querySelector('.note-body');
    if (bodyEl && typeof note.body === 'string') bodyEl.textContent = note.body;
    if (note.rev) el.setAttribute('data-rev', String(note.rev));
    labelNote(el);
    clampNote(el);
  }

  // ---------------------------------------------------------------- long notes
  //
  // CSS shows a long note's first lines (--clamp-lines); a note whose text
  // runs past them gets class note-clamped and a "Show more" button
  // (data-action="expand", aria-expanded), which shows it all.

  function clampNote(el) {
    const bodyEl = el.querySelector('.note-body');
    if (!bodyEl) return;
    const lines = Number(getComputedStyle(el).getPropertyValue('--clamp-lines')) || 8;
    const lineHeight = parseFloat(getComputedStyle(bodyEl).lineHeight) || 24;
    // scrollHeight is the text's whole height, clamped or not; 0 while the
    // note is not laid out (an open editor hides it): leave it as it is.
    if (bodyEl.scrollHeight === 0) return;
    const long = bodyEl.scrollHeight > lines * lineHeight + 2;
    el.classList.toggle('note-clamped', long);
    let more = el.querySelector(':scope > .note-more');
    if (!long) {
      more?.remove();
      el.classList.remove('note-expanded');
      return;
    }
    if (!more) {
      more = document.createElement('button');
      more.type = 'button';
      more.className = 'note-more link-button';
      more.dataset.action = 'expand';
      if (bodyEl.id) more.setAttribute('aria-controls', bodyEl.id);
      bodyEl.after(more);
    }
    showExpanded(el, el.classList.contains('note-expanded'));
  }

  function showExpanded(el, on) {
    el.classList.toggle('note-expanded', on);
    const more = el.querySelector(':scope > .note-more');
    if (!more) return;
    more.textContent = on ? 'Show less' : 'Show more';
    more.setAttribute('aria-expanded', String(on));
    labelNote(el);
  }

  function clampAll() {
    for (const el of listEl.querySelectorAll(':scope > [data-note-id]')) clampNote(el);
  }
  let clampTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(clampTimer);
    clampTimer = setTimeout(clampAll, 150);
  });

  // The first words of a note, for accessible names and messages.
  function snippet(text) {
    const words = String(text || '').trim().split(/\s+/).slice(0, 6).join(' ');
    return words.length > 40 ? `${words.slice(0, 39)}…` : words;
  }

  // labelNote names a note's controls after its first words, so that a
  // screen reader can tell one note's Delete from another's.
  function labelNote(el) {
    const words = snippet(el.querySelector('.note-body')?.textContent);
    const names = {
      edit: 'Edit note', delete: 'Delete note', 'keep-mine': 'Keep my text for note',
      'take-theirs': 'Take the other text for note', 'save-as-new': 'Save my text as a new note, from note',
      'edit-cancel': 'Cancel editing note', 'edit-save': 'Save note',
      expand: el.classList.contains('note-expanded') ? 'Show less of note' : 'Show more of note',
    };
    for (const b of el.querySelectorAll('button[data-action]')) {
      const name = names[b.dataset.action];
      if (name) b.setAttribute('aria-label', `${name}: ${words}`);
    }
    const ta = el.querySelector('.note-edit textarea');
    if (ta) ta.setAttribute('aria-label', `Your text for note: ${words}`);
  }

  // Glow and fade are driven by setTimeout, never by transitionend /
  // animationend alone: background tabs pause animations (those events may
  // never fire) and throttle timers (a timer fires late, ~1 s, but fires), and
  // the spec wants glow and fade to complete in every tab.
  function flash(el) {
    clearTimeout(flashTimers.get(el));
    el.classList.add('note-flash');
    flashTimers.set(el, setTimeout(() => el.classList.remove('note-flash'), FLASH_MS));
  }

  function fadeOutAndRemove(el, delay = LEAVE_MS) {
    // Should it come back (undo), it comes back from elsewhere.
    ownCreated.delete(noteId(el));
    el.classList.add('note-leaving');
    if (el.dataset.removing) return;
    el.dataset.removing = '1';
    setTimeout(() => el.remove(), delay);
  }

  // Server renders times in UTC; show them in the reader's time zone.
  const timeFormat = new Intl.DateTimeFormat([], { dateStyle: 'medium', timeStyle: 'short' });
  function localizeTimes(root) {
    for (const t of root.querySelectorAll('time[datetime]')) {
      const d = new Date(t.dateTime);
      if (Number.isNaN(d.getTime())) continue;
      t.textContent = timeFormat.format(d);
      t.title = d.toISOString();
    }
  }
  localizeTimes(listEl);
  clampAll();

  // ---------------------------------------------------------------- delete / edit / undo
  //
  // Every edit and delete names the revision it was made against
  // (If-Match), so that nothing typed or saved elsewhere is overwritten
  // unseen (docs/PROTOCOL.md §6).

  listEl.addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || !listEl.contains(btn)) return;
    const li = btn.closest('[data-note-id]');
    if (!li) return;
    switch (btn.dataset.action) {
      case 'delete': deleteNote(li); break;
      case 'edit': openEditor(li); break;
      case 'edit-cancel': closeEditor(li); break;
      case 'keep-mine': keepMine(li); break;
      case 'take-theirs': closeEditor(li); break;
      case 'save-as-new': saveAsNew(li); break;
      case 'expand': showExpanded(li, !li.classList.contains('note-expanded')); break;
    }
  });

  const ifMatch = (rev) => ({ 'If-Match': `"${rev}"` });

  async function deleteNote(li) {
    const id = noteId(li);
    if (pendingDeletes.has(id) || li.dataset.removing) return;
    pendingDeletes.add(id);
    const hadFocus = li.contains(document.activeElement);
    const words = snippet(li.querySelector('.note-body')?.textContent);
    const startedAt = Date.now();
    li.classList.add('note-leaving'); // optimistic: start fading at once
    let res = null;
    try {
      res = await sendWrite('DELETE', `/api/notes/${encodeURIComponent(id)}`, { headers: ifMatch(noteRev(li)) });
    } catch { /* network error after the retry too */ }
    if (res && (res.status === 204 || res.status === 404 || res.ok)) {
      gone.set(id, toVersion(res.headers.get('X-Notes-Version')) ?? notesync.version);
      pendingDeletes.delete(id);
      showNoteError('');
      // The fade started at the click; keep the element LEAVE_MS in total.
      fadeOutAndRemove(li, Math.max(0, LEAVE_MS - (Date.now() - startedAt)));
      if (res.status !== 404) offerUndo(id, words, hadFocus);
      return;
    }
    pendingDeletes.delete(id);
    li.classList.remove('note-leaving');
    if (res && res.status === 412) {
      const data = parseJSON(await res.text()) || {};
      if (data.note) { applyNote(li, data.note); flash(li); }
      showNoteError('This note was changed elsewhere, so it was not deleted. Its new text is shown; delete it again if you still want to.');
      return;
    }
    showFailure(failure(`the note “${words}” was not deleted`, res, res ? parseJSON(await res.text().catch(() => '')) || {} : {}));
    if (res && res.status === 401) checkSessionThenEnd();
  }

  function button(action, text, primary = false) {
    const b = document.createElement('button');
    b.type = action === 'edit-save' ? 'submit' : 'button';
    b.dataset.action = action;
    b.textContent = text;
    if (!primary) b.className = 'secondary';
    return b;
  }

  function openEditor(li) {
    if (isEditing(li) || li.classList.contains('note-leaving')) return;
    const bodyEl = li.querySelector('.note-body');
    if (!bodyEl) return;

    const form = document.createElement('form');
    form.className = 'note-edit';
    form.dataset.baseRev = String(noteRev(li));
    form.dataset.baseBody = bodyEl.textContent;
    const notice = document.createElement('p');
    notice.className = 'edit-notice';
    notice.setAttribute('role', 'status');
    notice.tabIndex = -1;
    notice.hidden = true;
    const ta = document.createElement('textarea');
    ta.name = 'body';
    ta.required = true;
    ta.maxLength = 10000;
    ta.value = bodyEl.textContent;
    ta.rows = Math.min(12, Math.max(3, ta.value.split('\n').length + 1));
    const row = document.createElement('div');
    row.className = 'form-row';
    row.append(button('edit-save', 'Save', true), button('edit-cancel', 'Cancel'));
    form.append(notice, ta, row);

    form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); closeEditor(li); }
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (li.classList.contains('note-conflict')) keepMine(li);
      else if (li.classList.contains('note-deleted-elsewhere')) saveAsNew(li);
      else saveEdit(li, form, ta.value);
    });

    li.classList.add('editing');
    bodyEl.after(form);
    labelNote(li);
    ta.focus();
    editorOpened(noteId(li));
  }

  // closeEditor drops the editor (and what was typed in it). A note that
  // was deleted elsewhere goes with it.
  function closeEditor(li) {
    const form = li.querySelector('.note-edit');
    if (form) form.remove();
    editorClosed(noteId(li));
    li.classList.remove('editing', 'note-changed-elsewhere', 'note-conflict');
    if (li.classList.contains('note-deleted-elsewhere')) {
      gone.set(noteId(li), notesync.version);
      fadeOutAndRemove(li);
      return;
    }
    clampNote(li);
    li.querySelector('button[data-action="edit"]')?.focus();
  }

  // setNotice shows a message and the buttons for it above the editor's
  // textarea; the editor's own Save goes while they are shown.
  function setNotice(li, text, buttons = []) {
    const form = li.querySelector('.note-edit');
    if (!form) return;
    const notice = form.querySelector('.edit-notice');
    notice.replaceChildren(text);
    if (buttons.length) {
      const row = document.createElement('span');
      row.className = 'notice-actions';
      row.append(...buttons);
      notice.append(row);
    }
    notice.hidden = false;
    form.querySelector('[data-action="edit-save"]').hidden = buttons.length > 0;
    labelNote(li);
  }

  function markChangedElsewhere(li, form) {
    if (li.classList.contains('note-conflict') || li.classList.contains('note-deleted-elsewhere')) return;
    li.classList.add('note-changed-elsewhere');
    setNotice(li, 'Changed elsewhere while you were editing: the new text is shown above. ' +
      'Your text below is kept; saving will ask which one to keep.');
  }

  function markDeletedElsewhere(li) {
    if (li.classList.contains('note-deleted-elsewhere')) return;
    li.classList.remove('note-changed-elsewhere', 'note-conflict', 'note-flash');
    li.classList.add('note-deleted-elsewhere');
    setNotice(li, 'Deleted elsewhere while you were editing. Your text is kept: ',
      [button('save-as-new', 'Save as a new note', true), button('edit-cancel', 'Discard')]);
  }

  function clearDeletedElsewhere(li) {
    li.classList.remove('note-deleted-elsewhere');
    const form = li.querySelector('.note-edit');
    if (!form) return;
    form.querySelector('.edit-notice').hidden = true;
    form.querySelector('[data-action="edit-save"]').hidden = false;
    // Restored elsewhere: it is the same note again; a newer revision is
    // marked by updateNote.
  }

  // showConflict: the save was refused because the note is at a newer
  // revision. Both texts are shown, theirs as the note and the user's in
  // the editor, and the user chooses.
  function showConflict(li, note) {
    applyNote(li, note);
    li.classList.add('note-changed-elsewhere', 'note-conflict');
    const form = li.querySelector('.note-edit');
    form.dataset.theirRev = String(note.rev);
    setNotice(li, 'This note was changed elsewhere before you saved. Its new text is shown above, yours below. ',
      [button('keep-mine', 'Keep my text', true), button('take-theirs', 'Take the other text')]);
    form.querySelector('.edit-notice').focus();
  }

  async function saveEdit(li, form, body, rev = Number(form.dataset.baseRev)) {
    const id = noteId(li);
    const bodyEl = li.querySelector('.note-body');
    const unchanged = body === form.dataset.baseBody && !li.classList.contains('note-conflict');
    if (unchanged || (bodyEl && bodyEl.textContent === body && noteRev(li) === rev)) { closeEditor(li); return; }
    const controls = form.querySelectorAll('button, textarea');
    controls.forEach((c) => { c.disabled = true; });
    const done = beginOwnWrite();
    ownEdits.set(id, body);
    let res = null;
    try {
      res = await sendWrite('PATCH', `/api/notes/${encodeURIComponent(id)}`, { json: { body }, headers: ifMatch(rev) });
    } catch { /* network error after the retry too */ }
    try {
      const data = res ? parseJSON(await res.text()) || {} : {};
      controls.forEach((c) => { c.disabled = false; });
      if (res && res.ok && data.note) {
        ownEdits.set(id, data.note.body);
        applyNote(li, data.note); // no flash: it is our own edit
        closeEditor(li);
        showNoteError('');
        refreshTo(toVersion(data.version));
        return;
      }
      ownEdits.delete(id);
      if (res && res.status === 412 && data.note) { showConflict(li, data.note); return; }
      if (res && res.status === 404) { markDeletedElsewhere(li); return; }
      showFailure(failure('your changes were not saved; they are still in the editor', res, data));
      if (res && res.status === 401) checkSessionThenEnd();
    } finally {
      done();
    }
  }

  // keepMine saves the typed text over the revision the conflict showed.
  function keepMine(li) {
    const form = li.querySelector('.note-edit');
    if (!form) return;
    const rev = Number(form.dataset.theirRev || form.dataset.baseRev);
    form.dataset.baseRev = String(rev);
    saveEdit(li, form, form.querySelector('textarea').value, rev);
  }

  // saveAsNew keeps the text of a note deleted elsewhere as a new note.
  async function saveAsNew(li) {
    const form = li.querySelector('.note-edit');
    if (!form) return;
    const body = form.querySelector('textarea').value;
    const controls = form.querySelectorAll('button, textarea');
    controls.forEach((c) => { c.disabled = true; });
    const done = beginOwnWrite();
    let res = null;
    try {
      res = await sendWrite('POST', '/api/notes', { json: { body } });
    } catch { /* network error after the retry too */ }
    try {
      const data = res ? parseJSON(await res.text()) || {} : {};
      controls.forEach((c) => { c.disabled = false; });
      if (res && res.status === 201 && data.note) {
        ownCreated.add(String(data.note.id));
        gone.set(noteId(li), notesync.version);
        li.remove();
        showNoteError('');
        refreshTo(toVersion(data.version));
        return;
      }
      showFailure(failure('your text was not saved as a note; it is still in the editor', res, data));
    } finally {
      done();
    }
  }

  // ---------------------------------------------------------------- undo

  const undoBar = $('#undo-bar');

  // offerUndo shows Undo for a note this tab deleted, for UNDO_SHOW_MS
  // (the server keeps it restorable for 30 s).
  function offerUndo(id, words, focus) {
    if (!undoBar) return;
    const item = document.createElement('p');
    item.className = 'undo-item';
    item.dataset.undoId = id;
    const undo = button('undo', 'Undo', true);
    undo.setAttribute('aria-label', `Undo deleting note: ${words}`);
    item.append(`Deleted “${words}”. `, undo);
    undoBar.append(item);
    undoBar.hidden = false;
    const timer = setTimeout(() => dropUndo(item), UNDO_SHOW_MS);
    undo.addEventListener('click', () => { clearTimeout(timer); undoDelete(id, item); });
    if (focus) undo.focus();
  }

  // dropUndo removes an Undo; the focus it had goes where the person will
  // type next, or to the note it brought back (restoredId).
  function dropUndo(item, restoredId = null, hadFocus = item.contains(document.activeElement)) {
    item.remove();
    undoBar.hidden = !undoBar.querySelector('.undo-item');
    if (!hadFocus) return;
    if (restoredId !== null) focusNoteWhenShown(restoredId);
    else focusTypingPlace();
  }

  // focusTypingPlace puts the focus where the person types next: the new
  // note's textarea, or on a page without one the first note.
  function focusTypingPlace() {
    const ta = noteForm?.querySelector('textarea');
    if (ta) { ta.focus(); return; }
    listEl.querySelector(':scope > [data-note-id] button[data-action="edit"]')?.focus();
  }

  // focusNoteWhenShown focuses note id's Edit as soon as the list shows it
  // (see reconcile), or the typing place if it does not come soon.
  const pendingFocus = { id: null, timer: 0 };
  function focusNoteWhenShown(id) {
    clearTimeout(pendingFocus.timer);
    pendingFocus.id = String(id);
    if (takePendingFocus()) return;
    pendingFocus.timer = setTimeout(() => {
      if (pendingFocus.id === null) return;
      pendingFocus.id = null;
      if (document.activeElement === document.body) focusTypingPlace();
    }, OWN_WRITE_WAIT_MS);
  }

  function takePendingFocus() {
    if (pendingFocus.id === null) return false;
    const el = listEl.querySelector(`:scope > [data-note-id="${CSS.escape(pendingFocus.id)}"]:not(.note-leaving)`);
    const btn = el?.querySelector('button[data-action="edit"]');
    if (!btn) return false;
    pendingFocus.id = null;
    clearTimeout(pendingFocus.timer);
    if (document.activeElement === document.body || !document.activeElement) btn.focus();
    return true;
  }

  async function undoDelete(id, item) {
    const btn = item.querySelector('button');
    const hadFocus = item.contains(document.activeElement);
    btn.disabled = true;
    let res = null;
    try {
      res = await sendWrite('POST', `/api/notes/${encodeURIComponent(id)}/restore`);
    } catch { /* network error after the retry too */ }
    const data = res ? parseJSON(await res.text()) || {} : {};
    if (res && res.ok && data.note) {
      ownCreated.add(String(id));
      gone.delete(String(id));
      dropUndo(item, id, hadFocus);
      refreshTo(toVersion(data.version));
      return;
    }
    btn.disabled = false;
    if (res && res.status === 404) {
      item.replaceChildren('Too late to undo: the note is gone for good.');
      setTimeout(() => dropUndo(item), 5000);
      return;
    }
    // Undo stays, to be tried again, with what went wrong beside it.
    const f = failure('the note was not brought back', res, data);
    item.replaceChildren(`${f.text} `, btn);
    btn.focus();
    setTimeout(() => dropUndo(item), UNDO_SHOW_MS);
  }

  // ---------------------------------------------------------------- presence
  //
  // The tab reports the note open in its editor (the last one opened, while
  // several are), and shows what the server says of the user's tabs on
  // every node (docs/PROTOCOL.md §7).

  const presenceEl = $('#presence');
  const presenceNodesEl = $('#presence-nodes');
  const editing = { open: [], conn: '', reported: null, last: null };

  function editorOpened(id) {
    editing.open = editing.open.filter((x) => x !== id).concat(id);
    reportEditing();
  }

  function editorClosed(id) {
    editing.open = editing.open.filter((x) => x !== id);
    reportEditing();
  }

  // reportEditing tells the server which note this tab edits, when that
  // changed since it was last told on this connection.
  function reportEditing() {
    const current = editing.open.length ? Number(editing.open[editing.open.length - 1]) : null;
    if (current === editing.reported || !editing.conn) return;
    const msg = { type: 'editing', note_id: current };
    if (session.ws && session.ws.readyState === WebSocket.OPEN) {
      try { session.ws.send(JSON.stringify(msg)); } catch { return; }
    } else if (session.es) {
      fetch(withPin('/api/editing'), {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'Idempotency-Key': newIdempotencyKey() },
        body: JSON.stringify({ conn: editing.conn, note_id: current }),
      }).catch(() => { editing.reported = undefined; });
    } else {
      return;
    }
    editing.reported = current;
  }

  function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

  function showPresence(msg) {
    editing.last = msg;
    pollCluster(true);
    if (presenceEl) {
      const nodes = msg.nodes && typeof msg.nodes === 'object' ? Object.entries(msg.nodes) : [];
      const tabs = Number(msg.tabs) || 0;
      presenceEl.dataset.tabs = String(tabs);
      presenceEl.textContent = `${plural(tabs, 'tab', 'tabs')} on ${plural(nodes.length, 'node', 'nodes')}`;
      const names = nodes.sort(([a], [b]) => a.localeCompare(b)).map(([n, k]) => `${n}: ${k}`).join(', ');
      presenceEl.title = names;
      if (presenceNodesEl) presenceNodesEl.textContent = names;
      presenceEl.hidden = false;
    }
    markEditingElsewhere();
  }

  // markEditingElsewhere marks the notes that another tab has open in an
  // editor: the count less this tab's own, as the server knew it.
  function markEditingElsewhere() {
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

  // ---------------------------------------------------------------- event log

  // The real-time events go to #event-log only where the page asks for them
  // (data-log="realtime"); the assistant page's log is the assistant's.
  const logsRealtime = !!eventLogEl && eventLogEl.dataset.log === 'realtime';

  function logEvent(type, text) {
    if (!logsRealtime) return;
    const li = document.createElement('li');
    li.dataset.type = type;
    const t = document.createElement('time');
    const now = new Date();
    t.dateTime = now.toISOString();
    t.textContent = timeOfDay(now);
    li.append(t, ' ', text);
    eventLogEl.prepend(li);
    while (eventLogEl.children.length > EVENT_LOG_MAX) eventLogEl.lastElementChild.remove();
  }

  function describe(msg) {
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

  // ---------------------------------------------------------------- status line

  function setStatus(state, text, link) {
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

  // ---------------------------------------------------------------- real-time
  //
  // One live transport at a time: a WebSocket, or an EventSource after the
  // WebSocket failed to open WS_FAILS_BEFORE_SSE times in a row. Every
  // (re)connection asks for since=<version shown>, so the server follows its
  // hello with a catch-up "sync" when we are behind: nothing is missed.

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
    return `${scheme}://${location.host}${withPin(`/ws?since=${notesync.version}`)}`;
  }

  // probe=true: we are on SSE and try the WebSocket on the side; it replaces
  // the EventSource only if it opens, and its failure only schedules the
  // next try (onProbeFailed).
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
  // died, so we send "ping" every PING_EVERY_MS and give up after
  // SILENCE_LIMIT_MS without any message. The link only counts as dead if a
  // ping of ours has itself gone unanswered for a while: a background tab's
  // timers may be throttled to once a minute, and the resulting lull must
  // not look like silence on a perfectly healthy link.
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
      es = new EventSource(withPin(`/events?since=${notesync.version}`));
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
    es.addEventListener('hello', onEvent);
    es.addEventListener('note_changed', onEvent);
    es.addEventListener('presence', onEvent);
    es.addEventListener('message', onEvent); // untyped events, if any

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
      // We run our own backoff rather than the browser's built-in retry, so
      // the delays, the attempts log and the since= parameter stay ours.
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
    setStatus('connecting', `Not connected: trying again in ${inWords(delay)}…`);
    session.reconnectTimer = setTimeout(() => {
      setStatus('connecting', 'Reconnecting…');
      connect();
    }, delay);
  }

  function endSession() {
    if (session.ended) return;
    session.ended = true;
    clearTimeout(session.reconnectTimer);
    clearTimeout(refresh.retryTimer);
    clearTimeout(clusterTimer);
    abandonWebSocket();
    closeEventSource();
    setStatus('closed', 'Your session ended. Log in again to see your notes:', { href: '/login', text: 'Log in' });
  }

  // A 401 on a page request may also be a misbehaving proxy; ask the API to
  // be sure before declaring the session over.
  async function checkSessionThenEnd({ otherwise } = {}) {
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
    const v = toVersion(msg.version);
    switch (msg.type) {
      case 'hello': {
        session.backoffAttempt = 0;
        const where = `${msg.node || 'the server'}${msg.region ? ` (${msg.region})` : ''}`;
        const onSSE = session.es !== null && session.ws === null;
        setStatus('open', `Connected to ${where}`);
        if (statusEl) statusEl.title = onSSE ? 'live updates over server-sent events' : 'live updates over a WebSocket';
        clearPassedErrors();
        if (onSSE) scheduleWebSocketProbe(0);
        if (v !== null && v > notesync.version) refreshTo(v);
        // A new connection knows nothing of this tab's editor yet.
        editing.conn = typeof msg.conn === 'string' ? msg.conn : '';
        editing.reported = null;
        reportEditing();
        break;
      }
      case 'note_changed':
        if (v !== null) refreshTo(v);
        break;
      case 'presence':
        showPresence(msg);
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

  // Back online, or back in view: do not sit out the rest of a long backoff,
  // and check a quiet socket right away.
  window.addEventListener('online', () => {
    if (session.reconnectTimer && !session.ws && !session.es) connect();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    if (session.ws && session.ws.readyState === WebSocket.OPEN) sendPing(session.ws);
    pollCluster();
  });

  // Leaving the page (or entering the back/forward cache): close cleanly and
  // do not reconnect; a page restored from the cache connects again.
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
    pollCluster();
  });

  // ---------------------------------------------------------------- cluster panel

  let clusterTimer = 0;
  let clusterBusy = false; // one poll at a time, one timer chain
  const clusterBody = clusterPanel && (clusterPanel.querySelector('.cluster-body') || clusterPanel);

  // pollCluster refreshes the cluster panel, every CLUSTER_POLL_MS while
  // the tab is visible, and at once when force is set (a presence change
  // moved the counts, which a background tab shows too).
  async function pollCluster(force = false) {
    clearTimeout(clusterTimer);
    if (!clusterPanel || session.ended || clusterBusy) return;
    clusterBusy = true;
    let stop = false;
    if (force === true || document.visibilityState === 'visible') {
      try {
        const res = await fetch(withPin('/api/cluster'), {
          credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' },
        });
        const data = res.ok ? parseJSON(await res.text()) : null;
        if (data && Array.isArray(data.members)) {
          renderCluster(data);
          clusterPanel.hidden = false;
        } else {
          clusterPanel.hidden = true;
          stop = res.status === 404; // no cluster API on this server: stop asking
        }
      } catch {
        clusterPanel.hidden = true;
      }
    }
    clusterBusy = false;
    if (!stop && !session.ended) clusterTimer = setTimeout(pollCluster, CLUSTER_POLL_MS);
  }

  function safeHTTPURL(s) {
    try {
      const u = new URL(s, location.href);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch {
      return null;
    }
  }

  // renderCluster shows what /api/cluster says, in the order it says it
  // (the primary first, then by name: the same on every node). A node on
  // its own, without replication, is one quiet line.
  function renderCluster(data) {
    const single = data.members.length === 1 && !data.replication;
    clusterPanel.classList.toggle('cluster-one', single);
    clusterPanel.dataset.members = String(data.members.length);
    if (single) {
      const m = data.members[0];
      const line = document.createElement('p');
      line.className = 'cluster-single';
      line.textContent = `Single node: ${m.name}${m.region ? ` (${m.region})` : ''}, not part of a cluster.`;
      clusterPanel.dataset.replication = '';
      clusterBody.replaceChildren(line);
      return;
    }
    const table = document.createElement('table');
    table.className = 'cluster-members';
    const head = table.createTHead().insertRow();
    for (const h of ['Node', 'Region', 'Role', 'State', 'Conns']) {
      const th = document.createElement('th');
      th.textContent = h;
      head.append(th);
    }
    const tbody = table.createTBody();
    for (const m of data.members) {
      const name = String(m.name ?? '');
      const row = tbody.insertRow();
      row.dataset.member = name;
      if (m.state) row.dataset.state = String(m.state);
      if (name === data.self) row.classList.add('self');

      const nameCell = row.insertCell();
      // A member's own URL where it has one (local cluster: one port per node);
      // otherwise a tab pinned to it with ?node= (on Fly: fly-replay).
      const href = m.http_url ? safeHTTPURL(m.http_url) : `/?node=${encodeURIComponent(name)}`;
      if (href) {
        const a = document.createElement('a');
        a.href = href;
        a.textContent = name;
        a.title = m.http_url ? `open ${m.http_url}` : `open a tab pinned to ${name}`;
        nameCell.append(a);
      } else {
        nameCell.textContent = name;
      }
      if (name === data.self) nameCell.append(' (this node)');

      const role = m.role || (name === data.primary ? 'primary' : 'replica');
      for (const v of [m.region, role, m.state, m.connections]) {
        row.insertCell().textContent = v === undefined || v === null ? '' : String(v);
      }
    }
    // What this node says of its copy of the data: a replica that cannot
    // hear from the primary serves what it has, and the page says so.
    const rep = data.replication;
    clusterPanel.dataset.replication = rep && rep.state ? String(rep.state) : '';
    if (rep && rep.state === 'stale') {
      const note = document.createElement('p');
      note.className = 'cluster-stale';
      note.textContent = `This node is behind: ${rep.reason || 'it has no word from the primary'}`;
      clusterBody.replaceChildren(table, note);
    } else {
      clusterBody.replaceChildren(table);
    }
  }

  // ---------------------------------------------------------------- start

  setStatus('connecting', 'Connecting…');
  connect();
  pollCluster();
})();
