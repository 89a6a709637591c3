// notesync: the older pages of #notes-list (docs/PROTOCOL.md §3, §5).
//
// The list shows its first page; when more notes follow, it ends in a
// hidden li.notes-more (the sentinel) whose data-next is the cursor of
// the next page, and #notes-older, "Show older notes", is shown below it.
// An IntersectionObserver loads the next page as that button comes near
// the window, so a person who scrolls sees the notes continue; keyboard
// and screen-reader users press the button. Each page is appended below
// the notes already shown (list.js swapIn), taking turns with the
// list's refreshes.

import { $, notesync } from './page.js';
import { listEl, sentinel, fetchFragment, swapIn, inTurn, refreshTo } from './list.js';
import { checkSessionThenEnd } from './transport.js';

const NEAR = '0px 0px 800px 0px'; // load before the end is in sight
const RETRY_MS = 2000;

const button = $('#notes-older');
let observer = null;
let loading = false;

// startPages shows the button while more notes follow, and loads a page
// when it is pressed or comes near the window.
export function startPages() {
  if (!button) return;
  showButton();
  button.addEventListener('click', () => loadOlder());
  listEl.addEventListener('htmx:afterSwap', showButton);
  if (!('IntersectionObserver' in window)) return;
  observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadOlder();
  }, { rootMargin: NEAR });
  observer.observe(button);
}

function showButton() {
  button.hidden = !sentinel();
}

// watchAgain has the observer report the button's place afresh: a page
// that did not push it out of reach calls for the next one.
function watchAgain() {
  if (!observer || button.hidden) return;
  observer.unobserve(button);
  observer.observe(button);
}

// loadOlder appends the page after the list's sentinel. A page at a newer
// version than the list asks for a refresh of what is shown.
async function loadOlder() {
  if (loading || !sentinel()) return;
  loading = true;
  button.setAttribute('aria-busy', 'true');
  let r = null;
  try {
    r = await inTurn(async () => {
      const more = sentinel();
      if (!more) return null;
      const page = await fetchFragment(notesync.version, `&before=${encodeURIComponent(more.dataset.next)}`);
      if (page.ok) swapIn(page.html + page.sentinel, page.version, true);
      return page;
    });
  } finally {
    loading = false;
    button.removeAttribute('aria-busy');
    showButton();
  }
  if (r?.ended) { checkSessionThenEnd(); return; }
  if (r?.ok && r.version > notesync.version) refreshTo(r.version);
  if (r && !r.ok) setTimeout(watchAgain, RETRY_MS);
  else watchAgain();
}
