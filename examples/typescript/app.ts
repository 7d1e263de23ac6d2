// An editor page in TypeScript that uses the whole API of the presence client, type-checked by CI with
// `tsc --strict` against the npm package (`npm pack static/`, installed as `presence-client`).
// The `@ts-expect-error` lines are part of the check: each must be an error, or tsc fails.

import {
  CLIENT_NAME,
  LeaseWatcher,
  MAX_META_BYTES,
  MAX_REQUEST_MESSAGE,
  MAX_WATCHED,
  META_INTERVAL_MS,
  PresenceClient,
  PresenceError,
  TAB_KEY,
  applyUpdate,
  backoffDelay,
  leaseMargin,
  loadTabId,
  randomId,
  resolveUrl,
  type AcquireResult,
  type Change,
  type ConnectionStatus,
  type ErrorCode,
  type Holder,
  type PresenceEventMap,
  type PresenceOptions,
  type PresenceSnapshot,
  type ReleaseReason,
  type ServerMessage,
  type State,
  type TabPresence,
  type User,
  type WatchedLease,
  type WelcomeMessage,
} from "presence-client";

const editor = document.querySelector<HTMLTextAreaElement>("#editor")!;
const banner = document.querySelector<HTMLElement>("#banner")!;
const people = document.querySelector<HTMLUListElement>("#people")!;

async function fetchToken(refresh: boolean): Promise<string> {
  const res = await fetch(`/presence-token${refresh ? "?fresh=1" : ""}`, { cache: "no-store" });
  const body: { token: string } = await res.json();
  return body.token;
}

const options: PresenceOptions = {
  url: resolveUrl("/ws"),
  workspace: "doc-42",
  token: ({ refresh }) => fetchToken(refresh),
  tabId: loadTabId(sessionStorage),
  storage: sessionStorage,
  WebSocket,
  random: Math.random,
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (fn, ms) => window.setTimeout(fn, ms),
  clearTimeout: (handle) => window.clearTimeout(handle as number),
  window,
};
// a plain string is a token too
const readOnly = new PresenceClient({ workspace: "doc-42", token: "eyJ...", storage: null });
readOnly.close();

const client = new PresenceClient(options);

// ---- saving with the fence ------------------------------------------------------------------------

async function save(text: string, fence: number): Promise<void> {
  await fetch("/documents/doc-42", { method: "PUT", body: JSON.stringify({ text, fence }) });
}

editor.addEventListener("input", () => {
  if (client.canEdit && client.fence !== null) void save(editor.value, client.fence);
});

// ---- events, each with its own detail -------------------------------------------------------------

function describe(holder: Holder | null, me: User | null): string {
  if (!holder) return "Nobody is editing.";
  const since = new Date(holder.since_ms).toLocaleTimeString();
  return holder.user.id === me?.id ? "You are editing." : `${holder.user.name} is editing since ${since}.`;
}

function changeText(change: Change | undefined): string {
  if (!change) return "";
  return change.kind === "taken_over" && change.from
    ? `${change.user.name} took over from ${change.from.name}`
    : `${change.user.name}: ${change.kind}`;
}

