// @ts-check
// Demo editor for the presence server (GET /demo, dev mode). One client per (user, document).
// The "document" itself is kept in localStorage, so two windows of one browser share it; each save
// carries the lease fence and is refused when a newer fence has already saved (what a real backend does).
import { PresenceClient } from "/static/presence.js";

const WORKSPACE_RE = /^[A-Za-z0-9._~:@\/-]{1,200}$/;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  status: $("status"), form: /** @type {HTMLFormElement} */ ($("identity")),
  name: /** @type {HTMLInputElement} */ ($("name")), user: /** @type {HTMLInputElement} */ ($("user")),
  workspace: /** @type {HTMLInputElement} */ ($("workspace")),
  banner: $("banner"), notice: $("notice"), noticeText: $("notice-text"), inUse: $("inuse"),
  bannerText: $("banner-text"), bannerActions: $("banner-actions"),
  takeover: /** @type {HTMLButtonElement} */ ($("takeover")), wait: /** @type {HTMLButtonElement} */ ($("wait")),
  readonly: /** @type {HTMLButtonElement} */ ($("readonly")), dismiss: /** @type {HTMLButtonElement} */ ($("dismiss")),
  holder: $("holder"), edit: /** @type {HTMLButtonElement} */ ($("edit")),
  done: /** @type {HTMLButtonElement} */ ($("done")), countdown: $("countdown"),
  editor: /** @type {HTMLTextAreaElement} */ ($("editor")), message: $("message"), viewers: $("viewers"),
};

/** @type {PresenceClient|null} */
let client = null;
/** UI state that is not in the client. */
const ui = {
  readOnly: false,          // the user chose "Open read-only" for the current holder
  readOnlyFor: "",          // ... for this holder (user id + fence); a new holder shows the banner again
  notice: "",               // "Bob took over at 10:42, ..." until dismissed or editing again
  queued: 0,                // position in the wait queue, 0 when not waiting
};

const time = (/** @type {number} */ ms = Date.now()) =>
  new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const docKey = () => `presence.demo.doc:${client?.workspace}`;
const draftKey = () => `presence.demo.draft:${client?.workspace}:${client?.user?.id}`;

/** @param {string} text */
function say(text) {
  el.message.textContent = text;
}

// ---- document storage (stands in for the app backend) ----------------------------------------------

/** @returns {{text: string, fence: number}} */
function loadDoc() {
  try {
    return JSON.parse(localStorage.getItem(docKey()) || "") || { text: "", fence: 0 };
  } catch {
    return { text: "", fence: 0 };
  }
}

function saveDoc() {
  if (!client?.canEdit || client.fence == null) return;
  const stored = loadDoc();
  if (stored.fence > client.fence) {
    say(`Save refused: someone with a newer lease (fence ${stored.fence}) has saved since.`);
    return;
  }
  localStorage.setItem(docKey(), JSON.stringify({ text: el.editor.value, fence: client.fence }));
  say(`Saved at ${time()} with fence ${client.fence}.`);
}

let saveTimer = 0;
el.editor.addEventListener("input", () => {
  clearTimeout(saveTimer);
  saveTimer = window.setTimeout(saveDoc, 300);
});
window.addEventListener("storage", (e) => {
  if (e.key === docKey() && !client?.canEdit) el.editor.value = loadDoc().text;
});

// ---- rendering ------------------------------------------------------------------------------------

