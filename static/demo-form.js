// @ts-check
// Demo form for the presence server (GET /demo/form, dev mode): four fields, each a named lock of its own.
// Focusing a field takes its lock and tells everyone where this tab is (its presence meta, {field});
// leaving it (or Enter) saves the value and releases the lock. A field someone else holds is read-only,
// says who edits it, and offers Wait for it and Take over. The values live on the server (GET/PUT
// /demo/docs/{form}?lock={field}, standing in for an app backend): a save carries the fence of its
// field's lock, and the server refuses a fence that no longer holds it.
import { PresenceClient } from "/static/presence.js";
import {
  colourOf, connectShowing, demoToken, errorText, showConnection, startFromQuery, time,
} from "/static/demo-page.js";

/** @typedef {{id: string, label: string, type?: string, multiline?: boolean}} FieldSpec */
/** @type {FieldSpec[]} */
const FIELDS = [
  { id: "title", label: "Title" },
  { id: "owner", label: "Owner" },
  { id: "due", label: "Due date", type: "date" },
  { id: "notes", label: "Notes", multiline: true },
];
const SAVE_DELAY_MS = 400; // autosave while typing
const FOLLOW_MS = 2000; // a field someone else edits is fetched this often (a real app would push the saves)
/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  status: $("status"), form: /** @type {HTMLFormElement} */ ($("identity")),
  name: /** @type {HTMLInputElement} */ ($("name")), user: /** @type {HTMLInputElement} */ ($("user")),
  workspace: /** @type {HTMLInputElement} */ ($("workspace")), fields: $("fields"), message: $("message"),
  viewers: $("viewers"), template: /** @type {HTMLTemplateElement} */ ($("field-template")),
};

/**
 * One field: its elements, and what this tab knows of it besides the client (which knows the locks).
 * @typedef {object} Field
 * @property {FieldSpec} spec
 * @property {HTMLElement} row
 * @property {HTMLInputElement|HTMLTextAreaElement} input
 * @property {HTMLElement} here  the others whose tab is in this field
 * @property {HTMLElement} status
 * @property {HTMLElement} actions
 * @property {HTMLButtonElement} wait
 * @property {HTMLButtonElement} takeover
 * @property {HTMLElement} notice
 * @property {string} noticeText  "Bob took over Title at 10:42", until the next focus or action
 * @property {"warn"|"good"} noticeTone
 * @property {boolean} dirty  typed and not saved yet
 * @property {number|null} fence  the fence of the lock the unsaved text was typed under
 * @property {number} saveTimer
 * @property {number} saves  saves on their way: a fetched value must not overwrite what they carry
 * @property {Promise<unknown>} saving
 * @property {number} queued  our place in this field's line (0: not waiting)
 * @property {boolean} claiming  an acquire sent on focus is on its way
 * @property {boolean} asked  we waited for it or took it over: when it comes, it gets the focus
 * @property {string} holderKey  its holder (user and fence) as last seen: a new one shows its last save
 */

/** @type {Map<string, Field>} */
const fields = new Map();
for (const spec of FIELDS) {
  const fragment = /** @type {DocumentFragment} */ (el.template.content.cloneNode(true));
  const row = /** @type {HTMLElement} */ (fragment.firstElementChild);
  const q = (/** @type {string} */ selector) => /** @type {HTMLElement} */ (row.querySelector(selector));
  const input = spec.multiline ? document.createElement("textarea") : document.createElement("input");
  if (input instanceof HTMLInputElement) input.type = spec.type ?? "text";
  else input.rows = 4;
  Object.assign(input, { id: `field-${spec.id}`, name: spec.id, readOnly: true, autocomplete: "off" });
  const label = /** @type {HTMLLabelElement} */ (q(".field-label"));
  label.htmlFor = input.id;
  label.textContent = spec.label;
  q(".field-head").after(input);
  const status = q(".field-status");
  status.id = `status-${spec.id}`;
  input.setAttribute("aria-describedby", status.id);
  q(".here").setAttribute("aria-label", `Also in ${spec.label}`);
  row.dataset.field = spec.id;
  el.fields.append(row);
  /** @type {Field} */
  const f = {
    spec, row, input, status, here: q(".here"), actions: q(".field-actions"),
    wait: /** @type {HTMLButtonElement} */ (q(".wait")), takeover: /** @type {HTMLButtonElement} */ (q(".takeover")),
    notice: q(".field-notice"), noticeText: "", noticeTone: "warn", dirty: false, fence: null, saveTimer: 0, saves: 0,
    saving: Promise.resolve(), queued: 0, claiming: false, asked: false, holderKey: "",
  };
  fields.set(spec.id, f);
  wire(f);
}

