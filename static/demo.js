// @ts-check
// Demo editor for the presence server (GET /demo, dev mode). One client per (user, document).
// The document's text lives on the server (GET/PUT /demo/docs/{id}, standing in for an app backend):
// every save carries the fence of the lease it was typed under, and the server refuses a save whose
// fence no longer holds the lease or is older than the last one saved. A refused text is kept here.
import { PresenceClient } from "/static/presence.js";
import {
  colourOf, connectShowing, demoToken, errorText, showConnection, startFromQuery, time,
} from "/static/demo-page.js";
import { caretMeta, caretsOf, drawCarets } from "/static/demo-carets.js";

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
  editor: /** @type {HTMLTextAreaElement} */ ($("editor")), carets: $("carets"), message: $("message"),
  viewers: $("viewers"),
  live: $("live"), queue: $("queue"), saved: $("saved"),
  // text the server refused, kept apart
  kept: $("kept"), keptWhy: $("kept-why"), keptText: /** @type {HTMLTextAreaElement} */ ($("kept-text")),
  keptSave: /** @type {HTMLButtonElement} */ ($("kept-save")), keptCopy: /** @type {HTMLButtonElement} */ ($("kept-copy")),
  keptDiscard: /** @type {HTMLButtonElement} */ ($("kept-discard")),
  // asking for the lease (polite handoff) and waiting in line
  ask: /** @type {HTMLButtonElement} */ ($("ask")), askLabel: $("ask-label"), askHint: $("ask-hint"),
  askForm: /** @type {HTMLFormElement} */ ($("ask-form")), askMessageLabel: $("ask-message-label"),
  askMessage: /** @type {HTMLInputElement} */ ($("ask-message")),
  askCancel: /** @type {HTMLButtonElement} */ ($("ask-cancel")),
  askStatus: $("ask-status"), askStatusText: $("ask-status-text"), askCountdown: $("ask-countdown"),
  queuePosition: $("queue-position"), queuePositionText: $("queue-position-text"), actionProblem: $("action-problem"),
  leaveQueue: /** @type {HTMLButtonElement} */ ($("leave-queue")),
  // the holder's "X asks for this document" prompt
  prompt: $("request-prompt"), promptText: $("request-text"), promptMessage: $("request-message"),
  give: /** @type {HTMLButtonElement} */ ($("give")), keep: /** @type {HTMLButtonElement} */ ($("keep")),
  promptCountdown: $("request-countdown"),
};

/** @type {PresenceClient|null} */
let client = null;
/** UI state that is not in the client. */
const ui = {
  readOnly: false,          // the user chose "Open read-only" for the current holder
  readOnlyFor: "",          // ... for this holder (user id + fence); a new holder shows the banner again
  notice: "",               // "Bob took over at 10:42, ..." until dismissed or editing again
  tone: "warn",             // of the notice: warn, good ("It's yours now") or info
  askOpen: false,           // the "Ask Alice for it" message form is open
  waiting: false,           // we are in the wait queue ("Wait for it")
  lastHolder: "",           // name of the last other user seen holding the lease
  docHolder: "",            // the holder (user id + fence) when the document was last fetched for a change of holder
  /** @type {{name: string, deadline: number}|null} our request is waiting for the holder's answer */
  asking: null,
  /** @type {{by: {id: string, name: string}, message: string, deadline: number}|null} someone asks us */
  prompt: null,
  /** @type {string} who we just got the lease from by asking; the next state tells how (handed over or timeout) */
  grantedBy: "",
  problem: "",              // why the last choice in the banner (take over, ask, wait) failed
};

/** @param {string} text */
function say(text) {
  el.message.textContent = text;
}

/** Sets the banner notice (and reads it out). @param {string} text @param {"warn"|"good"|"info"} [tone] */
function notify(text, tone = "warn") {
  ui.notice = text;
  ui.tone = tone;
  announce(text);
}

/** Screen readers hear `text` once (the countdowns tick silently). @param {string} text */
function announce(text) {
  el.live.textContent = text;
}

/** "Carol", "Carol and Dave", "Carol, Dave and Erin". @param {string[]} names */
const listNames = (names) => names.length < 2 ? names.join("")
  : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;

/** Whole seconds left before `deadline` (a Date.now() value). @param {number} deadline */
const secondsLeft = (deadline) => Math.max(0, Math.ceil((deadline - Date.now()) / 1000));