function render() {
  const c = client;
  const me = c?.user;
  const holder = c?.state?.holder ?? null;
  const other = holder && !c?.holding ? holder : null;
  const otherName = other ? (other.user.id === me?.id ? "You (in another tab)" : other.user.name) : "";
  const holderKey = other ? `${other.user.id}:${other.fence ?? ""}` : "";
  if (ui.readOnlyFor !== holderKey) ui.readOnly = false;

  // banner: a notice about us losing the lease, and/or "X is editing" with the three choices
  let inUse = "";
  const since = other ? ` since ${time(other.since_ms)}` : "";
  if (other && ui.readOnly) inUse = `Read-only: ${otherName} ${other.user.id === me?.id ? "are" : "is"} editing${since}.`;
  else if (other) {
    inUse = `${otherName} ${other.user.id === me?.id ? "are" : "is"} editing${since}.`;
    if (ui.queued) inUse += ` You are number ${ui.queued} in line; the document opens for you when it is free.`;
  }
  el.banner.hidden = !ui.notice && !inUse;
  el.banner.classList.toggle("note", !!other && ui.readOnly && !ui.notice);
  el.notice.hidden = !ui.notice;
  el.noticeText.textContent = ui.notice;
  el.inUse.hidden = !inUse;
  el.bannerText.textContent = inUse;
  el.bannerActions.hidden = !other || ui.readOnly;
  el.wait.disabled = ui.queued > 0;
  el.wait.setAttribute("aria-pressed", String(ui.queued > 0));

  // who holds it (someone else: the banner says so)
  el.holder.hidden = !!other;
  if (c?.holding && !c.canEdit) el.holder.textContent = "Editing paused: the server has not confirmed your lease in time.";
  else if (c?.holding) el.holder.textContent = "You are editing.";
  else if (!other) el.holder.textContent = "Nobody is editing.";

  // controls
  const connected = !!c?.connected;
  el.edit.disabled = !connected || !!c?.holding || !!other; // someone else: the banner offers the choices
  el.done.disabled = !connected || !c?.holding;
  el.takeover.disabled = !connected;
  el.editor.disabled = !c?.canEdit;

  // viewers (dimmed while disconnected: the list may be out of date)
  el.viewers.classList.toggle("stale", !connected);
  el.viewers.replaceChildren(...(c?.state?.viewers ?? []).map((v) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = v.user.id === me?.id ? `${v.user.name} (you)` : v.user.name;
    const tag = document.createElement("span");
    const editing = holder?.user.id === v.user.id;
    tag.className = editing ? "tag editing" : "tag";
    tag.textContent = [editing ? "editing" : v.active ? "viewing" : "idle", v.tabs > 1 ? `${v.tabs} tabs` : ""]
      .filter(Boolean).join(", ");
    li.append(name, tag);
    return li;
  }));
  renderCountdown();
}

function renderCountdown() {
  const left = client?.leaseRemainingMs ?? 0;
  el.countdown.textContent = client?.holding
    ? (left > 0 ? `Lease ${(left / 1000).toFixed(1)} s (renewed while you are here)` : "Lease expired locally")
    : "";
}
setInterval(renderCountdown, 200);

/** @param {string} status @param {string} text */
function setStatus(status, text) {
  el.status.dataset.status = status;
  el.status.textContent = text;
}

// ---- client wiring --------------------------------------------------------------------------------