client.addEventListener("state", (e) => {
  const state: State = e.detail;
  banner.textContent = `${describe(state.holder, client.user)} ${changeText(state.change)}`;
  people.replaceChildren(...state.viewers.map((v) => {
    const li = document.createElement("li");
    li.textContent = `${v.user.name} (${v.tabs} tab${v.tabs === 1 ? "" : "s"}${v.active ? "" : ", away"})`;
    const fields = v.presence.map((p: TabPresence) => p.meta?.["field"]).filter((f) => typeof f === "string");
    if (fields.length) li.title = `${v.user.name} is in ${fields.join(", ")} (${v.presence[0]?.conn})`;
    return li;
  }));
  const waiting: User[] = state.queue ?? [];
  const asking = state.request ? `${state.request.by.name} asks: ${state.request.message}` : "";
  banner.title = `${waiting.map((u) => u.name).join(", ")} ${asking}`.trim();
  // @ts-expect-error: a state's seq is a number
  const bad: string = state.seq;
  void bad;
});
client.addEventListener("canedit", (e) => { editor.readOnly = !e.detail.canEdit; });
client.addEventListener("acquired", (e) => {
  const fence: number = e.detail.fence;
  const ttl: number = e.detail.ttl_ms - leaseMargin(e.detail.ttl_ms);
  banner.textContent = e.detail.rejoined ? `Still yours (fence ${fence}, ${ttl} ms)` : `Yours (fence ${fence})`;
});
client.addEventListener("busy", (e) => { banner.textContent = `${e.detail.holder.user.name} is editing`; });
client.addEventListener("queued", (e) => { banner.textContent = `You are #${e.detail.position} in line`; });
client.addEventListener("asked", (e) => {
  banner.textContent = `Asked ${e.detail.holder.user.name}; answer within ${Math.round(e.detail.deadline_ms / 1000)} s`;
});
client.addEventListener("requested", (e) => {
  const { by, message, deadline_ms } = e.detail;
  const give = window.confirm(`${by.name} asks for the document: ${message} (${deadline_ms} ms left). Give it?`);
  void (give ? client.release() : client.decline());
});
client.addEventListener("declined", (e) => {
  const reasons: Record<typeof e.detail.reason, string> = {
    declined: `${e.detail.by?.name ?? "The editor"} keeps it`,
    timeout: "No answer in time",
    cancelled: "Request withdrawn",
    cooldown: "No answer, but it changed hands moments ago: ask again later",
  };
  banner.textContent = reasons[e.detail.reason];
});
client.addEventListener("released", (e) => {
  const reason: ReleaseReason = e.detail.reason;
  if (reason === "taken_over") banner.textContent = `${e.detail.by?.name ?? "Someone"} took over`;
  else if (reason !== "released") banner.textContent = `Editing stopped (${reason})`;
  // @ts-expect-error: not a reason the client ever reports
  const never: ReleaseReason = "stolen";
  void never;
});
client.addEventListener("error", (e) => {
  const code: ErrorCode | (string & {}) = e.detail.code;
  console.warn(code, e.detail.message, e.detail.id ?? "-");
});
client.addEventListener("connection", (e) => {
  const status: ConnectionStatus = e.detail.status;
  const retry = e.detail.delay !== undefined ? ` in ${e.detail.delay} ms` : "";
  document.title = `${status}${e.detail.code ? ` (${e.detail.code} ${e.detail.reason ?? ""})` : ""}${retry}`;
});
// the map of events names every detail type
const onConnection = (e: PresenceEventMap["connection"]): void => console.log(e.detail.status);
client.addEventListener("connection", onConnection);
client.removeEventListener("connection", onConnection);
// @ts-expect-error: `canedit`'s detail has no `fence`
client.addEventListener("canedit", (e) => e.detail.fence);
// events about a named lock say which
client.addEventListener("canedit", (e) => {
  const field = e.detail.lock === undefined ? null : document.querySelector<HTMLInputElement>(`#${e.detail.lock}`);
  if (field) field.readOnly = !e.detail.canEdit;
});
// any other event type is an ordinary EventTarget listener
client.addEventListener("custom", (e: Event) => console.log(e.type));

// ---- requests: results are discriminated unions ----------------------------------------------------