/** @type {PresenceClient|null} */
let client = null;
const ui = { touched: false }; // a field had the focus since joining (after a reload, the field we still hold gets it back)

const focused = (/** @type {Field} */ f) => document.activeElement === f.input;
const holds = (/** @type {Field} */ f) => client?.lockFence(f.spec.id) != null; // this tab holds its lock

/** @param {string} text */
function say(text) {
  el.message.textContent = text;
}

/** Sets the field's notice (shown by the next render). @param {Field} f @param {string} text @param {"warn"|"good"} [tone] */
function notice(f, text, tone = "warn") {
  Object.assign(f, { noticeText: text, noticeTone: tone });
}

/** A failed action on a field, in words. @param {any} err @param {Field} f */
function problem(err, f) {
  const holder = client?.locks.get(f.spec.id)?.user.name ?? "the editor";
  switch (err?.code) {
    case "takeover_cooldown": {
      const ms = Number(/(\d+) ms/.exec(err.message)?.[1] ?? 0);
      return `${f.spec.label} changed hands moments ago: try again in ${Math.max(1, Math.ceil(ms / 1000))} s, or wait for it.`;
    }
    case "takeover_forbidden": return `You may not take over. Wait for ${holder} to finish.`;
    case "too_many_locks": return "Too many fields are being edited at once; try again in a moment.";
    case "forbidden": return "Your token is read-only: you can watch, not edit.";
    case "disconnected": return "Not connected right now; try again once the connection is back.";
    default: return `Could not do that: ${err?.message || err}`;
  }
}

// ---- the values, on the server (it stands in for the app backend) ------------------------------------

/** The token saves carry (the server checks who saves): one per user, kept for 30 minutes. */
let saveToken = { user: "", at: 0, value: /** @type {Promise<string>|null} */ (null) };
/** @param {{id: string, name: string}} who */
function tokenForSaves(who) {
  if (!saveToken.value || saveToken.user !== who.id || Date.now() - saveToken.at > 30 * 60 * 1000) {
    const value = demoToken(who.id, who.name).catch((err) => { saveToken.value = null; throw err; });
    saveToken = { user: who.id, at: Date.now(), value };
  }
  return saveToken.value;
}

const fieldUrl = (/** @type {PresenceClient} */ c, /** @type {Field} */ f) =>
  `/demo/docs/${encodeURIComponent(c.workspace).replaceAll("%2F", "/")}?lock=${f.spec.id}`;

/** Shows the field's saved value, unless this tab is typing it (its own text wins while it holds the lock). @param {Field} f */
async function fetchField(f) {
  const c = client;
  if (!c) return;
  let doc;
  try {
    const res = await fetch(fieldUrl(c, f), { cache: "no-store" });
    if (!res.ok) return;
    doc = await res.json();
  } catch {
    return; // the server is away: the connection status says so
  }
  if (client !== c || (holds(f) && (f.dirty || f.saves > 0))) return;
  if (f.input.value !== doc.text) f.input.value = doc.text;
}

