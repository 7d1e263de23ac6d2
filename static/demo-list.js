// @ts-check
// The demo's list page: twenty documents with live badges, from one LeaseWatcher connection.
import { LeaseWatcher } from "/static/presence.js";
import { demoToken } from "/static/demo-page.js";

const DOCUMENTS = Array.from({ length: 20 }, (_, i) => `doc-${i + 1}`);
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const params = new URLSearchParams(location.search);
const suffix = Math.random().toString(36).slice(2, 6);
const user = params.get("user") || `lister-${suffix}`;

/** @type {Map<string, {badge: HTMLElement, viewers: HTMLElement}>} */
const rows = new Map();
for (const id of DOCUMENTS) {
  const tr = document.createElement("tr");
  tr.dataset.workspace = id;
  const link = document.createElement("a");
  link.href = `/demo?workspace=${encodeURIComponent(id)}`;
  link.textContent = id;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.state = "unknown";
  badge.textContent = "…";
  const viewers = document.createElement("span");
  viewers.className = "viewers muted";
  for (const [child, cls] of /** @type {const} */ ([[link, "name"], [badge, "editing"], [viewers, "open"]])) {
    const td = document.createElement("td");
    td.className = cls;
    td.append(child);
    tr.append(td);
  }
  $("docs").append(tr);
  rows.set(id, { badge, viewers });
}

/**
 * @param {string} id
 * @param {{holder: {user: {name: string, service?: boolean}} | null, viewers: number} | undefined} lease
 */
function show(id, lease) {
  const row = rows.get(id);
  if (!row) return;
  if (!lease) {
    row.badge.dataset.state = "unknown";
    row.badge.textContent = "…";
    row.viewers.textContent = "";
    return;
  }
  const h = lease.holder;
  row.badge.dataset.state = h ? "held" : "free";
  row.badge.textContent = h ? `${h.user.name} is ${h.user.service ? "updating it" : "editing"}` : "Free";
  row.viewers.textContent = lease.viewers === 0 ? "" : lease.viewers === 1 ? "1 person" : `${lease.viewers} people`;
}

const watcher = new LeaseWatcher({ token: () => demoToken(user, user), workspaces: DOCUMENTS });
watcher.addEventListener("lease", (e) => show(e.detail.workspace, e.detail));
watcher.addEventListener("leases", (e) => { for (const id of DOCUMENTS) show(id, e.detail.leases.get(id)); });
watcher.addEventListener("connection", (e) => {
  const status = $("status");
  status.dataset.status = e.detail.status;
  status.textContent = { connecting: "Connecting…", open: "Live", reconnecting: "Reconnecting…", closed: "Closed" }[
    e.detail.status];
});
watcher.connect().catch((err) => { $("status").textContent = `Stopped: ${err.message}`; });