async function edit(): Promise<void> {
  const welcome: WelcomeMessage = await client.connect();
  console.log(welcome.conn, welcome.user.name, welcome.scope, welcome.heartbeat_ms, welcome.lease_ttl_ms,
              welcome.state.seq, client.user?.name, client.connected, client.tabId, client.workspace,
              client.conn?.length);

  const r: AcquireResult = await client.acquire();
  // @ts-expect-error: no fence before knowing it was acquired
  console.log(r.fence);
  if (r.acquired) {
    const fence: number = r.fence;
    await save(editor.value, fence);
  } else {
    const holder: Holder = r.holder;
    banner.textContent = `${holder.user.name} is editing (${holder.tabs} tabs)`;
    const taken = await client.takeover();
    const fence: number = taken.fence; // a takeover answers only `acquired`
    await save(editor.value, fence);
  }

  const line = await client.acquire({ wait: true });
  if (line.acquired) console.log("free: granted at once", line.fence);
  else console.log(`#${line.position} in line`, line.queued);

  const asked = await client.request("Just a typo".slice(0, MAX_REQUEST_MESSAGE));
  if ("asked" in asked) console.log(asked.holder.user.name, asked.deadline_ms);
  else console.log(asked.fence);

  const released = await client.release();
  if ("released" in released) console.log(released.reason);
  else console.log(released.declined, released.reason);

  try {
    const declined = await client.decline();
    console.log(declined.reason);
  } catch (err) {
    if (err instanceof PresenceError) console.log(err.code, err.message);
  }

  // named locks: one per part of the page, each with its own fence and deadline
  const title = await client.acquire({ lock: "title" });
  if (title.acquired && client.canEditLock("title")) await save(editor.value, client.lockFence("title") ?? title.fence);
  const waited = await client.acquire({ lock: "title", wait: true });
  if (!waited.acquired) console.log(waited.position);
  await client.takeover({ lock: "title" });
  await client.request("May I?", { lock: "title" });
  await client.decline({ lock: "title" });
  await client.release({ lock: "title" });
  const holders: ReadonlyMap<string, Holder> = client.locks;
  console.log(holders.get("title")?.user.name, client.lockRemainingMs("title"), MAX_META_BYTES, META_INTERVAL_MS);
  // @ts-expect-error: a lock is named by a string
  void client.acquire({ lock: 3 });

  client.setMeta({ field: "title", cursor: editor.selectionStart });
  client.setMeta(null);
  // @ts-expect-error: a meta is an object
  client.setMeta("title");

  // the external-store pair (React's useSyncExternalStore)
  const unsubscribe: () => void = client.subscribe(() => {
    const snap: PresenceSnapshot = client.getSnapshot();
    console.log(snap.status, snap.canEdit, snap.held.get("title")?.fence, snap.locks.size, snap.state?.seq);
    // @ts-expect-error: a snapshot is read-only
    snap.canEdit = true;
  });
  unsubscribe();

  const sent: boolean = client.status({ active: document.visibilityState === "visible", meta: { cursor: 3 } });
  console.log(sent, client.holding, client.canEdit, client.leaseRemainingMs, client.queuePosition, client.state?.seq);
  // @ts-expect-error: status takes an object
  client.status(true);
  client.close();
}

console.log(CLIENT_NAME, TAB_KEY, backoffDelay(3), backoffDelay(3, () => 0.5), randomId());

// The client applies updates by itself; a page that keeps its own copy of a state can too.
const before: State = { workspace: "doc-42", seq: 1, holder: null, viewers: [] };
const after: State = applyUpdate(before, { type: "update", workspace: "doc-42", seq: 2, base: 1, left: ["bob"] });
console.log(after.seq, after.viewers.length);
// @ts-expect-error: an update names its base
applyUpdate(before, { type: "update", workspace: "doc-42", seq: 2 });
void edit();

// A list page: one connection watches every listed document's lease.
const watcher = new LeaseWatcher({ token: async () => "jwt", workspaces: ["doc-1", "doc-2"] });
watcher.addEventListener("lease", (e) => {
  const who: string = e.detail.holder ? `${e.detail.holder.user.name} is editing` : "";
  console.log(e.detail.workspace, who, e.detail.viewers, e.detail.holder?.user.service === true);
});
watcher.addEventListener("error", (e) => console.log(e.detail.code, e.detail.workspaces?.length));
void watcher.connect().then((leases: Map<string, WatchedLease>) => console.log(leases.get("doc-1")?.viewers));
void watcher.watch(["doc-3"]);
console.log(MAX_WATCHED, watcher.workspaces.length, watcher.connected);
const stopWatching = watcher.subscribe(() => console.log(watcher.getSnapshot().leases.get("doc-1")?.viewers));
stopWatching();

// A frame of the wire protocol, for a client of one's own: a union tagged by `type`.
function onFrame(frame: ServerMessage): string {
  switch (frame.type) {
    case "acquired": return `fence ${frame.fence}${frame.lock ? ` of ${frame.lock}` : ""}`;
    case "ping": return `${frame.ttl_ms ?? 0} ${Object.keys(frame.ttls ?? {}).join()}`;
    case "declined": return frame.reason;
    default: return frame.type;
  }
}
console.log(onFrame({ type: "declined", reason: "cooldown" }));
// @ts-expect-error: watch takes a list of ids
void watcher.watch("doc-3");
watcher.close();