/** Saves `text` under `fence`; a refusal (the lock moved on) is told in the field's notice. @param {Field} f @param {string} text @param {number} fence */
async function putField(f, text, fence) {
  const c = client;
  const me = c?.user;
  if (!c || !me) return;
  let res = null;
  let answer;
  try {
    res = await fetch(fieldUrl(c, f), {
      method: "PUT", cache: "no-store", keepalive: true, // keepalive: a save as the page unloads still arrives
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${await tokenForSaves(me)}` },
      body: JSON.stringify({ text, fence }),
    });
    answer = await res.json().catch(() => ({}));
  } catch (err) {
    answer = { message: `the server did not answer (${/** @type {Error} */ (err).message})` };
  }
  if (client !== c || res?.ok) return;
  notice(f, `Not saved: ${answer.message ?? answer.error ?? `the server answered ${res?.status}`}. Your text: “${text}”`);
  render();
  fetchField(f);
}

/** Saves what was typed in `f`, now. @param {Field} f */
function flushSave(f) {
  clearTimeout(f.saveTimer);
  if (!f.dirty || f.fence == null) return f.saving;
  const text = f.input.value;
  const fence = f.fence;
  f.dirty = false;
  f.saves++;
  f.saving = f.saving.then(() => putField(f, text, fence)).finally(() => { f.saves--; });
  return f.saving;
}

// ---- the locks --------------------------------------------------------------------------------------

/** The focus came to `f`: its lock is ours when free (a field someone else holds stays read-only). @param {Field} f */
async function claim(f) {
  const c = client;
  const id = f.spec.id;
  if (!c?.connected || c.readOnly || f.claiming || f.queued || holds(f)) return;
  const holder = c.locks.get(id);
  if (holder && holder.user.id !== c.user?.id) return;
  f.claiming = true;
  try {
    await c.acquire({ lock: id });
    f.noticeText = "";
  } catch (err) {
    notice(f, problem(err, f));
  } finally {
    f.claiming = false;
  }
  if (client !== c) return;
  if (holds(f) && !focused(f)) leave(f); // the focus moved on before the lock came
  render();
}

/** The focus left `f`: save, then give its lock up (unless the focus came back meanwhile). @param {Field} f */
async function leave(f) {
  const c = client;
  if (!c || !holds(f)) return;
  await flushSave(f);
  if (client !== c || focused(f) || !holds(f)) return;
  try {
    await c.release({ lock: f.spec.id });
  } catch (err) {
    // disconnected: the lock runs out on the server by itself, or comes back on reconnecting (and is released then)
    if (/** @type {any} */ (err).code !== "disconnected") notice(f, problem(err, f));
  }
  render();
}

/** Runs a field's Wait for it / Take over / Leave the line, telling a failure in the field. @param {Field} f @param {() => Promise<any>} action */
async function act(f, action) {
  f.noticeText = "";
  let result;
  try {
    result = await action();
  } catch (err) {
    notice(f, problem(err, f));
  }
  render();
  return result;
}

/** @param {Field} f */
function wire(f) {
  const id = f.spec.id;
  f.input.addEventListener("focus", () => {
    ui.touched = true;
    client?.setMeta({ field: id });
    claim(f);
  });
  f.input.addEventListener("blur", () => {
    if (!document.hasFocus()) return; // the window lost the focus, not the field: keep it
    client?.setMeta(null);
    leave(f);
  });
  f.input.addEventListener("keydown", (e) => {
    const ke = /** @type {KeyboardEvent} */ (e);
    if (ke.key === "Escape" || (ke.key === "Enter" && (!f.spec.multiline || ke.ctrlKey || ke.metaKey))) {
      ke.preventDefault();
      f.input.blur(); // saving is leaving: the lock is free for the others
    }
  });
  f.input.addEventListener("input", () => {
    const fence = client?.lockFence(id);
    if (!client?.canEditLock(id) || fence == null) return;
    f.dirty = true;
    f.fence = fence; // the fence this text was typed under
    clearTimeout(f.saveTimer);
    f.saveTimer = window.setTimeout(() => flushSave(f), SAVE_DELAY_MS);
  });
  f.wait.addEventListener("click", () => {
    const c = /** @type {PresenceClient} */ (client);
    if (f.queued) {
      f.queued = 0;
      return act(f, () => c.release({ lock: id })); // leave the line
    }
    f.asked = true; // `queued` gives our place; `acquired` comes when it is ours, and focuses it
    return act(f, () => c.acquire({ lock: id, wait: true })).then((r) => { if (!r) f.asked = false; });
  });
  f.takeover.addEventListener("click", () => {
    const c = /** @type {PresenceClient} */ (client);
    f.asked = true;
    return act(f, () => c.takeover({ lock: id })).then((r) => { if (!r) f.asked = false; });
  });
}

// ---- rendering ----------------------------------------------------------------------------------------

/** Where the others are: field id -> the people with a tab in it (their presence meta). @param {PresenceClient|null} c */
function placesOf(c) {
  /** @type {Map<string, {id: string, name: string}[]>} */
  const where = new Map();
  for (const v of c?.state?.viewers ?? []) {
    for (const tab of v.presence ?? []) {
      const field = tab.meta?.field;
      if (tab.conn === c?.conn || typeof field !== "string") continue;
      const people = where.get(field) ?? [];
      if (!people.some((u) => u.id === v.user.id)) people.push(v.user);
      where.set(field, people);
    }
  }
  return where;
}

/** A person's coloured name. @param {{id: string, name: string}} user @param {string} text */
function badge(user, text) {
  const span = document.createElement("span");
  span.className = "who";
  span.dataset.user = user.id;
  span.style.setProperty("--who", colourOf(user.id));
  span.textContent = text;
  return span;
}

function render() {
  const c = client;
  const me = c?.user;
  const where = placesOf(c);
  for (const f of fields.values()) {
    const { id, label } = f.spec;
    const holder = c?.locks.get(id) ?? null;
    const mine = holds(f);
    const canEdit = !!c?.canEditLock(id);
    const other = holder && !mine ? holder : null;
    f.input.readOnly = !canEdit;
    f.row.dataset.state = canEdit ? "mine" : other ? "theirs" : mine ? "paused" : "free";
    f.row.dataset.fence = String(holder?.fence ?? "");
    let text = "";
    if (canEdit) text = `You are editing ${label}.`;
    else if (mine) text = `Paused: the server has not confirmed your lock on ${label} in time.`;
    else if (other) {
      text = other.user.id === me?.id ? `You are editing ${label} in another tab.` : `${other.user.name} is editing ${label}.`;
      if (f.queued) text += ` You are #${f.queued} in line.`;
    }
    f.status.textContent = text;
    f.actions.hidden = !other || !!c?.readOnly;
    f.wait.textContent = f.queued ? "Leave the line" : "Wait for it";
    f.wait.setAttribute("aria-pressed", String(f.queued > 0));
    f.wait.disabled = f.takeover.disabled = !c?.connected;
    f.notice.hidden = !f.noticeText;
    f.notice.textContent = f.noticeText;
    f.notice.dataset.tone = f.noticeTone;
    f.here.replaceChildren(...(where.get(id) ?? []).map((u) => {
      const who = badge(u, u.id === me?.id ? "You (another tab)" : u.name);
      who.setAttribute("role", "listitem");
      who.title = `${u.name} is in ${label}`;
      return who;
    }));
  }

  // who is here, and in which field (dimmed while disconnected: the list may be out of date)
  el.viewers.classList.toggle("stale", !c?.connected);
  el.viewers.replaceChildren(...(c?.state?.viewers ?? []).map((v) => {
    const li = document.createElement("li");
    li.dataset.user = v.user.id;
    const labels = [...new Set((v.presence ?? []).map((t) => fields.get(String(t.meta?.field))?.spec.label)
      .filter(Boolean))];
    const tag = document.createElement("span");
    tag.className = labels.length ? "tag editing" : "tag";
    tag.textContent = labels.length ? `in ${labels.join(", ")}` : v.active ? "viewing" : "idle";
    li.append(badge(v.user, v.user.id === me?.id ? `${v.user.name} (you)` : v.user.name), tag);
    return li;
  }));
}

// ---- client wiring ------------------------------------------------------------------------------------

/** @param {{user: string, name: string, workspace: string}} who */
async function join(who) {
  client?.close();
  const c = new PresenceClient({ workspace: who.workspace, token: () => demoToken(who.user, who.name) });
  client = c;
  ui.touched = false;
  say("");
  for (const f of fields.values()) {
    clearTimeout(f.saveTimer);
    Object.assign(f, { noticeText: "", dirty: false, fence: null, queued: 0, claiming: false, asked: false, holderKey: "" });
    f.input.value = "";
    fetchField(f);
  }
  /** @param {string} type @param {(detail: any) => void} fn */
  const on = (type, fn) => c.addEventListener(type, (e) => {
    if (client === c) fn(/** @type {CustomEvent} */ (e).detail);
  });
  /** The field a lock event is about (events of the workspace's own lease have no `lock`). @param {any} d */
  const fieldOf = (d) => (d.lock ? fields.get(d.lock) : undefined);

  on("connection", (d) => {
    if (d.status === "open" && c.user) tokenForSaves(c.user).catch(() => {}); // ready for a save as the page unloads
    showConnection(el.status, d, c.user?.name);
    render();
  });
  on("state", () => {
    for (const f of fields.values()) {
      const holder = c.locks.get(f.spec.id);
      const key = holder ? `${holder.user.id}:${holder.fence}` : "";
      if (key !== f.holderKey) { // someone's turn began or ended: their last save is the value now
        f.holderKey = key;
        if (!holds(f)) fetchField(f);
      }
      if (!holder && focused(f)) claim(f); // free again while we are in it: ours
    }
    render();
  });
  on("canedit", render);
  on("queued", (d) => {
    const f = fieldOf(d);
    if (f) f.queued = d.position;
    render();
  });
  on("acquired", (d) => {
    const f = fieldOf(d);
    if (!f) return;
    const asked = f.asked || f.queued > 0;
    Object.assign(f, { asked: false, queued: 0 });
    if (asked) notice(f, `It's yours now: you can edit ${f.spec.label}.`, "good");
    if (!f.claiming && !focused(f)) {
      // Asked for (waited for, taken over), or still ours after a reload: the focus goes there. Otherwise
      // it came back on reconnecting after we had left the field: give it up.
      if (asked || (d.rejoined && !ui.touched)) f.input.focus();
      else leave(f);
    }
    fetchField(f); // start from the latest saved value (after a reload: what the old page saved as it went)
    render();
  });
  on("released", (d) => {
    const f = fieldOf(d);
    if (!f || d.reason === "released") return render();
    clearTimeout(f.saveTimer);
    const lost = f.dirty ? ` Your last change was not saved: “${f.input.value}”` : "";
    f.dirty = false;
    const { label } = f.spec;
    notice(f, ({
      taken_over: `${d.by?.name ?? "Someone"} took over ${label} at ${time()}.`,
      expired: `Your lock on ${label} expired at ${time()}.`,
      lost: `The connection to the server was lost at ${time()}.`,
      revoked: `An operator released your lock on ${label} at ${time()}.`,
    }[/** @type {string} */ (d.reason)] ?? `You stopped editing ${label} at ${time()} (${d.reason}).`) + lost);
    fetchField(f);
    render();
  });
  on("error", (d) => say(errorText(d)));

  render();
  await connectShowing(c, el.status, () => client === c);
}

// Follow the others' saves while they type (only the fields they hold, only while the page is seen).
setInterval(() => {
  const c = client;
  if (!c?.connected || document.visibilityState !== "visible") return;
  for (const f of fields.values()) if (c.locks.has(f.spec.id) && !holds(f)) fetchField(f);
}, FOLLOW_MS);
document.addEventListener("visibilitychange", () => {
  client?.status({ active: document.visibilityState === "visible" });
});
// The page goes away (a reload): what was typed is saved now (the lock stays ours for the grace period).
window.addEventListener("pagehide", () => { for (const f of fields.values()) flushSave(f); });

startFromQuery(el, { defaultWorkspace: "form-1", what: "Form", say, join });
