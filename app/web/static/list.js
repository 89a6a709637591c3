// notesync: the notes list, #notes-list (docs/PROTOCOL.md §3, §5).
//
// The list shows a version (window.notesync.version). refreshTo(V) fetches
// GET /notes?min_version=V, whose answer is at least V by the server's
// promise (the exact version is in X-Notes-Version), and htmx swaps it in
// with the list's own swap style, "notes": a keyed reconcile by
// data-note-id that keeps what is unchanged (an open editor, a note
// fading out) instead of replacing the list. Refreshes are serialised: one
// in flight at a time, and the highest version wanted meanwhile is fetched
// once more after it. A fragment older than what is shown is never applied.
//
// The list comes in pages (GET /notes?before=ID): it ends in a hidden
// li.notes-more whose data-next is the cursor of the next page, and
// pages.js appends older pages as the person scrolls (swapIn, append). A
// refresh covers every note on screen, not only the first page: it asks
// for as many notes as are shown, then follows the cursor until the
// oldest shown note is covered, so that older pages the person loaded are
// kept in their order and a note deleted elsewhere among them still fades
// out. While the person is scrolled down, the note they look at keeps its
// place on screen when notes arrive above it.
//
// A note that arrives from elsewhere glows (note-flash) and one that goes
// fades out (note-leaving): the swap marks them, and htmx:afterSwap starts
// the timers that end the glow and remove the note. Timers, never
// transitionend alone: background tabs pause animations and throttle
// timers, and glow and fade must finish there too.
//
// A note with writes that wait (note-pending, queue.js) is the queue's:
// a refresh neither changes it, nor moves it, nor removes it, until its
// writes are sent (docs/PROTOCOL.md §12).

import { $, notesync, toVersion, sleep, withPin, changeQuery } from './page.js';
import { waitForOwnWrites, retryAfterMs } from './write.js';
import { isEnded, checkSessionThenEnd } from './transport.js';
import {
  noteId, noteRev, isEditing, clampNote, labelNote, localizeTimes,
  markChangedElsewhere, markDeletedElsewhere, clearDeletedElsewhere,
} from './note.js';

const FLASH_MS = 2000;  // .note-flash lifetime (spec: at least 1.5 s)
export const LEAVE_MS = 400; // .note-leaving lifetime (CSS fade is 300 ms)
const SWAP = 'notes';   // the list's htmx swap style (extension "notes-list")
const PAGE = 200;       // a page of the list when ?limit= is not given
const MAX_PAGE = 1000;  // the most one page may hold (docs/PROTOCOL.md §3)

export const listEl = $('#notes-list');

export const ownCreated = new Set();     // ids this tab created: no flash
export const ownEdits = new Map();       // id -> body this tab saved: no flash
export const pendingDeletes = new Set(); // ids this tab is deleting right now
// ids known to be deleted -> the list version at which they were. A list
// at a later version that holds the id again shows a restored note (ids
// are never reused); an older one must not bring it back.
export const gone = new Map();
const flashTimers = new WeakMap();

// wanted is the version to show and wantedChange the change that reached
// it, as a push named it. restarting: the stream the list followed went
// another way (restartList), and the next list replaces it whatever its
// version; epoch counts restarts, so that a list fetched before one is
// not shown.
const refresh = { wanted: 0, wantedChange: '', running: false, retryTimer: 0, restarting: false, epoch: 0 };

// incoming is the fragment being swapped in: its version, the notes the
// swap marked to glow or to leave, and whether it is an older page to
// append (append) rather than the list to reconcile.
let incoming = null;

// Refreshes and older pages take turns: a page appended while a refresh
// reads would look deleted to it.
let turn = Promise.resolve();
export function inTurn(fn) {
  const p = turn.then(fn);
  turn = p.catch(() => {});
  return p;
}

function setShownVersion(v, change) {
  notesync.version = v;
  notesync.change = change || '';
  listEl.dataset.version = String(v);
  listEl.dataset.change = notesync.change;
  document.body.dataset.version = String(v);
}

