// The operations dashboard: one live WebSocket (/admin/api/live) feeds it "state" frames (active
// workspaces, servers, cumulative counters) about once a second and "audit" frames as entries
// are written; actions use the JSON API with the admin token as a Bearer header. Everything that
// came from a client (workspace ids, user names) is inserted as text, never as HTML.

const TOKEN_KEY = "presence.admin.token";
const HISTORY_MS = 5 * 60_000; // what the plots show
const LATENCY_WINDOW_MS = 10_000; // percentiles over this much recent data
const MAX_AUDIT_ROWS = 300;
// Changes made to a holder rather than by it: the server keeps them in a stream of their own,
// which no amount of acquire/release churn can push out.
const FORCED_KINDS = new Set(["taken_over", "revoked", "expired", "idle"]);

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
// A backend job holding a lease (user id "svc:<id>") is marked as one, in the table and the log.
const isService = (u) => Boolean(u && (u.service || String(u.id).startsWith("svc:")));
const who = (u) => {
  if (!u) return "";
  const base = u.name && u.name !== u.id ? `${u.name} (${u.id})` : u.id;
  return isService(u) ? `⚙ ${base} · service` : base;
};

// -- state -------------------------------------------------------------------------------------

const view = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  ws: null,
  backoff: 500,
  frame: null, // the last state frame
  receivedAt: 0, // performance.now() when it arrived
  samples: [], // {t, connections, events, buckets}
  bounds: [],
  oldestAudit: null,
  auditIds: new Set(),
  forcedOnly: false, // the audit panel lists forced changes only
  filter: "",
};

// -- live connection ---------------------------------------------------------------------------

function setStatus(state, text) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text;
}