/** A browser notification, only when the user allowed them before (the demo never asks) and is elsewhere. */
function desktopNotify(/** @type {string} */ title, /** @type {string} */ body) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
  if (document.visibilityState === "visible") return;
  try {
    new Notification(title, { body, tag: `presence:${client?.workspace}` });
  } catch { /* not allowed in this context (some browsers want a service worker) */ }
}

/** A failed action in words. @param {any} err */
function problem(err) {
  const holder = client?.state?.holder?.user.name ?? "the editor";
  switch (err?.code) {
    case "takeover_cooldown": {
      const ms = Number(/(\d+) ms/.exec(err.message)?.[1] ?? 0);
      const wait = ms ? ` in ${Math.ceil(ms / 1000)} s` : " in a moment";
      return `It was taken over moments ago. To stop takeover wars, try again${wait}, or ask ${holder} for it.`;
    }
    case "request_pending": {
      const by = client?.state?.request?.by.name;
      return `${by ?? "Someone"} has already asked ${holder} for it. Wait for the answer, or wait in line.`;
    }
    case "takeover_forbidden": return `You may not take over. Ask ${holder} for it, or wait for it.`;
    case "no_request": return "That request is no longer waiting for an answer.";
    case "not_holder": return "You are not editing this document (any more).";
    case "disconnected": return "Not connected right now; try again once the connection is back.";
    default: return `Could not do that: ${err?.message || err}`;
  }
}

// ---- the document, on the server (stands in for the app backend) ---------------------------------

/** @typedef {{id: string, name: string}} Person */
/** @typedef {{text: string, fence: number|null, saved_by: Person|null, saved_at_ms: number|null, version: number}} Doc */
/** The server's copy as last seen; what the editor shows when we are not typing. @type {Doc|null} */
let doc = null;
/** Text typed in the editor and not yet saved, with the fence of the lease it was typed under. */
const draft = { dirty: false, fence: /** @type {number|null} */ (null) };
/** Text the server refused (or that was unsaved when the lease ended): shown apart, never lost. */
const kept = { text: "", fence: /** @type {number|null} */ (null), why: "" };
/** A token for saves (the server checks who saves); fetched as for the WebSocket. */
let saveToken = { value: "", user: "", at: 0 };
let saving = Promise.resolve();

const docUrl = () => `/demo/docs/${encodeURIComponent(client?.workspace ?? "").replaceAll("%2F", "/")}`;

/** @param {Person} who */
async function tokenFor(who) {
  if (saveToken.user !== who.id || Date.now() - saveToken.at > 30 * 60 * 1000) {
    saveToken = { value: await demoToken(who.id, who.name), user: who.id, at: Date.now() };
  }
  return saveToken.value;
}

/** Fetches the server's copy; shows it unless we are typing (`force`: show it anyway). */
async function refreshDoc(force = false) {
  const c = client;
  if (!c) return;
  let fresh;
  try {
    const res = await fetch(docUrl(), { cache: "no-store" });
    if (!res.ok) return;
    fresh = /** @type {Doc} */ (await res.json());
  } catch {
    return; // the server is away: the connection status says so
  }
  if (client !== c) return;
  const changed = !doc || fresh.version !== doc.version;
  doc = fresh;
  if ((changed || force) && !(draft.dirty && c.canEdit)) {
    if (el.editor.value !== fresh.text) el.editor.value = fresh.text; // (an equal value keeps the cursor)
    draft.dirty = false;
  }
  renderDoc();
  renderCarets();
}

/**
 * Saves `text` under `fence`. The server answers 409 with the reason when that fence no longer may
 * write; the text is then kept apart with the server's words.
 * @param {string} text @param {number} fence
 */
