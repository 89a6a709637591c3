// notesync: the cluster panel, #cluster-panel (docs/PROTOCOL.md §3, §11).
//
// What GET /api/cluster says: the members, their roles, states, the
// user's connections and tabs on each (the tabs of a browser share one
// connection, §13), each one's position (LiteFS's TXID) and, for a
// replica, whether it holds every write the primary answered; who
// acknowledged the writes; and whether this node's copy of the data is
// behind. Polled
// every CLUSTER_POLL_MS while the tab is visible, and at once when a
// presence message moved the counts (a background tab shows those too).

import { $, parseJSON, withPin } from './page.js';
import { isEnded } from './transport.js';

const CLUSTER_POLL_MS = 5000;

const clusterPanel = $('#cluster-panel');
const clusterBody = clusterPanel && (clusterPanel.querySelector('.cluster-body') || clusterPanel);
let clusterTimer = 0;
let clusterBusy = false; // one poll at a time, one timer chain

// pollCluster refreshes the panel now, then every CLUSTER_POLL_MS; force
// asks even while the tab is hidden.
export async function pollCluster(force = false) {
  clearTimeout(clusterTimer);
  if (!clusterPanel || isEnded() || clusterBusy) return;
  clusterBusy = true;
  let stop = false;
  if (force === true || document.visibilityState === 'visible') {
    try {
      const res = await fetch(withPin('/api/cluster'), {
        credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' },
      });
      const data = res.ok ? parseJSON(await res.text()) : null;
      if (data && Array.isArray(data.members)) {
        renderCluster(data);
        clusterPanel.hidden = false;
      } else {
        clusterPanel.hidden = true;
        stop = res.status === 404; // no cluster API on this server: stop asking
      }
    } catch {
      clusterPanel.hidden = true;
    }
  }
  clusterBusy = false;
  if (!stop && !isEnded()) clusterTimer = setTimeout(pollCluster, CLUSTER_POLL_MS);
}

// startCluster polls the panel, and again when the tab comes back into
// view or out of the back/forward cache.
export function startCluster() {
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') pollCluster();
  });
  window.addEventListener('pageshow', (e) => { if (e.persisted) pollCluster(); });
  pollCluster();
}

function safeHTTPURL(s) {
  try {
    const u = new URL(s, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

// renderCluster shows what /api/cluster says, in the order it says it
// (the primary first, then by name: the same on every node). A node on
// its own, without replication, is one quiet line.
function renderCluster(data) {
  const single = data.members.length === 1 && !data.replication;
  clusterPanel.classList.toggle('cluster-one', single);
  clusterPanel.dataset.members = String(data.members.length);
  if (single) {
    const m = data.members[0];
    const line = document.createElement('p');
    line.className = 'cluster-single';
    line.textContent = `Single node: ${m.name}${m.region ? ` (${m.region})` : ''}, not part of a cluster.`;
    clusterPanel.dataset.replication = '';
    clusterBody.replaceChildren(line);
    return;
  }
  const table = document.createElement('table');
  table.className = 'cluster-members';
  const head = table.createTHead().insertRow();
  for (const [h, title] of [['Node'], ['Region'], ['Role'], ['State'],
    ['Conns', 'your connections to the node: one per browser'], ['Tabs', 'your tabs on the node'],
    ['TXID'], ['Holds answered writes']]) {
    const th = document.createElement('th');
    th.textContent = h;
    if (title) th.title = title;
    head.append(th);
  }
  const tbody = table.createTBody();
  for (const m of data.members) memberRow(tbody.insertRow(), m, data);
  // What this node says of its copy of the data: a replica that cannot
  // hear from the primary serves what it has, and the page says so.
  const rep = data.replication;
  clusterPanel.dataset.replication = rep && rep.state ? String(rep.state) : '';
  const parts = [table];
  if (data.acknowledged_by) {
    const ack = document.createElement('p');
    ack.className = 'cluster-ack';
    ack.dataset.acknowledgedBy = String(data.acknowledged_by);
    ack.textContent = `Writes answered up to TXID ${data.answered_txid ?? '?'}, acknowledged by ${data.acknowledged_by}.`;
    parts.push(ack);
  }
  if (rep && rep.state === 'stale') {
    const note = document.createElement('p');
    note.className = 'cluster-stale';
    note.textContent = `This node is behind: ${rep.reason || 'it has no word from the primary'}`;
    parts.push(note);
  }
  clusterBody.replaceChildren(...parts);
}

// holdsText says whether a replica holds every answered write; blank for
// the primary, and where the server does not say.
function holdsText(m) {
  if (typeof m.holds_answered !== 'boolean') return '';
  return m.holds_answered ? 'yes' : 'no (behind)';
}

// memberRow fills the table row of member m.
function memberRow(row, m, data) {
  const name = String(m.name ?? '');
  row.dataset.member = name;
  if (m.state) row.dataset.state = String(m.state);
  if (name === data.self) row.classList.add('self');

  const nameCell = row.insertCell();
  // A member's own URL where it has one (local cluster: one port per node);
  // otherwise a tab pinned to it with ?node= (on Fly: fly-replay).
  const href = m.http_url ? safeHTTPURL(m.http_url) : `/?node=${encodeURIComponent(name)}`;
  if (href) {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = name;
    a.title = m.http_url ? `open ${m.http_url}` : `open a tab pinned to ${name}`;
    nameCell.append(a);
  } else {
    nameCell.textContent = name;
  }
  if (name === data.self) nameCell.append(' (this node)');

  const role = m.role || (name === data.primary ? 'primary' : 'replica');
  for (const v of [m.region, role, m.state, m.connections, m.tabs, m.txid, holdsText(m)]) {
    row.insertCell().textContent = v === undefined || v === null ? '' : String(v);
  }
  if (typeof m.holds_answered === 'boolean') row.dataset.holds = String(m.holds_answered);
}
