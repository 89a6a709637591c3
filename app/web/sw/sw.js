// notesync: the service worker, served at /sw.js so that its scope is the
// whole origin (docs/PROTOCOL.md §12). The server puts two lines before
// this file: self.RELEASE, a name of the build (a hash of the page's
// templates and assets), and self.ASSETS, the /static/ files to keep.
//
// It keeps the notes page and its assets so that / opens with no
// connection at all, and nothing else:
//   - GET / : network first; what the network answers is kept (a 200
//     only), and served when the network fails. The page is the user's
//     own: it is dropped when any log-in, sign-up or log-out passes by, or
//     when / answers anything but the page, so that nobody is ever shown
//     another person's notes.
//   - GET /static/… : network first as well, so that an online page never
//     runs an old script; the copy is the offline fallback.
//   - everything else (/api/, /ws, /events, /notes, /assistant and its
//     stream, /login, /signup, /logout) goes to the network untouched.
//
// Caches are named after the release: a new build is a new sw.js (its
// first line changes), which the browser installs at the next visit; it
// takes over at once and deletes the caches of every other release.

const CACHE = `notesync-${self.RELEASE}`;
const PAGE = '/';
const NETWORK_PATIENCE_MS = 4000; // a network that hangs: the copy is served after this

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // One missing asset must not keep the worker out: each is kept apart.
    await Promise.all(self.ASSETS.map((url) => cache.add(url).catch(() => {})));
    await keepPage(cache);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name !== CACHE && name.startsWith('notesync-')) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.method !== 'GET') {
    // A change of account drops the kept page; the request itself goes
    // to the network as if there were no worker.
    if (['/login', '/signup', '/logout'].includes(url.pathname)) event.waitUntil(dropPage());
    return;
  }
  if (url.pathname === PAGE && req.mode === 'navigate') {
    event.respondWith(pageFirstFromNetwork(req));
    return;
  }
  if (url.pathname.startsWith('/static/')) event.respondWith(assetFirstFromNetwork(req, url));
});

// keepPage keeps the notes page of whoever is signed in as the worker
// installs (the page that registered it came before it), unless / sends
// the visitor to log in.
async function keepPage(cache) {
  try {
    const res = await fetch(PAGE, { credentials: 'same-origin', redirect: 'manual', cache: 'no-store' });
    if (res.status === 200 && res.type === 'basic') await cache.put(PAGE, res);
  } catch { /* offline: kept at the next visit */ }
}

async function dropPage() {
  const cache = await caches.open(CACHE);
  await cache.delete(PAGE);
}

// pageFirstFromNetwork serves / from the network, keeping a copy of the
// page, or the copy when the network fails.
async function pageFirstFromNetwork(req) {
  const cache = await caches.open(CACHE);
  try {
    const res = await withPatience(fetch(req), () => cache.match(PAGE));
    if (res.status === 200 && res.type === 'basic' && !res.redirected) {
      await cache.put(PAGE, res.clone());
    } else if (res.type === 'opaqueredirect' || res.redirected || res.status === 401) {
      await cache.delete(PAGE); // signed out: the kept page is nobody's now
    }
    return res;
  } catch (err) {
    const kept = await cache.match(PAGE);
    if (kept) return kept;
    throw err;
  }
}

async function assetFirstFromNetwork(req, url) {
  const cache = await caches.open(CACHE);
  const key = url.pathname; // the tab's pin (?node=) does not change a file
  try {
    const res = await withPatience(fetch(req), () => cache.match(key));
    if (res.ok && res.type === 'basic') await cache.put(key, res.clone());
    return res;
  } catch (err) {
    const kept = await cache.match(key);
    if (kept) return answerTo(kept);
    throw err;
  }
}

// answerTo makes a kept copy the answer to the request itself. The copy
// as kept names the file without its query, and a worker takes its
// location from the answer: the socket worker's would lose
// ?release=…&node=…, and with them the names of the tabs' locks, and let
// every tab go the moment it joined (docs/PROTOCOL.md §13). An answer
// made here names no URL, so the request's own stands.
function answerTo(kept) {
  return new Response(kept.body, { status: kept.status, statusText: kept.statusText, headers: kept.headers });
}

// withPatience resolves with what the network answers, or, when it takes
// longer than NETWORK_PATIENCE_MS and a copy exists, rejects so that the
// copy is served; the late answer is dropped.
function withPatience(answer, copy) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(async () => {
      if (await copy()) reject(new Error('the network is too slow'));
    }, NETWORK_PATIENCE_MS);
    answer.then((res) => { clearTimeout(timer); resolve(res); }, (err) => { clearTimeout(timer); reject(err); });
  });
}