async function putDoc(text, fence) {
  const c = client;
  const me = c?.user;
  if (!c || !me) return false;
  let res;
  try {
    res = await fetch(docUrl(), {
      method: "PUT", cache: "no-store",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${await tokenFor(me)}` },
      body: JSON.stringify({ text, fence }),
    });
  } catch (err) {
    keep(text, fence, `Not saved: the server did not answer (${/** @type {Error} */ (err).message}).`);
    return false;
  }
  const answer = await res.json().catch(() => ({}));
  if (client !== c) return false;
  if (res.ok) {
    // The saved line says so (one line for every save, ours or another's): no message of its own.
    if (kept.text === text) Object.assign(kept, { text: "", fence: null, why: "" });
    await refreshDoc(!c.canEdit);
    return true;
  }
  keep(text, fence, res.status === 409
    ? `Not saved: ${answer.message}; your text is kept here.`
    : `Not saved: ${answer.error ?? `the server answered ${res.status}`}; your text is kept here.`);
  await refreshDoc(true); // show what the server has: the others' text
  return false;
}

/** @param {string} text @param {number|null} fence @param {string} why */
function keep(text, fence, why) {
  Object.assign(kept, { text, fence, why });
  renderDoc();
}

/** Saves what was typed, now (autosave, Done editing, Give it, or the lease just ended). */
function flushSave() {
  clearTimeout(saveTimer);
  if (!draft.dirty || draft.fence == null) return saving;
  const text = el.editor.value;
  const fence = draft.fence;
  draft.dirty = false;
  saving = saving.then(() => putDoc(text, fence)).then(() => undefined);
  return saving;
}

let saveTimer = 0;
el.editor.addEventListener("input", () => {
  if (!client?.canEdit || client.fence == null) return;
  draft.dirty = true;
  draft.fence = client.fence; // the fence this text was typed under
  clearTimeout(saveTimer);
  saveTimer = window.setTimeout(flushSave, 400);
});
// Viewers follow the holder's saves (a real app would push them; polling keeps the demo small). Only
// someone else's edits can change the text, so only then, and only while the page is seen; a change of
// holder fetches it at once (see the state handler).
const FOLLOW_MS = 3000;
setInterval(() => {
  const holder = client?.state?.holder;
  if (client?.connected && holder && !client.holding && document.visibilityState === "visible") refreshDoc();
}, FOLLOW_MS);

function renderDoc() {
  el.saved.textContent = doc?.saved_by
    ? `Saved as version ${doc.version} by ${doc.saved_by.id === client?.user?.id ? "you" : doc.saved_by.name}`
      + ` at ${time(doc.saved_at_ms ?? 0)}.`
    : "Not saved yet.";
  const show = !!kept.text && kept.text !== doc?.text;
  el.kept.hidden = !show;
  if (show) {
    el.keptWhy.textContent = kept.why;
    if (el.keptText.value !== kept.text) el.keptText.value = kept.text;
    el.keptSave.disabled = kept.fence == null;
  }
}

el.keptSave.addEventListener("click", () => {
  if (kept.fence != null) putDoc(kept.text, kept.fence);
});
el.keptCopy.addEventListener("click", () => {
  el.keptText.select();
  navigator.clipboard?.writeText(kept.text).catch(() => {});
});
el.keptDiscard.addEventListener("click", () => {
  Object.assign(kept, { text: "", fence: null, why: "" });
  renderDoc();
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
  const queued = c?.queuePosition ?? 0;
  const request = c?.state?.request ?? null;
  const theirs = other && other.user.id !== me?.id; // someone else (not our other tab) edits
  if (!theirs) ui.askOpen = false;

  // banner: a notice about us losing (or getting) the lease, and/or "X is editing" with the choices
  let inUse = "";
  const since = other ? ` since ${time(other.since_ms)}` : "";
  if (other && ui.readOnly) inUse = `Read-only: ${otherName} ${other.user.id === me?.id ? "are" : "is"} editing${since}.`;
  else if (other) {
    inUse = `${otherName} ${other.user.id === me?.id ? "are" : "is"} editing${since}.`;
    if (request && request.by.id !== me?.id && !ui.asking) inUse += ` ${request.by.name} has asked for it.`;
  }
  el.banner.hidden = !ui.notice && !inUse;
  el.banner.classList.toggle("note", !!other && ui.readOnly && !ui.notice);
  el.banner.classList.toggle("good", !!ui.notice && ui.tone === "good" && !inUse);
  el.notice.hidden = !ui.notice;
  el.notice.dataset.tone = ui.tone;
  el.noticeText.textContent = ui.notice;
  el.inUse.hidden = !inUse;
  el.bannerText.textContent = inUse;
  el.bannerActions.hidden = !other || ui.readOnly;
  el.wait.disabled = queued > 0;
  el.wait.setAttribute("aria-pressed", String(queued > 0));

  // "Ask Alice for it": the button, the message form, then "Waiting for Alice's answer (27 s)"
  const holderName = other?.user.name ?? "";
  el.ask.hidden = !theirs || !!ui.asking;
  el.askLabel.textContent = `Ask ${holderName} for it`;
  const someoneElseAsked = !!request && request.by.id !== me?.id;
  el.askHint.textContent = someoneElseAsked ? `${request?.by.name} asked first` : "They can say yes or no";
  el.ask.disabled = !!ui.asking || ui.askOpen || someoneElseAsked;
  el.ask.setAttribute("aria-expanded", String(ui.askOpen));
  el.askForm.hidden = !ui.askOpen || !theirs || ui.readOnly;
  el.askMessageLabel.textContent = `Message for ${holderName} (optional)`;
  el.askStatus.hidden = !ui.asking || !other;
  el.askStatusText.textContent = ui.asking ? `Waiting for ${ui.asking.name}'s answer` : "";
  el.queuePosition.hidden = !queued || !other;
  el.queuePositionText.textContent = queued ? `You are #${queued} in line.` : "";
  el.actionProblem.hidden = !ui.problem || !other;
  el.actionProblem.textContent = ui.problem;

  // the holder's prompt: "Bob asks for this document - Give it / Keep it"
  // (kept while holding ends, so that the `released` that follows can tell an unanswered request)
  if (!request) ui.prompt = null;
  else if (c?.holding && (!ui.prompt || ui.prompt.by.id !== request.by.id)) {
    // no `requested` message seen (a tab opened after the request): deadline_at is on Redis' clock
    ui.prompt = { by: request.by, message: request.message, deadline: request.deadline_at };
  }
  el.prompt.hidden = !ui.prompt || !c?.holding;
  if (ui.prompt) {
    el.promptText.textContent = `${ui.prompt.by.name} asks for this document.`;
    el.promptMessage.hidden = !ui.prompt.message;
    el.promptMessage.textContent = ui.prompt.message ? `“${ui.prompt.message}”` : "";
  }

  // who is waiting in line
  const line = c?.state?.queue ?? [];
  el.queue.hidden = line.length === 0;
  const names = line.map((u) => (u.id === me?.id ? "you" : u.name));
  const sentence = listNames(names);
  el.queue.textContent = line.length
    ? `${sentence.charAt(0).toUpperCase()}${sentence.slice(1)} ${line.length > 1 || line[0].id === me?.id ? "are" : "is"} waiting for it.`
    : "";

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
    name.className = "who"; // in the colour of the caret
    name.style.setProperty("--who", colourOf(v.user.id));
    name.textContent = v.user.id === me?.id ? `${v.user.name} (you)` : v.user.name;
    const tag = document.createElement("span");
    const editing = holder?.user.id === v.user.id;
    const place = line.findIndex((u) => u.id === v.user.id) + 1;
    const asks = request?.by.id === v.user.id;
    tag.className = editing ? "tag editing" : place || asks ? "tag waiting" : "tag";
    const doing = editing ? "editing" : asks ? "asking for it" : place ? `waiting #${place}` : v.active ? "viewing" : "idle";
    tag.textContent = [doing, v.tabs > 1 ? `${v.tabs} tabs` : ""].filter(Boolean).join(", ");
    li.append(name, tag);
    return li;
  }));
  renderCountdown();
  shareCaret(); // (the editor may have just been disabled: then there is no caret to share)
  renderCarets();
}

