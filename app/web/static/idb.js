// notesync: what the page keeps in the browser's own storage, IndexedDB
// (docs/PROTOCOL.md §12). Two stores, both keyed by user, so that nobody
// signing in on the same browser ever sees or sends another's:
//   pending   the writes made while the tab could not reach its node, in
//             the order they were made (seq), each with its
//             Idempotency-Key and the revision it was made against
//   lastseen  the notes list as the tab last showed it, per user
// Where IndexedDB is missing or refused (a private window may refuse it),
// every call resolves as if the stores were empty and keeps nothing.

const DB_NAME = 'notesync';
const DB_VERSION = 1;

let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve) => {
      let req;
      try { req = indexedDB.open(DB_NAME, DB_VERSION); } catch { resolve(null); return; }
      req.onupgradeneeded = () => {
        const db = req.result;
        const pending = db.createObjectStore('pending', { keyPath: 'seq', autoIncrement: true });
        pending.createIndex('user', 'user');
        db.createObjectStore('lastseen', { keyPath: 'user' });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
      req.onblocked = () => resolve(null);
    });
  }
  return opening;
}

// run runs fn(store) in a transaction on store name and resolves with the
// result of the request fn returns (undefined without one) once the
// transaction is committed; or with fallback when there is no database.
async function run(name, mode, fn, fallback) {
  const db = await open();
  if (!db) return fallback;
  return new Promise((resolve) => {
    let tx;
    try { tx = db.transaction(name, mode); } catch { resolve(fallback); return; }
    const req = fn(tx.objectStore(name));
    tx.oncomplete = () => resolve(req ? req.result : undefined);
    tx.onerror = () => resolve(fallback);
    tx.onabort = () => resolve(fallback);
  });
}

// pendingOf resolves with user's pending writes, oldest first.
export function pendingOf(user) {
  return run('pending', 'readonly', (s) => s.index('user').getAll(user), [])
    .then((items) => items.sort((a, b) => a.seq - b.seq));
}

// putPending keeps a write (a new one gets its seq) and resolves with it;
// its saving mark, which says it is not kept yet, is not kept.
export async function putPending(item) {
  const record = { ...item };
  delete record.saving;
  const seq = await run('pending', 'readwrite', (s) => s.put(record), undefined);
  if (seq !== undefined) item.seq = seq;
  return item;
}

export const dropPending = (seq) => (seq === undefined ? Promise.resolve()
  : run('pending', 'readwrite', (s) => s.delete(seq), undefined));

// dropUser forgets all that is kept for user: pending writes and the
// last list seen.
export async function dropUser(user) {
  for (const item of await pendingOf(user)) await dropPending(item.seq);
  await run('lastseen', 'readwrite', (s) => s.delete(user), undefined);
}

export const lastSeenOf = (user) => run('lastseen', 'readonly', (s) => s.get(user), undefined);

export const putLastSeen = (entry) => run('lastseen', 'readwrite', (s) => s.put(entry), undefined);