/** @param {{user: string, name: string, workspace: string}} who */
async function join(who) {
  client?.close();
  ui.readOnly = false; ui.readOnlyFor = ""; ui.notice = ""; ui.queued = 0;
  say("");
  const token = async () => {
    const q = new URLSearchParams({ user: who.user, name: who.name });
    const res = await fetch(`/demo/token?${q}`, { cache: "no-store" });
    if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
    return (await res.json()).token;
  };
  const c = new PresenceClient({ workspace: who.workspace, token });
  client = c;
  el.editor.value = loadDoc().text;
  /** @param {string} type @param {(detail: any) => void} fn */
  const on = (type, fn) => c.addEventListener(type, (e) => {
    if (client === c) fn(/** @type {CustomEvent} */ (e).detail);
  });

  on("connection", (d) => {
    const why = d.code ? ` (${d.code}${d.reason ? ` ${d.reason}` : ""})` : d.reason ? ` (${d.reason})` : "";
    const text = {
      connecting: "Connecting…",
      open: `Connected as ${c.user?.name}`,
      reconnecting: `Reconnecting in ${((d.delay ?? 0) / 1000).toFixed(1)} s${why}`,
      closed: `Disconnected${why}`,
    }[/** @type {"connecting"|"open"|"reconnecting"|"closed"} */ (d.status)];
    setStatus(d.status, text);
    render();
  });
  on("state", render);
  on("canedit", (d) => {
    render();
    if (d.canEdit) el.editor.focus();
  });
  on("acquired", () => {
    ui.queued = 0;
    ui.notice = "";
    const stored = loadDoc();
    if (document.activeElement !== el.editor) el.editor.value = stored.text;
    render();
  });
  on("queued", (d) => {
    ui.queued = d.position;
    render();
  });
  on("released", (d) => {
    ui.queued = 0;
    if (d.reason !== "released") {
      say("");
      localStorage.setItem(draftKey(), el.editor.value);
      const at = time();
      ui.notice = {
        taken_over: `${d.by?.name ?? "Someone"} took over at ${at}, your last changes were kept locally.`,
        expired: `Your edit lease expired at ${at}, your last changes were kept locally.`,
        lost: `The connection to the server was lost at ${at}, your last changes were kept locally.`,
        revoked: `An operator revoked your edit lease at ${at}, your last changes were kept locally.`,
        idle: `Your edit lease was released at ${at} because you were away, your last changes were kept locally.`,
      }[/** @type {string} */ (d.reason)] ?? `You stopped editing at ${at} (${d.reason}); your changes were kept locally.`;
    }
    render();
  });
  on("error", (d) => say(d.code === "token_failed"
    ? `Could not get a token from the server (${d.message}); retrying by itself.`
    : `Problem: ${d.message || d.code}`));

  render();
  try {
    await c.connect();
  } catch (err) {
    if (client === c) setStatus("closed", `Cannot connect: ${/** @type {Error} */ (err).message}`);
  }
}

/** Runs a lease action, reporting its outcome. @param {() => Promise<any>} action */
async function act(action) {
  try {
    const r = await action();
    if (r && r.acquired === false && r.holder) say(`${r.holder.user.name} is editing right now.`);
    if (r && r.queued) ui.queued = r.position;
  } catch (err) {
    say(`Could not do that: ${/** @type {Error} */ (err).message}`);
  }
  render();
}

el.edit.addEventListener("click", () => act(() => /** @type {PresenceClient} */ (client).acquire()));
el.done.addEventListener("click", () => {
  saveDoc();
  act(() => /** @type {PresenceClient} */ (client).release());
});
el.takeover.addEventListener("click", () => act(() => /** @type {PresenceClient} */ (client).takeover()));
el.wait.addEventListener("click", () => act(() => /** @type {PresenceClient} */ (client).acquire({ wait: true })));
el.readonly.addEventListener("click", () => {
  const holder = client?.state?.holder;
  ui.readOnly = true;
  ui.readOnlyFor = holder ? `${holder.user.id}:${holder.fence ?? ""}` : "";
  render();
});
document.addEventListener("visibilitychange", () => {
  client?.status({ active: document.visibilityState === "visible" });
});
el.dismiss.addEventListener("click", () => {
  ui.notice = "";
  render();
});

el.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const who = { user: el.user.value.trim(), name: el.name.value.trim(), workspace: el.workspace.value.trim() };
  if (!WORKSPACE_RE.test(who.workspace)) {
    say("Document ids use letters, digits and . _ ~ : @ / - (at most 200).");
    return;
  }
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(who)) url.searchParams.set(k, v);
  history.replaceState(null, "", url);
  join(who);
});

// Start at once: query parameters, or a random demo user.
const params = new URLSearchParams(location.search);
const suffix = Math.random().toString(36).slice(2, 6);
el.user.value = params.get("user") || `guest-${suffix}`;
el.name.value = params.get("name") || params.get("user") || `Guest ${suffix.toUpperCase()}`;
el.workspace.value = params.get("workspace") || "doc-1";
el.form.requestSubmit();