function renderCountdown() {
  const left = client?.leaseRemainingMs ?? 0;
  el.countdown.textContent = client?.holding
    ? (left > 0 ? `Lease ${(left / 1000).toFixed(1)} s (renewed while you are here)` : "Lease expired locally")
    : "";
  const asking = ui.asking ? `(${secondsLeft(ui.asking.deadline)} s)` : "";
  if (el.askCountdown.textContent !== asking) el.askCountdown.textContent = asking;
  const prompt = ui.prompt && client?.holding
    ? `${ui.prompt.by.name} may take over in ${secondsLeft(ui.prompt.deadline)} s if you do not answer.` : "";
  if (el.promptCountdown.textContent !== prompt) el.promptCountdown.textContent = prompt;
}
setInterval(renderCountdown, 200);

// ---- client wiring --------------------------------------------------------------------------------

// ---- carets: each tab shares its caret as its presence meta, {cursor, selection} --------------------------

/** The meta this tab shared last, as JSON: only a move is sent. */
let sharedCaret = "null";

/** Every key, click and selection change may call this: the client sends at most one `status` per 50 ms. */
function shareCaret() {
  const meta = caretMeta(el.editor);
  const json = JSON.stringify(meta);
  if (!client || json === sharedCaret) return;
  sharedCaret = json;
  client.setMeta(meta);
}
for (const type of ["focus", "blur", "select", "input", "keyup", "mouseup"]) el.editor.addEventListener(type, shareCaret);
document.addEventListener("selectionchange", shareCaret);

