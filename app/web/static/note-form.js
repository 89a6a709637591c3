// notesync: the new-note form, #note-form (docs/PROTOCOL.md §5).
//
// htmx sends it (its validation, its disabled button while the note is
// sent, its htmx:* events), through the page's one write path: the note's
// Idempotency-Key, and the retry with the same key (write.js). Ctrl+Enter
// adds the note.
//
// The textarea has no maxlength, which would silently cut a pasted note.
// Instead a live count (#note-count) says how long the note is and how far
// over the limit, and the form refuses to send a note that is too long or
// only blank, saying why. Characters are counted as the server counts
// them: Unicode code points.

import { $, nl, parseJSON, toVersion } from './page.js';
import { send, viaHtmx, beginOwnWrite, failure, newIdempotencyKey } from './write.js';
import { offline, queueCreate } from './queue.js';
import { showNoteError, showFailure } from './status.js';
import { checkSessionThenEnd } from './transport.js';
import { ownCreated, refreshTo } from './list.js';

const form = $('#note-form');
const textarea = form && form.querySelector('textarea[name=body]');
const count = $('#note-count');

export function startNoteForm() {
  if (!form || !textarea) return;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    addNote(textarea.value);
  });
  form.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && e.target.matches('textarea')) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  if (!count) return;
  textarea.addEventListener('input', updateCount);
  updateCount();
}

// addNote sends a new note; one that cannot reach the node while the tab
// is offline is queued (with the key it was tried with) and the form is
// cleared as for a saved note: the note shows in the list, pending.
async function addNote(body) {
  if (offline()) {
    if (form.reportValidity()) { queueCreate(body); clearSent(body); }
    return;
  }
  const done = beginOwnWrite();
  try {
    const key = newIdempotencyKey();
    const attempt = viaHtmx(form, '/api/notes', { body });
    const res = await send(attempt, { key });
    if (!res && !attempt.halted && offline()) {
      queueCreate(body, key);
      clearSent(body);
      return;
    }
    const data = res ? parseJSON(await res.text()) || {} : {};
    // The person types next where they typed last: the textarea keeps the
    // focus (htmx disabled the button that had it while the note was sent).
    const active = document.activeElement;
    if (!active || active === document.body || form.contains(active)) textarea.focus();
    if (res && res.status === 201) {
      if (data.note && data.note.id !== undefined) ownCreated.add(String(data.note.id));
      clearSent(body);
      refreshTo(toVersion(data.version));
      return;
    }
    showFailure(failure('the note was not saved', res, data));
    if (res && res.status === 401) checkSessionThenEnd();
  } finally {
    done();
  }
}

// clearSent clears the form once its note is saved or queued, but only if
// the text is still what was sent (the user may have started typing the
// next note while this one was saving).
function clearSent(body) {
  showNoteError('');
  if (nl(textarea.value) === nl(String(body))) {
    textarea.value = '';
    if (count) updateCount();
  }
}

function updateCount() {
  const max = Number(textarea.dataset.maxChars) || 10000;
  const fmt = (n) => n.toLocaleString('en-US');
  const n = Array.from(textarea.value).length;
  const over = n - max;
  let problem = '';
  if (over > 0) {
    problem = `This note is ${fmt(n)} characters; the limit is ${fmt(max)}. Shorten it by ${fmt(over)} to save it.`;
  } else if (n > 0 && textarea.value.trim() === '') {
    problem = 'Write something other than spaces and line breaks.';
  }
  // A note with a problem is not sent: the browser shows the reason.
  textarea.setCustomValidity(problem);
  count.textContent = over > 0 ? `${fmt(n)} / ${fmt(max)}: ${fmt(over)} over the limit` : `${fmt(n)} / ${fmt(max)}`;
  count.dataset.state = over > 0 ? 'over' : 'ok';
}