function connect() {
  if (!view.token) return askToken();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/admin/api/live`;
  const ws = new WebSocket(url);
  view.ws = ws;
  setStatus("connecting", "connecting…");
  ws.onopen = () => ws.send(JSON.stringify({ token: view.token, q: "" }));
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "state") onState(msg);
    else if (msg.type === "audit") onAudit(msg.entries, true);
    else if (msg.type === "unavailable") setStatus("degraded", "Redis unavailable");
  };
  ws.onclose = (ev) => {
    if (view.ws !== ws) return;
    view.ws = null;
    if (ev.code === 4401) return askToken("That token was refused.");
    if (ev.code === 4404) return askToken("The admin API is disabled: set PRESENCE_ADMIN_TOKEN on the server.");
    setStatus("down", "disconnected, retrying…");
    const delay = Math.random() * view.backoff;
    view.backoff = Math.min(view.backoff * 2, 10_000);
    setTimeout(connect, delay);
  };
  ws.onerror = () => {}; // a close event follows
}

function askToken(error) {
  $("main").hidden = true;
  $("logout").hidden = true;
  setStatus("down", "not signed in");
  const err = $("login-error");
  err.hidden = !error;
  err.textContent = error || "";
  if (!$("login").open) $("login").showModal();
}

$("login-form").addEventListener("submit", () => {
  view.token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, view.token);
  view.backoff = 500;
  connect();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  view.token = "";
  if (view.ws) view.ws.close();
  askToken();
});

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${view.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) askToken("That token was refused.");
  return { ok: res.ok, status: res.status, data };
}

// -- frames ------------------------------------------------------------------------------------

function onState(frame) {
  view.frame = frame;
  view.receivedAt = performance.now();
  view.backoff = 500;
  $("main").hidden = false;
  $("logout").hidden = false;
  setStatus("live", "live");
  const t = frame.totals;
  view.bounds = t.latency_bounds || view.bounds;
  view.samples.push({ t: frame.now, connections: t.connections, events: t.events || {}, buckets: t.acquire_buckets || [] });
  while (view.samples.length && view.samples[0].t < frame.now - HISTORY_MS - LATENCY_WINDOW_MS) view.samples.shift();
  /** @param {number} n @param {string} one @param {string} many */
  const count = (n, one, many) => el("span", {}, el("b", {}, n), n === 1 ? ` ${one}` : ` ${many}`);
  $("totals").replaceChildren(
    count(t.connections, "connection", "connections"),
    count(t.leases, "lease", "leases"),
    count(frame.total, "workspace", "workspaces"),
    count(frame.servers.length, "server", "servers"),
  );
  renderWorkspaces();
  renderServers();
  renderCharts();
}

function matches(w, q) {
  if (!q) return true;
  const hay = [w.workspace, w.holder && who(w.holder.user), ...w.viewers.map((v) => who(v.user))];
  return hay.some((s) => s && s.toLowerCase().includes(q));
}

function renderWorkspaces() {
  const frame = view.frame;
  if (!frame) return;
  const q = view.filter.toLowerCase();
  const rows = frame.workspaces.filter((w) => matches(w, q));
  $("ws-count").textContent = frame.matching > frame.workspaces.length
    ? `${rows.length} shown of ${frame.matching}` : `${rows.length}`;
  $("ws-empty").hidden = rows.length > 0;
  const ttlMax = Math.max(1, ...frame.servers.map((s) => s.lease_ttl_ms || 0));
  $("workspaces").tBodies[0].replaceChildren(...rows.map((w) => {
    const h = w.holder;
    return el("tr", { dataset: { workspace: w.workspace }, class: h ? "held" : "" },
      el("td", { class: "mono" }, el("a", { href: "#", onclick: (e) => { e.preventDefault(); showDetail(w.workspace); } }, w.workspace)),
      el("td", {}, h ? who(h.user) : el("span", { class: "muted" }, "free"), lockCount(w)),
      el("td", { class: "num mono" }, h ? h.fence : ""),
      el("td", { class: "held-for", dataset: h ? { since: h.held_ms } : {} }, h ? duration(h.held_ms) : ""),
      el("td", {}, h && w.ttl_ms !== null
        ? el("div", { class: "countdown", dataset: { ttl: w.ttl_ms, max: ttlMax } },
            el("span", { class: "bar" }), el("span", { class: "left" }, duration(w.ttl_ms)))
        : ""),
      el("td", {}, w.viewers.map((v) => el("span", { class: v.active ? "chip" : "chip idle", title: `${v.tabs} tab(s)` }, v.user.name))),
      el("td", { class: "num" }, w.tabs),
      el("td", { class: "mono small" }, w.servers.join(" ")),
      el("td", {}, h ? el("button", { class: "danger small release", type: "button", onclick: () => confirmRelease(w.workspace, "", h) }, "Force release") : ""),
    );
  }));
  tickCountdowns();
}

// Interpolates between frames so countdowns move smoothly.
function tickCountdowns() {
  const elapsed = performance.now() - view.receivedAt;
  for (const c of document.querySelectorAll(".countdown")) {
    const left = Math.max(0, Number(c.dataset.ttl) - elapsed);
    c.querySelector(".left").textContent = duration(left);
    c.querySelector(".bar").style.width = `${Math.min(100, (100 * left) / Number(c.dataset.max))}%`;
    c.classList.toggle("low", left < 0.3 * Number(c.dataset.max));
  }
  for (const c of document.querySelectorAll(".held-for[data-since]")) {
    c.textContent = duration(Number(c.dataset.since) + elapsed);
  }
}
setInterval(tickCountdowns, 100);

function renderServers() {
  const servers = view.frame.servers;
  $("srv-count").textContent = servers.length;
  $("servers").tBodies[0].replaceChildren(...servers.map((s) => el("tr", {},
    el("td", { class: "mono" }, s.id),
    el("td", { class: "mono small", title: `pid ${s.pid} · version ${s.version} · ${s.scope} scope` }, `${s.host}:${s.port}`),
    el("td", { class: "num" }, s.connections),
    el("td", { class: "num" }, s.leases),
    el("td", { class: "num" }, s.workspaces),
    el("td", {}, duration(view.frame.now - s.started_ms)),
    el("td", {}, s.stopping ? el("span", { class: "bad" }, "stopping")
      : s.ready ? el("span", { class: "good" }, "ready") : el("span", { class: "bad" }, "not ready"),
      s.audit_dropped ? el("span", { class: "bad", title: "audit entries dropped" }, ` · ${s.audit_dropped} dropped`) : ""),
  )));
}

function onAudit(entries, live) {
  const list = $("audit");
  for (const e of entries) {
    if (view.auditIds.has(e.id) || (view.forcedOnly && !FORCED_KINDS.has(e.kind))) continue;
    view.auditIds.add(e.id);
    const row = auditRow(e);
    if (live) list.prepend(row); else list.append(row);
    if (!view.oldestAudit || e.id < view.oldestAudit) view.oldestAudit = e.id;
  }
  while (list.children.length > MAX_AUDIT_ROWS && live) {
    view.auditIds.delete(list.lastElementChild.dataset.id);
    list.lastElementChild.remove();
    view.oldestAudit = list.lastElementChild ? list.lastElementChild.dataset.id : null;
  }
}

function auditRow(e) {
  const user = e.user ? who({ id: e.user, name: e.name }) : "";
  const details = [];
  if (e.fence !== undefined) details.push(`fence ${e.fence}`);
  if (e.from_user) details.push(`from ${who({ id: e.from_user, name: e.from_name })}`);
  if (e.held_ms !== undefined) details.push(`held ${duration(e.held_ms)}`);
  if (e.by_name) details.push(`by ${e.by_name}`);
  if (e.note) details.push(`“${e.note}”`);
  return el("li", { dataset: { id: e.id, kind: e.kind } },
    el("time", {}, clock(e.at || Number(e.id.split("-")[0]))),
    el("span", { class: `kind k-${e.kind}` }, e.kind.replace("_", " ")),
    el("span", { class: "mono" }, e.workspace),
    el("span", {}, user),
    el("span", { class: "muted" }, details.join(" · ")),
    el("span", { class: "muted mono small" }, e.server),
  );
}

async function loadOlder() {
  const q = new URLSearchParams({ limit: "100" });
  if (view.oldestAudit) q.set("before", view.oldestAudit);
  if (view.forcedOnly) q.set("forced", "1");
  const r = await api("GET", `/admin/api/audit?${q}`);
  if (r.ok) {
    onAudit(r.data.entries, false);
    $("older").disabled = !r.data.next;
  }
}

$("older").addEventListener("click", loadOlder);

$("forced-only").addEventListener("change", (e) => {
  view.forcedOnly = e.target.checked;
  $("audit").replaceChildren();
  view.auditIds.clear();
  view.oldestAudit = null;
  loadOlder();
});

// -- actions -----------------------------------------------------------------------------------

function toast(text, bad) {
  const t = $("toast");
  t.textContent = text;
  t.classList.toggle("bad", Boolean(bad));
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

/** " · 2 named locks": how many named locks of the workspace are held (they are listed in its detail). */
function lockCount(w) {
  const n = Object.keys(w.locks || {}).length;
  return n ? el("span", { class: "muted small locks" }, ` · ${n} named lock${n === 1 ? "" : "s"}`) : "";
}

/** What a lease is called in messages: the workspace's own, or one of its named locks. */
function leaseName(workspace, lock) {
  return lock ? `lock “${lock}” of “${workspace}”` : `“${workspace}”`;
}

let pending = null;
function confirmRelease(workspace, lock, holder) {
  pending = { workspace, lock };
  $("confirm-text").textContent =
    `Take the lease of ${leaseName(workspace, lock)} away from ${who(holder.user)} (fence ${holder.fence})? ` +
    "Their tabs are told at once that the lease was revoked.";
  $("confirm-reason").value = "";
  $("confirm").showModal();
}

$("confirm").addEventListener("close", async () => {
  const target = pending;
  pending = null;
  if ($("confirm").returnValue !== "ok" || !target) return;
  const { workspace, lock } = target;
  const reason = $("confirm-reason").value.trim();
  const path = `/admin/api/workspaces/${encodeURIComponent(workspace)}` +
    (lock ? `/locks/${encodeURIComponent(lock)}/release` : "/release");
  const r = await api("POST", path, { reason });
  if (r.ok) toast(`Released ${leaseName(workspace, lock)} (fence ${r.data.fence}).`);
  else toast(`Could not release ${leaseName(workspace, lock)}: ${r.data.error || r.status}`, true);
  if (r.ok && lock && $("detail").open) showDetail(workspace);
});

async function showDetail(workspace) {
  const r = await api("GET", `/admin/api/workspaces/${encodeURIComponent(workspace)}`);
  if (!r.ok) return toast(`Could not read “${workspace}”: ${r.data.error || r.status}`, true);
  const w = r.data.workspace;
  $("detail-title").textContent = w.holder
    ? `${workspace} · held by ${who(w.holder.user)} (fence ${w.holder.fence})` : `${workspace} · free`;
  const locks = Object.entries(w.locks || {});
  $("detail-locks").hidden = locks.length === 0;
  $("detail-locks").tBodies[0].replaceChildren(...locks.map(([lock, l]) => el("tr", { dataset: { lock } },
    el("td", { class: "mono" }, lock),
    el("td", {}, who(l.holder.user)),
    el("td", { class: "num mono" }, l.holder.fence),
    el("td", {}, duration(l.holder.held_ms)),
    el("td", {}, l.ttl_ms === null ? "" : duration(l.ttl_ms)),
    el("td", {}, el("button", { class: "danger small release", type: "button",
      onclick: () => confirmRelease(workspace, lock, l.holder) }, "Force release")),
  )));
  $("detail-tabs").tBodies[0].replaceChildren(...w.tab_list.map((t) => el("tr", {},
    el("td", { class: "mono small" }, t.conn),
    el("td", {}, who(t.user)),
    el("td", { class: "mono small" }, t.tab),
    el("td", {}, t.active ? "yes" : "idle"),
    el("td", { class: "mono small" }, t.server),
    el("td", {}, el("button", { class: "small ghost", type: "button", onclick: async (ev) => {
      ev.target.disabled = true;
      const c = await api("POST", `/admin/api/workspaces/${encodeURIComponent(workspace)}/tabs/${encodeURIComponent(t.conn)}/close`, {});
      toast(c.ok ? `Closing tab ${t.conn}.` : `Could not close ${t.conn}: ${c.data.error || c.status}`, !c.ok);
    } }, "Close tab")),
  )));
  if (!$("detail").open) $("detail").showModal();
}

$("filter").addEventListener("input", (e) => {
  view.filter = e.target.value.trim();
  renderWorkspaces();
});

// -- charts ------------------------------------------------------------------------------------

// Counters are cumulative sums over the live servers: a server that restarts or vanishes makes
// a sum drop, which is not negative activity, so differences are clamped at zero.
function rate(a, b, kind) {
  const dt = (b.t - a.t) / 1000;
  if (dt <= 0) return 0;
  return Math.max(0, ((b.events[kind] || 0) - (a.events[kind] || 0)) / dt);
}

function percentile(older, newer, q) {
  const n = newer.buckets.length;
  const d = newer.buckets.map((c, i) => Math.max(0, c - (older.buckets[i] || 0)));
  const total = d.reduce((s, c) => s + c, 0);
  if (!total || !view.bounds.length) return null;
  let seen = 0;
  for (let i = 0; i < n; i++) {
    if (seen + d[i] >= q * total) {
      const lo = i === 0 ? 0 : view.bounds[i - 1];
      const hi = i < view.bounds.length ? view.bounds[i] : view.bounds[view.bounds.length - 1] * 2;
      return 1000 * (lo + ((hi - lo) * (q * total - seen)) / d[i]); // linear within the bucket, ms
    }
    seen += d[i];
  }
  return null;
}

function series() {
  const s = view.samples;
  const out = { connections: [], acquires: [], takeovers: [], expiries: [], p50: [], p99: [] };
  for (let i = 1; i < s.length; i++) {
    const a = s[i - 1], b = s[i];
    out.connections.push([b.t, b.connections]);
    out.acquires.push([b.t, rate(a, b, "acquired") + rate(a, b, "taken_over")]);
    out.takeovers.push([b.t, rate(a, b, "taken_over")]);
    out.expiries.push([b.t, rate(a, b, "expired")]);
    let j = i;
    while (j > 0 && s[j - 1].t >= b.t - LATENCY_WINDOW_MS) j--;
    out.p50.push([b.t, percentile(s[j], b, 0.5)]);
    out.p99.push([b.t, percentile(s[j], b, 0.99)]);
  }
  return out;
}

const COLORS = ["#2563eb", "#dc2626", "#059669"];

// The window grows from 30 s to HISTORY_MS as samples accumulate, so a fresh page shows a line.
function plot(canvas, lines, now, first) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const span = Math.min(HISTORY_MS, Math.max(30_000, now - first));
  const t0 = now - span;
  let max = 0;
  for (const l of lines) for (const [t, v] of l.points) if (t >= t0 && v !== null) max = Math.max(max, v);
  max = max > 0 ? niceCeil(max) : 1;
  const pad = { l: 34, r: 6, t: 6, b: 16 };
  const x = (t) => pad.l + ((t - t0) / span) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  g.strokeStyle = "#e5e7eb"; g.fillStyle = "#6b7280"; g.lineWidth = 1; g.font = "10px system-ui, sans-serif";
  for (const f of [0, 0.5, 1]) {
    const yy = Math.round(y(max * f)) + 0.5;
    g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(w - pad.r, yy); g.stroke();
    g.textAlign = "right"; g.fillText(fmt(max * f), pad.l - 4, yy + 3);
  }
  g.textAlign = "left"; g.fillText(span >= 60_000 ? `−${Math.round(span / 60_000)} min` : `−${Math.round(span / 1000)} s`, pad.l, h - 3);
  g.textAlign = "right"; g.fillText("now", w - pad.r, h - 3);
  lines.forEach((l, i) => {
    g.strokeStyle = g.fillStyle = COLORS[i]; g.lineWidth = 1.5; g.beginPath();
    let open = false, last = null;
    for (const [t, v] of l.points) {
      if (t < t0 || v === null) { open = false; continue; }
      if (open) g.lineTo(x(t), y(v)); else g.moveTo(x(t), y(v));
      open = true; last = [t, v];
    }
    g.stroke();
    if (last) { g.beginPath(); g.arc(x(last[0]), y(last[1]), 2.5, 0, 2 * Math.PI); g.fill(); }
    if (lines.length > 1) { g.textAlign = "left"; g.fillText(l.label, pad.l + 4 + i * 64, pad.t + 9); }
  });
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((c) => c >= v);
}
const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : Number(v.toFixed(2)).toString());

function renderCharts() {
  const s = series();
  const now = view.frame.now;
  const first = view.samples.length ? view.samples[0].t : now;
  plot($("chart-connections"), [{ label: "connections", points: s.connections }], now, first);
  plot($("chart-acquires"), [{ label: "acquires", points: s.acquires }], now, first);
  plot($("chart-events"), [{ label: "takeovers", points: s.takeovers }, { label: "expiries", points: s.expiries }], now, first);
  plot($("chart-latency"), [{ label: "p50", points: s.p50 }, { label: "p99", points: s.p99 }], now, first);
}

connect();
