// notesync Assistant page.
//
// POST /api/assistant answers text/event-stream, which EventSource cannot
// POST, so the page reads it with fetch and a ReadableStream, rendering each
// event as it arrives: tokens are appended to the answer, tool calls and
// results are listed in the event log (#event-log), each as one line in
// words that opens to its raw JSON. Cancel aborts the fetch, which ends the
// request and so stops the agent on the server.
//
// The conversation and its log are kept in sessionStorage: a reload within
// the tab's session shows them again. The notes beside the chat are
// app.js's (docs/PROTOCOL.md §9).
// Test hook: window.notesyncAssistant = {running, events: [{type, data}]}.
(() => {
  'use strict';

  const EVENT_LOG_MAX = 200;
  const MESSAGES_MAX = 100;
  const $ = (sel) => document.querySelector(sel);
  const form = $('#assistant-form');
  if (!form) return;
  const input = $('#assistant-message');
  const sendBtn = $('#assistant-send');
  const cancelBtn = $('#assistant-cancel');
  const errorEl = $('#assistant-error');
  const transcript = $('#assistant-transcript');
  const eventLogEl = $('#event-log');

  const state = { running: false, events: [] };
  window.notesyncAssistant = state;
  let controller = null;

  // The tab's pin (?node=NAME / ?region=R), carried on every request.
  function withPin(url) {
    const here = new URLSearchParams(location.search);
    const u = new URL(url, location.origin);
    for (const k of ['node', 'region']) {
      const v = here.get(k);
      if (v) u.searchParams.set(k, v);
    }
    return u.pathname + u.search;
  }

  // ---------------------------------------------------------------- saved conversation

  // One conversation per user and tab: another account signed in in this
  // tab does not see it, and logging out forgets it.
  const user = ($('.username')?.textContent || '').replace(/^Logged in as /, '').trim();
  const storeKey = `notesync-assistant:${user}`;
  const saved = { messages: [], log: [] };

  function load() {
    try {
      const v = JSON.parse(sessionStorage.getItem(storeKey) || 'null');
      if (v && Array.isArray(v.messages) && Array.isArray(v.log)) Object.assign(saved, v);
    } catch { /* storage off or damaged: start afresh */ }
  }

  // save writes the conversation a moment later (tokens come many a
  // second), and at once when the page goes away.
  let saveTimer = 0;
  function save() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(flush, 100);
  }

  function flush() {
    clearTimeout(saveTimer);
    saved.messages = saved.messages.slice(-MESSAGES_MAX);
    saved.log = saved.log.slice(-EVENT_LOG_MAX);
    try { sessionStorage.setItem(storeKey, JSON.stringify(saved)); } catch { /* full or off */ }
  }
  window.addEventListener('pagehide', flush);

  const logoutForm = $('#logout-form');
  if (logoutForm) {
    logoutForm.addEventListener('submit', () => {
      try { sessionStorage.removeItem(storeKey); } catch { /* off */ }
    });
  }

  // ---------------------------------------------------------------- transcript

  // bubble shows a message; entry is its saved form ({from, text, failure}).
  function bubble(entry) {
    const li = document.createElement('li');
    li.className = entry.from === 'user' ? 'from-user' : 'from-assistant';
    li.textContent = entry.text || '';
    if (entry.failure) appendFailure(li, entry.failure);
    transcript.append(li);
    li.scrollIntoView({ block: 'nearest' });
    return li;
  }

  function appendFailure(li, text) {
    const p = document.createElement('span');
    p.className = 'assistant-failure';
    p.textContent = (li.firstChild ? '\n' : '') + text;
    li.append(p);
  }

  function addMessage(from, text) {
    const entry = { from, text };
    saved.messages.push(entry);
    save();
    return { entry, el: bubble(entry) };
  }

  // ---------------------------------------------------------------- event log

  function short(v, max = 80) {
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    return s && s.length > max ? s.slice(0, max - 1) + '…' : s;
  }
  const quoted = (s) => `“${short(String(s), 60)}”`;

  // What a tool was asked, in a few words: "id 12, body “buy milk”".
  function describeArgs(args) {
    if (!args || typeof args !== 'object') return args ? short(String(args)) : '';
    return Object.entries(args)
      .map(([k, v]) => `${k} ${typeof v === 'string' ? quoted(v) : short(v, 40)}`)
      .join(', ');
  }

  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

  // What a tool answered, in a few words.
  function describeResult(name, r) {
    if (!r || typeof r !== 'object') return short(r);
    const note = r.note && typeof r.note === 'object' ? r.note : null;
    switch (name) {
      case 'list_notes':
      case 'search_notes': {
        const notes = Array.isArray(r.notes) ? r.notes : [];
        const first = notes.slice(0, 3).map((n) => quoted(n.body)).join(', ');
        return `${plural(Number(r.count ?? notes.length), 'note', 'notes')}${first ? `: ${first}` : ''}${notes.length > 3 ? ', …' : ''}`;
      }
      case 'read_note': return note ? `note ${note.id}: ${quoted(note.body)}` : short(r);
      case 'create_note': return note ? `created note ${note.id}: ${quoted(note.body)}` : short(r);
      case 'update_note': return note ? `note ${note.id} now says ${quoted(note.body)}` : short(r);
      case 'delete_note': return r.deleted ? `deleted note ${r.deleted}` : short(r);
      default: return short(r);
    }
  }

  // logLine shows one log entry ({type, text, raw, failed, at}): the line
  // in words, and the raw JSON one click away.
  function logLine(entry) {
    const li = document.createElement('li');
    li.dataset.type = entry.type;
    if (entry.failed) li.dataset.failed = '';
    const t = document.createElement('time');
    const at = new Date(entry.at);
    t.dateTime = at.toISOString();
    t.textContent = at.toLocaleTimeString([], { hour12: false });
    const words = document.createElement('span');
    if (entry.tool) {
      const tool = document.createElement('span');
      tool.className = 'log-tool';
      tool.textContent = entry.tool;
      words.append(tool, ' ');
    }
    words.append(entry.text);
    if (entry.raw === undefined) {
      li.append(t, ' ', words);
    } else {
      const details = document.createElement('details');
      const summary = document.createElement('summary');
      summary.append(t, ' ', words);
      const pre = document.createElement('pre');
      pre.textContent = JSON.stringify(entry.raw, null, 2);
      details.append(summary, pre);
      li.append(details);
    }
    eventLogEl.prepend(li);
    while (eventLogEl.children.length > EVENT_LOG_MAX) eventLogEl.lastElementChild.remove();
  }

  function logEvent(type, text, { tool, raw, failed } = {}) {
    const entry = { type, text, tool, raw, failed: !!failed, at: Date.now() };
    saved.log.push(entry);
    save();
    logLine(entry);
  }

  // ---------------------------------------------------------------- the stream

  function showError(msg) {
    errorEl.textContent = msg;
    errorEl.hidden = !msg;
  }

  function setRunning(on) {
    state.running = on;
    sendBtn.disabled = on;
    cancelBtn.disabled = !on;
  }

  // handle renders one event of the answer; answer is {entry, el}.
  function handle(type, data, answer) {
    state.events.push({ type, data });
    switch (type) {
      case 'token':
        answer.el.append(document.createTextNode(data.text || ''));
        answer.entry.text += data.text || '';
        save();
        break;
      case 'tool_call':
        logEvent('tool_call', `asked: ${describeArgs(data.arguments) || 'nothing'}`, { tool: data.name, raw: data });
        break;
      case 'tool_result':
        if ('error' in data) logEvent('tool_result', `failed: ${data.error}`, { tool: data.name, raw: data, failed: true });
        else logEvent('tool_result', `answered: ${describeResult(data.name, data.result)}`, { tool: data.name, raw: data });
        break;
      case 'error':
        fail(answer, `Error: ${data.error || 'something went wrong'}`);
        logEvent('error', `stopped: ${data.error || 'something went wrong'}`, { raw: data, failed: true });
        break;
      case 'done':
        logEvent('done', 'finished');
        break;
      default:
        logEvent(type, short(data), { raw: data });
    }
  }

  function fail(answer, text) {
    answer.entry.failure = text;
    appendFailure(answer.el, text);
    save();
  }

  // parseBlock parses one SSE event block into [type, data].
  function parseBlock(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (!data.length) return null;
    let parsed;
    try { parsed = JSON.parse(data.join('\n')); } catch { parsed = { text: data.join('\n') }; }
    return [type, parsed];
  }

  // refusal says in plain words why the assistant did not start.
  async function refusal(res) {
    let said = '';
    try { const j = await res.json(); if (j && typeof j.error === 'string') said = j.error; } catch { /* not JSON */ }
    switch (res.status) {
      case 409: return said || 'The assistant is already working for you in another tab. Wait for it, or cancel it there.';
      case 400: return said ? `${said.charAt(0).toUpperCase()}${said.slice(1)}.` : 'The message was refused. Change it and send it again.';
      case 429: case 503: return 'The assistant cannot take a request just now. Try again in a few seconds.';
      default: return 'Something went wrong on the server. Try again in a moment.';
    }
  }

  // readStream renders the answer's events as they come; it reports
  // whether the answer came to its end ("done").
  async function readStream(res, answer) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let sawDone = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return sawDone;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = parseBlock(buf.slice(0, i));
        buf = buf.slice(i + 2);
        if (!ev) continue;
        if (ev[0] === 'done') sawDone = true;
        handle(ev[0], ev[1], answer);
      }
    }
  }

  async function ask(message) {
    showError('');
    addMessage('user', message);
    const answer = addMessage('assistant', '');
    answer.el.dataset.state = 'running';
    answer.entry.running = true;
    controller = new AbortController();
    setRunning(true);
    logEvent('request', `you asked: ${quoted(message)}`);
    try {
      const res = await fetch(withPin('/api/assistant'), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify({ message }),
        credentials: 'same-origin',
        signal: controller.signal,
      });
      if (res.status === 401) { location.href = '/login'; return; }
      if (!res.ok || !(res.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
        handle('error', { error: await refusal(res) }, answer);
        return;
      }
      if (!await readStream(res, answer)) {
        handle('error', { error: 'the answer was cut off. Ask again to finish it.' }, answer);
      }
    } catch (err) {
      if (err && err.name === 'AbortError') {
        fail(answer, 'Cancelled.');
        logEvent('cancelled', 'cancelled by you');
      } else {
        handle('error', { error: 'could not reach the server. Check your connection and ask again.' }, answer);
      }
    } finally {
      delete answer.el.dataset.state;
      delete answer.entry.running;
      save();
      controller = null;
      setRunning(false);
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (state.running) return;
    const message = input.value.trim();
    if (!message) { showError('Type what the assistant should do first.'); return; }
    input.value = '';
    ask(message);
  });

  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  cancelBtn.addEventListener('click', () => {
    if (controller) controller.abort();
  });

  // ---------------------------------------------------------------- start

  load();
  for (const m of saved.messages) {
    // An answer that was still coming when the page went away.
    if (m.running) { delete m.running; m.failure = 'Interrupted: the page was left before the answer ended.'; }
    bubble(m);
  }
  for (const entry of saved.log) logLine(entry);
})();
