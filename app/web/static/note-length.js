// notesync: the length of a new note, shown as it is typed.
//
// The note form's textarea has no maxlength, which would silently cut a
// pasted note. Instead a live count (#note-count) says how long the note is
// and how far over the limit, and the form refuses to send a note that is
// too long or only blank, saying why (docs/PROTOCOL.md §5). Characters are
// counted as the server counts them: Unicode code points.
(() => {
  'use strict';

  const form = document.querySelector('#note-form');
  const textarea = form && form.querySelector('textarea[name=body]');
  const count = document.querySelector('#note-count');
  if (!textarea || !count) return;

  const max = Number(textarea.dataset.maxChars) || 10000;
  const fmt = (n) => n.toLocaleString('en-US');

  function update() {
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

  textarea.addEventListener('input', update);
  // The page empties the textarea itself once a note is saved.
  document.addEventListener('htmx:afterRequest', update);
  update();
})();