// Ask for the list to show at least `version`, reached by `change` when
// known. A refresh in flight picks the raised target up when it finishes
// (the loop in runRefresh).
export function refreshTo(version, change = '') {
  if (version !== null && version > refresh.wanted) {
    refresh.wanted = version;
    refresh.wantedChange = change || '';
  }
  if ((!refresh.restarting && refresh.wanted <= notesync.version) || refresh.running) return;
  runRefresh();
}

// restartList shows the list afresh: the stream it followed went another
// way (a sync with diverged, docs/PROTOCOL.md §11), so any note it shows
// may be gone and its version may go back. The list at `version` or later
// replaces it, even below the version it shows.
export function restartList(version, change = '') {
  refresh.epoch++;
  refresh.restarting = true;
  refresh.wanted = version;
  refresh.wantedChange = change || '';
  gone.clear();
  if (!refresh.running) runRefresh();
}

async function runRefresh() {
  refresh.running = true;
  clearTimeout(refresh.retryTimer);
  try {
    await inTurn(refreshLoop);
  } finally {
    refresh.running = false;
  }
}

async function refreshLoop() {
  let failures = 0;
  do {
    if (isEnded()) return;
    const epoch = refresh.epoch;
    const min = refresh.restarting ? refresh.wanted : Math.max(refresh.wanted, notesync.version);
    // The change the tab knows at min: the one shown, or the one a push named.
    const seen = !refresh.restarting && min === notesync.version ? notesync.change : refresh.wantedChange;
    const r = await fetchCovering(min, seen);
    if (epoch !== refresh.epoch) continue; // restarted meanwhile: that list is wanted
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
    // Let our own in-flight creates/edits finish first, so their
    // ids/bodies are known and they do not glow.
    await waitForOwnWrites();
    if (epoch !== refresh.epoch) continue;
    // A list from another history than the one asked for (diverged)
    // replaces what is shown, as after a restart.
    if (r.diverged) gone.clear();
    if (r.version >= notesync.version || refresh.restarting || r.diverged) {
      refresh.restarting = false;
      swapIn(r.html, r.version);
      setShownVersion(r.version, r.change);
    }
  } while (refresh.restarting || refresh.wanted > notesync.version);
}

// shownNotes are the ids of the notes the list shows.
const shownNotes = () => Array.from(listEl.querySelectorAll(':scope > [data-note-id]'), noteId);

// notePlace is a note's place in the list (data-place; NaN for a note
// without one, not from the server's list): the list is in descending
// place, and a page's cursor (data-next) is the place of its last note.
// Ids are random and tell nothing of the order.
const notePlace = (el) => (el.hasAttribute('data-place') ? Number(el.getAttribute('data-place')) : NaN);

// fetchCovering asks for the list at minVersion or later, as far down as
// the oldest note shown: one page of as many notes as are shown, then
// the pages after it while the oldest shown is not reached (notes
// created meanwhile push older ones onto the next page). The pages are
// joined into one fragment, ending in the last page's sentinel. change
// names the change the tab knows at minVersion ('': none).
async function fetchCovering(minVersion, change) {
  const shown = Array.from(listEl.querySelectorAll(':scope > [data-note-id]'), notePlace).filter(Number.isFinite);
  const oldest = Math.min(...shown);
  const limit = Math.min(shown.length, MAX_PAGE);
  let r = await fetchFragment(minVersion, (limit > PAGE ? `&limit=${limit}` : '') + changeQuery(change));
  if (!r.ok) return r;
  const page = { ...r };
  while (page.next && page.next > oldest) {
    const below = shown.filter((place) => place < page.next).length;
    r = await fetchFragment(page.version, `&before=${page.next}&limit=${Math.min(Math.max(below, 1), MAX_PAGE)}`);
    if (!r.ok) return r;
    page.html += r.html;
    page.next = r.next;
  }
  if (page.next) page.html += r.sentinel;
  return page;
}

