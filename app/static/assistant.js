// notesync Assistant page.
//
// POST /api/assistant answers text/event-stream, which EventSource cannot
// POST, so the page reads it with fetch and a ReadableStream, rendering each
// event as it arrives: tokens are appended to the answer, tool calls and
// results are listed in the Event Log (#event-log). Cancel aborts the fetch,
// which ends the request and so stops the agent on the server.
// Test hook: window.notesyncAssistant = {running, events: [{type, data}]}.
(() => {
  'use strict';

  const EVENT_LOG_MAX = 200;
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
  for (const a of document.querySelectorAll('#notes-link')) a.href = withPin('/');
  const logoutForm = $('#logout-form');
  if (logoutForm) logoutForm.action = withPin('/logout');

  function logEvent(type, text, failed) {
    const li = document.createElement('li');
    li.dataset.type = type;
    if (failed) li.dataset.failed = '';
    const t = document.createElement('time');
    const now = new Date();
    t.dateTime = now.toISOString();
    t.textContent = now.toLocaleTimeString([], { hour12: false });
    li.append(t, ' ', text);
    eventLogEl.prepend(li);
    while (eventLogEl.children.length > EVENT_LOG_MAX) eventLogEl.lastElementChild.remove();
  }

  function showError(msg) {
    errorEl.textContent = msg;
    errorEl.hidden = !msg;
  }

  function bubble(cls, text) {
    const li = document.createElement('li');
    li.className = cls;
    li.textContent = text;
    transcript.append(li);
    li.scrollIntoView({ block: 'nearest' });
    return li;
  }

  function short(v) {
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    return s && s.length > 300 ? s.slice(0, 299) + '…' : s;
  }

  function setRunning(on) {
    state.running = on;
    sendBtn.disabled = on;
    cancelBtn.disabled = !on;
  }

  function handle(type, data, answerEl) {
    state.events.push({ type, data });
    switch (type) {
      case 'token':
        answerEl.append(document.createTextNode(data.text || ''));
        break;
      case 'tool_call':
        logEvent('tool_call', `tool_call ${data.name}(${short(data.arguments)}) [${data.id}]`);
        break;
      case 'tool_result':
        if ('error' in data) logEvent('tool_result', `tool_result ${data.name} error: ${data.error} [${data.id}]`, true);
        else logEvent('tool_result', `tool_result ${data.name} → ${short(data.result)} [${data.id}]`);
        break;
      case 'error': {
        const p = document.createElement('span');
        p.className = 'assistant-failure';
        p.textContent = (answerEl.textContent ? '\n' : '') + 'Error: ' + (data.error || 'unknown');
        answerEl.append(p);
        logEvent('error', `error: ${data.error}`, true);
        break;
      }
      case 'done':
        logEvent('done', 'done');
        break;
      default:
        logEvent(type, `${type} ${short(data)}`);
    }
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

  async function ask(message) {
    showError('');
    bubble('from-user', message);
    const answerEl = bubble('from-assistant', '');
    answerEl.dataset.state = 'running';
    controller = new AbortController();
    setRunning(true);
    logEvent('request', `asked: ${short(message)}`);
    let sawDone = false;
    try {
      const res = await fetch(withPin('/api/assistant'), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify({ message }),
        credentials: 'same-origin',
        signal: controller.signal,
      });
      if (!res.ok || !(res.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
        let msg = `HTTP ${res.status}`;
        try { const j = await res.json(); if (j && j.error) msg = j.error; } catch { /* not JSON */ }
        if (res.status === 401) { location.href = '/login'; return; }
        handle('error', { error: msg }, answerEl);
        return;
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = parseBlock(buf.slice(0, i));
          buf = buf.slice(i + 2);
          if (!ev) continue;
          if (ev[0] === 'done') sawDone = true;
          handle(ev[0], ev[1], answerEl);
        }
      }
      if (!sawDone) handle('error', { error: 'the answer was cut off' }, answerEl);
    } catch (err) {
      if (err && err.name === 'AbortError') {
        const p = document.createElement('span');
        p.className = 'assistant-failure';
        p.textContent = (answerEl.textContent ? '\n' : '') + 'Cancelled.';
        answerEl.append(p);
        logEvent('cancelled', 'cancelled by you');
      } else {
        handle('error', { error: 'network error: ' + (err && err.message ? err.message : err) }, answerEl);
      }
    } finally {
      delete answerEl.dataset.state;
      controller = null;
      setRunning(false);
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (state.running) return;
    const message = input.value.trim();
    if (!message) { showError('Type a command first.'); return; }
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
})();
