// notesync: the SharedWorker that holds the one real-time connection of
// the tabs of a browser (docs/PROTOCOL.md §13).
//
// Its URL names the release of the page's code and the tabs' pin
// (/static/socket-worker.js?release=R&node=N, see transport.js), so the
// tabs of one release and one pin share a worker, and a tab of a newer
// release starts a worker of its own. Each tab speaks to it over its port
// (relay.js says what they say). A worker is not told when a tab goes
// away without a word (it crashed, or was closed before its pagehide
// message went out): each tab holds a Web Lock named for it while it
// lives, and the worker asks for the same lock, which it gets once the
// tab is gone.

import { createRelay, lockName } from './relay.js';

const params = new URLSearchParams(location.search);
const release = params.get('release') || '';
params.delete('release');
const pin = params.toString();

const ports = new Map(); // tab id -> its port

const relay = createRelay({
  pin,
  shared: true,
  post(ev, tab) {
    if (tab !== undefined) {
      ports.get(tab)?.postMessage(ev);
      return;
    }
    for (const port of ports.values()) port.postMessage(ev);
  },
  watch(tab, gone) {
    if (!self.navigator.locks) return;
    self.navigator.locks.request(lockName(release, pin, `tab ${tab}`), () => {
      ports.delete(tab);
      gone();
    });
  },
});

function onTabMessage(port, m) {
  if (!m || typeof m !== 'object') return;
  if (m.op === 'join' && typeof m.tab === 'string') ports.set(m.tab, port);
  if (m.op === 'bye') ports.delete(m.tab);
  relay.receive(m);
}

self.onconnect = (e) => {
  const port = e.ports[0];
  port.onmessage = (ev) => onTabMessage(port, ev.data);
  port.start();
};