function renderCarets() {
  const me = client?.user?.id;
  drawCarets(el.carets, el.editor, caretsOf(client?.state?.viewers ?? [], client?.conn ?? null),
    (user) => (user.id === me ? "You (another tab)" : user.name));
}
el.editor.addEventListener("scroll", renderCarets);
new ResizeObserver(renderCarets).observe(el.editor);

/** @param {{user: string, name: string, workspace: string}} who */
async function join(who) {
  client?.close();
  Object.assign(ui, { readOnly: false, readOnlyFor: "", notice: "", askOpen: false, waiting: false, lastHolder: "",
    docHolder: "", asking: null, prompt: null, grantedBy: "", problem: "" });
  say("");
  const c = new PresenceClient({ workspace: who.workspace, token: () => demoToken(who.user, who.name) });
  client = c;
  sharedCaret = "null";
  doc = null;
  Object.assign(draft, { dirty: false, fence: null });
  Object.assign(kept, { text: "", fence: null, why: "" });
  el.editor.value = "";
  refreshDoc(true);
  /** @param {string} type @param {(detail: any) => void} fn */
  const on = (type, fn) => c.addEventListener(type, (e) => {
    if (client === c) fn(/** @type {CustomEvent} */ (e).detail);
  });

  on("connection", (d) => {
    showConnection(el.status, d, c.user?.name);
    render();
  });
  on("state", (/** @type {import("/static/presence.js").State} */ s) => {
    const mine = s.holder?.user.id === c.user?.id;
    const holderKey = s.holder ? `${s.holder.user.id}:${s.holder.fence ?? ""}` : "";
    if (holderKey !== ui.docHolder) { // a holder came or went: its last save is the text now
      ui.docHolder = holderKey;
      if (!(draft.dirty && c.canEdit)) refreshDoc();
    }
    if (s.holder && !mine) ui.lastHolder = s.holder.user.name;
    // we got the lease by asking: handed over (kind acquired), or the holder did not answer (taken_over)
    if (ui.grantedBy && mine && s.change?.user.id === c.user?.id) {
      if (s.change?.kind === "taken_over") notify(`It's yours now: ${ui.grantedBy} did not answer in time.`, "good");
      ui.grantedBy = "";
    }
    // our request is gone while someone else still holds it (its `declined` may follow and say why)
    if (ui.asking && s.holder && !mine && s.request?.by.id !== c.user?.id) ui.asking = null;
    render();
  });
  on("canedit", (d) => {
    render();
    if (d.canEdit) el.editor.focus();
  });
  on("acquired", () => {
    const { asking: asked, waiting } = ui;
    Object.assign(ui, { asking: null, askOpen: false, waiting: false, notice: "", problem: "" });
    if (asked) {
      ui.grantedBy = asked.name;
      notify(`It's yours now: ${asked.name} handed the document over.`, "good");
    } else if (waiting) {
      const who = ui.lastHolder ? `${ui.lastHolder} is done and ` : "";
      notify(`It's yours now: ${who}you were first in line.`, "good");
    }
    if (asked || waiting) desktopNotify("It's yours now", `You can edit ${c.workspace}.`);
    if (!draft.dirty) refreshDoc(true); // start from the latest saved text
    render();
  });
  on("queued", (d) => {
    ui.waiting = true;
    announce(`You are #${d.position} in line.`);
    render();
  });
  on("asked", (d) => {
    ui.asking = { name: d.holder.user.name, deadline: Date.now() + d.deadline_ms };
    ui.askOpen = false;
    announce(`You asked ${d.holder.user.name} for the document. Waiting for the answer.`);
    render();
  });
  on("declined", (d) => {
    const name = d.by?.name ?? ui.asking?.name ?? c.state?.holder?.user.name ?? "The editor";
    ui.asking = null;
    notify({
      declined: `${name} wants to keep the document for now.`,
      timeout: `${name} did not answer in time.`,
      cooldown: `${name} did not answer, and the document changed hands too recently to be taken over. Ask again in a moment.`,
      cancelled: "Your request was withdrawn because the connection dropped. Ask again if you still need it.",
    }[/** @type {string} */ (d.reason)] ?? `Your request ended (${d.reason}).`, "info");
    render();
  });
  on("requested", (d) => {
    ui.prompt = { by: d.by, message: d.message, deadline: Date.now() + d.deadline_ms };
    announce(`${d.by.name} asks for this document${d.message ? `: ${d.message}` : "."} Give it or keep it?`);
    desktopNotify(`${d.by.name} asks for ${c.workspace}`, d.message || "Give it or keep it?");
    render();
  });
  on("released", (d) => {
    const askedBy = ui.prompt?.by;
    ui.prompt = null;
    ui.waiting = false;
    if (d.reason !== "released") {
      say("");
      // What was typed under the lost lease is not thrown away: it is tried (the server refuses it
      // and says why) and kept apart, while the editor goes back to the server's copy.
      // (Shown once it differs from the server's copy, e.g. when the new holder saves.)
      const unsaved = draft.dirty || (doc !== null && el.editor.value !== doc.text);
      keep(el.editor.value, draft.fence ?? c.fence, unsaved
        ? "Not saved: your lease ended before it was saved."
        : "Your last version, from before you lost the lease.");
      flushSave();
      const at = time();
      const unanswered = d.reason === "taken_over" && askedBy && d.by?.id === askedBy.id;
      notify({
        taken_over: unanswered
          ? `${askedBy?.name} took over at ${at} because you did not answer the request; ${unsaved ? "your last changes are kept below" : "nothing was lost"}.`
          : `${d.by?.name ?? "Someone"} took over at ${at}, ${unsaved ? "your last changes are kept below" : "nothing was lost"}.`,
        expired: `Your edit lease expired at ${at}, ${unsaved ? "your last changes are kept below" : "nothing was lost"}.`,
        lost: `The connection to the server was lost at ${at}, ${unsaved ? "your last changes are kept below" : "nothing was lost"}.`,
        revoked: `An operator revoked your edit lease at ${at}, ${unsaved ? "your last changes are kept below" : "nothing was lost"}.`,
        idle: `Your edit lease was released at ${at} because you were away, ${unsaved ? "your last changes are kept below" : "nothing was lost"}.`,
      }[/** @type {string} */ (d.reason)] ?? `You stopped editing at ${at} (${d.reason}); ${unsaved ? "your last changes are kept below" : "nothing was lost"}.`);
    }
    render();
  });
  on("error", (d) => say(errorText(d)));

  render();
  await connectShowing(c, el.status, () => client === c);
}