// fetchFragment asks for the list at minVersion or later. It is a fetch()
// rather than an htmx request: it must not follow a redirect (XHR always
// does), and the page's htmx requests are its note form's writes.
// query is added to it: a page's ?before= and ?limit=. Its answer's html
// holds the notes, without the sentinel, which comes apart with its
// cursor, next (0: the last page).
export async function fetchFragment(minVersion, query = '') {
  let res;
  try {
    res = await fetch(withPin(`/notes?min_version=${minVersion}${query}`), {
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
  const tpl = document.createElement('template');
  tpl.innerHTML = await res.text();
  let version = toVersion(res.headers.get('X-Notes-Version'));
  if (version === null) {
    version = toVersion((tpl.content.querySelector('[data-version]') || {}).dataset?.version) ?? minVersion;
  }
  // The server promised at least minVersion; anything else is a bad answer.
  if (version < minVersion) return { ok: false };
  const more = tpl.content.querySelector('.notes-more');
  more?.remove();
  return {
    ok: true, version, html: tpl.innerHTML, next: toVersion(more?.dataset.next) ?? 0, sentinel: more?.outerHTML ?? '',
    change: res.headers.get('X-Notes-Change') || '', diverged: res.headers.get('X-Notes-Diverged') === 'true',
  };
}

// swapIn has htmx swap a fragment of the list, at version, into
// #notes-list; with append, the fragment is an older page, added below.
export function swapIn(html, version, append = false) {
  incoming = { version, glow: [], leave: [], append };
  const anchor = viewAnchor();
  try {
    htmx.swap(listEl, html, { swapStyle: SWAP, settleDelay: 0, ignoreTitle: true, transition: false },
      { contextElement: listEl });
  } finally {
    incoming = null;
    keepInView(anchor);
  }
}

// viewAnchor is the note at the top of the window, and where it is, while
// the person is scrolled into the list; null at the top of the page, where
// a new note is to be seen arriving.
function viewAnchor() {
  if (listEl.getBoundingClientRect().top >= 0) return null;
  for (const el of listEl.querySelectorAll(':scope > [data-note-id]')) {
    const top = el.getBoundingClientRect().top;
    if (top >= 0) return { el, top };
  }
  return null;
}

// keepInView scrolls so that the anchor is where it was before the swap
// (the browser's own scroll anchoring may already have done it).
function keepInView(anchor) {
  if (!anchor || !anchor.el.isConnected) return;
  const moved = anchor.el.getBoundingClientRect().top - anchor.top;
  if (Math.abs(moved) >= 1) window.scrollBy(0, moved);
}

// startList makes the list live: the swap style, the timers started on
// each swap, and long notes clamped.
export function startList() {
  refresh.wanted = notesync.version;
  htmx.defineExtension('notes-list', {
    handleSwap(style, target, fragment) {
      if (style !== SWAP) return false;
      // Whatever happens, htmx must not fall back to replacing the list.
      try {
        if (incoming?.append) appendNotes(topNotes(fragment), fragment.querySelector('.notes-more'));
        else if (incoming) reconcile(topNotes(fragment), incoming.version, fragment.querySelector('.notes-more'));
      } catch (err) {
        console.error('notes list swap:', err);
      }
      return true;
    },
  });
  listEl.addEventListener('htmx:afterSwap', (e) => {
    if (e.target !== listEl || !incoming) return;
    for (const el of incoming.glow) flash(el);
    for (const el of incoming.leave) fadeOutAndRemove(el);
  });
  localizeTimes(listEl);
  clampAll();
  let clampTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(clampTimer);
    clampTimer = setTimeout(clampAll, 150);
  });
}

function clampAll() {
  for (const el of listEl.querySelectorAll(':scope > [data-note-id]')) clampNote(el);
}

// topNotes are the notes of a fragment, not those nested in one.
function topNotes(fragment) {
  return Array.from(fragment.querySelectorAll('[data-note-id]'))
    .filter((el) => !el.parentElement || !el.parentElement.closest('[data-note-id]'));
}

// Live notes take part in the list's order; leaving ones and ones
// deleted elsewhere (kept for their open editor) stay where they are.
const isLiveNote = (node) => node.nodeType === 1 && node.hasAttribute('data-note-id') &&
  !node.classList.contains('note-leaving') && !node.classList.contains('note-deleted-elsewhere') &&
  !node.classList.contains('note-pending');

// isQueued reports a note whose writes wait: the queue's, not the swap's.
const isQueued = (el) => el.classList.contains('note-pending');

// reconcile brings #notes-list in line with `items` (fresh <li>s from the
// server, in the server's order, newest first), a list at `version`,
// without replacing what is unchanged.
// more is the fragment's sentinel: the list's next page after it.
function reconcile(items, version, more) {
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

  // Notes no longer on the server start to leave first, in place: the
  // placement loop below then steps over them instead of pushing them
  // down. A note open in an editor stays, with what the user typed
  // (docs/PROTOCOL.md §6).
  for (const [id, el] of existing) {
    if (keep.has(id) || pendingDeletes.has(id) || isQueued(el)) continue;
    if (isEditing(el)) { markDeletedElsewhere(el); continue; }
    gone.set(id, version);
    el.classList.add('note-leaving');
    incoming.leave.push(el);
  }

  let cursor = listEl.firstChild;
  for (const fresh of wanted) {
    const id = noteId(fresh);
    let el = existing.get(id);
    if (el && (pendingDeletes.has(id) || isQueued(el))) continue; // our write is in flight, or waits
    if (el) {
      if (el.classList.contains('note-deleted-elsewhere')) clearDeletedElsewhere(el);
      updateNote(el, fresh);
    } else {
      el = document.importNode(fresh, true);
      localizeTimes(el);
      if (!ownCreated.has(id)) glow(el);
    }
    // Place el at the cursor, skipping nodes that are leaving or are not
    // notes (whitespace), so leaving notes fade where they were.
    while (cursor && cursor !== el && !isLiveNote(cursor)) cursor = cursor.nextSibling;
    if (cursor === el) cursor = el.nextSibling;
    else listEl.insertBefore(el, cursor);
    clampNote(el);
  }
  setSentinel(more);
}

// appendNotes adds an older page's notes below the list, those it does not
// show already, and its sentinel in place of the list's.
function appendNotes(items, more) {
  const shown = new Set(shownNotes());
  for (const fresh of items) {
    const id = noteId(fresh);
    if (shown.has(id) || gone.has(id)) continue;
    const el = document.importNode(fresh, true);
    localizeTimes(el);
    listEl.insertBefore(el, sentinel());
    clampNote(el);
  }
  setSentinel(more);
}

// sentinel is the list's li.notes-more, if more notes follow.
export const sentinel = () => listEl.querySelector(':scope > .notes-more');

function setSentinel(more) {
  sentinel()?.remove();
  if (more) listEl.appendChild(document.importNode(more, true));
}

// glow marks a note of the swap to glow; htmx:afterSwap times it.
function glow(el) {
  el.classList.add('note-flash');
  incoming.glow.push(el);
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
    else if (!form) glow(el);
  }
  if (rev > noteRev(el)) el.setAttribute('data-rev', String(rev));
  if (form && rev > Number(form.dataset.baseRev)) markChangedElsewhere(el);
  const timeEl = el.querySelector('time');
  const freshTime = fresh.querySelector('time');
  if (timeEl && freshTime && timeEl.dateTime !== freshTime.dateTime) {
    timeEl.dateTime = freshTime.dateTime;
    localizeTimes(el);
  }
}

// flash makes a note glow for FLASH_MS.
export function flash(el) {
  clearTimeout(flashTimers.get(el));
  el.classList.add('note-flash');
  flashTimers.set(el, setTimeout(() => el.classList.remove('note-flash'), FLASH_MS));
}

// fadeOutAndRemove fades a note out and removes it after delay.
export function fadeOutAndRemove(el, delay = LEAVE_MS) {
  // Should it come back (undo), it comes back from elsewhere.
  ownCreated.delete(noteId(el));
  el.classList.add('note-leaving');
  if (el.dataset.removing) return;
  el.dataset.removing = '1';
  setTimeout(() => el.remove(), delay);
}
