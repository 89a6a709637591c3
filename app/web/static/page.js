// notesync: what every signed-in page shares. Small helpers, the tab's pin,
// and window.notesync, the test hook ({transport, attempts, version, change}).
//
// The pages are ES modules served as they are, no build step; htmx is the
// one dependency, loaded before them as a classic script (window.htmx).

export const $ = (sel) => document.querySelector(sel);

// notesync is the tab's state that tests read: the live transport, every
// connection attempt, the notes version the list shows, and the change
// that reached it ('' when not known; docs/PROTOCOL.md §11).
export const notesync = { transport: null, attempts: [], version: 0, change: '' };

// changeQuery is the query that names change beside a version: what the
// tab has seen, so that a server that holds another history can say so.
export const changeQuery = (change) => (change ? `&change=${encodeURIComponent(change)}` : '');

export function toVersion(v) {
  if (v === null || v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const nl = (s) => s.replace(/\r\n?/g, '\n');

export function parseJSON(text) {
  try { return JSON.parse(text); } catch { return null; }
}

export const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// A wait in words: "1 second", "20 seconds", "3 minutes".
export function inWords(ms) {
  const secs = Math.max(1, Math.ceil(ms / 1000));
  if (secs < 60) return secs === 1 ? '1 second' : `${secs} seconds`;
  const mins = Math.ceil(secs / 60);
  return mins === 1 ? '1 minute' : `${mins} minutes`;
}

// The first words of a note, for accessible names and messages.
export function snippet(text) {
  const words = String(text || '').trim().split(/\s+/).slice(0, 6).join(' ');
  return words.length > 40 ? `${words.slice(0, 39)}…` : words;
}

// logItem makes an entry of an #event-log: an <li> of the type, opening
// with the time it happened.
export function logItem(type, at = new Date()) {
  const li = document.createElement('li');
  li.dataset.type = type;
  const t = document.createElement('time');
  t.dateTime = at.toISOString();
  t.textContent = at.toLocaleTimeString([], { hour12: false });
  return { li, time: t };
}

// ---------------------------------------------------------------- tab pin
//
// /?node=NAME pins this tab (not the whole browser) to one node. The pin
// lives in the URL rather than in a cookie precisely so that two tabs of the
// same browser can be pinned to different nodes; the price is that every
// request the page makes must carry it explicitly, hence withPin().

const pin = new URLSearchParams();
{
  const here = new URLSearchParams(location.search);
  for (const key of ['node', 'region']) {
    const v = here.get(key);
    if (v) pin.set(key, v);
  }
}

// withPin('/notes?min_version=3') -> '/notes?min_version=3&node=node2'
export function withPin(url) {
  if (!pin.toString()) return url;
  const u = new URL(url, location.href);
  for (const [k, v] of pin) u.searchParams.set(k, v);
  return u.origin === location.origin ? u.pathname + u.search + u.hash : u.href;
}

// pinLinks carries the pin on the navigation and the log-out form, and
// names the keys this keyboard has in the keyboard hints.
export function pinLinks() {
  const logoutForm = $('#logout-form') || $('form[action^="/logout"]');
  if (logoutForm) logoutForm.action = withPin(logoutForm.getAttribute('action') || '/logout');
  for (const a of document.querySelectorAll('.nav a[href^="/"]')) a.href = withPin(a.getAttribute('href'));
  if (/Mac|iPhone|iPad/.test(navigator.platform || '')) {
    for (const k of document.querySelectorAll('.kbd-hint kbd')) if (k.textContent === 'Ctrl') k.textContent = '⌘';
  }
}