/**
 * Runs a lease action, reporting its outcome; resolves with its result (undefined when it failed).
 * A failed choice of the in-use banner is explained in the banner, others below the editor.
 * @param {() => Promise<any>} action @param {boolean} [inBanner]
 */
async function act(action, inBanner = false) {
  let r;
  ui.problem = "";
  try {
    r = await action();
    if (r && r.acquired === false && r.holder) say(`${r.holder.user.name} is editing right now.`);
  } catch (err) {
    if (inBanner) ui.problem = problem(err);
    else say(problem(err));
  }
  render();
  return r;
}

const current = () => /** @type {PresenceClient} */ (client);

el.edit.addEventListener("click", () => act(() => current().acquire()));
el.done.addEventListener("click", async () => {
  await flushSave(); // under the lease, before giving it up
  act(() => current().release());
});
el.takeover.addEventListener("click", () => act(() => current().takeover(), true));
el.wait.addEventListener("click", async () => {
  say("");
  const r = await act(() => current().acquire({ wait: true }), true);
  if (r?.queued) announce(`You are #${r.position} in line. The document opens for you when it's free.`);
});
el.leaveQueue.addEventListener("click", async () => {
  if (await act(() => current().release(), true)) say("You left the line.");
});

// "Ask Alice for it": open the message form, send the request
el.ask.addEventListener("click", () => {
  ui.askOpen = true;
  render();
  el.askMessage.focus();
});
el.askCancel.addEventListener("click", () => {
  ui.askOpen = false;
  render();
  el.ask.focus();
});
el.askForm.addEventListener("keydown", (e) => {
  if (e.key === "Escape") el.askCancel.click();
});
el.askForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  say("");
  ui.notice = "";
  const r = await act(() => current().request(el.askMessage.value.trim()), true);
  if (r) el.askMessage.value = "";
  ui.askOpen = !r && ui.askOpen; // keep the form (and the text) when the request failed
  render();
});

// the holder's answer: Give it (release: the lease goes to the requester) or Keep it (decline)
el.give.addEventListener("click", async () => {
  const to = ui.prompt?.by.name ?? "them";
  await flushSave();
  if (await act(() => current().release())) say(`You gave the document to ${to}.`);
});
el.keep.addEventListener("click", async () => {
  const to = ui.prompt?.by.name ?? "They";
  if (await act(() => current().decline())) {
    ui.prompt = null;
    say(`You kept the document; ${to} was told.`);
    render();
  }
});
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

startFromQuery(el, { defaultWorkspace: "doc-1", what: "Document", say, join });
