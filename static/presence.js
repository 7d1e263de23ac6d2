// @ts-check
// presence.js - browser client for the presence server (docs/protocol.md; types in presence.d.ts). One ES module, no dependencies.

/** @typedef {{id: string, name: string, service?: boolean}} User  service: a backend job (id "svc:...") */
/** @typedef {{user: User, fence?: number, since_ms: number, tabs: number}} Holder */
/** @typedef {{conn: string, active: boolean, meta: Record<string, unknown>|null}} TabPresence  one live tab of a viewer */
/** @typedef {{user: User, tabs: number, active: boolean, presence?: TabPresence[]}} Viewer */
/**
 * @typedef {{kind: "joined"|"left"|"acquired"|"released"|"expired"|"taken_over"|"revoked"|"idle",
 *            user: User, from?: User}} Change
 * @typedef {{by: User, message: string, deadline_at: number}} HandoffRequest  deadline_at: epoch ms, Redis clock
 */
/**
 * @typedef {{workspace: string, seq: number, holder: Holder|null, viewers: Viewer[], queue?: User[],
 *            request?: HandoffRequest|null, change?: Change, locks?: Record<string, Holder>}} State
 *   queue: users waiting, first in line first; locks: the named locks held, absent when none
 */
/**
 * @typedef {{type: "welcome", conn: string, user: User, workspace: string, heartbeat_ms: number,
 *            lease_ttl_ms: number, scope?: "user"|"tab", state: State, expires_in_ms?: number,
 *            read_only?: boolean}} WelcomeMsg
 * @typedef {{type: "state"} & State} StateMsg
 * @typedef {{type: "update", workspace: string, seq: number, base: number, change?: Change,
 *            holder?: Holder|null, joined?: Viewer[], left?: string[], viewers?: Viewer[], queue?: User[],
 *            request?: HandoffRequest|null, locks?: Record<string, Holder|null>}} UpdateMsg
 *   only what changed since `base` is present; locks: null = freed
 * @typedef {{type: "acquired", id?: string, lock?: string, fence: number, ttl_ms: number, rejoined?: boolean}} AcquiredMsg
 * @typedef {{type: "busy", id?: string, lock?: string, holder: Holder}} BusyMsg
 * @typedef {{type: "queued", id?: string, lock?: string, position: number}} QueuedMsg
 * @typedef {{type: "asked", id?: string, lock?: string, holder: Holder, deadline_ms: number}} AskedMsg
 * @typedef {{type: "requested", lock?: string, by: User, message?: string, deadline_ms: number}} RequestedMsg
 * @typedef {{type: "declined", id?: string, lock?: string, reason: "declined"|"timeout"|"cancelled"|"cooldown",
 *            by?: User}} DeclinedMsg
 * @typedef {{type: "released", id?: string, lock?: string,
 *            reason: "released"|"taken_over"|"expired"|"lost"|"revoked"|"idle", by?: User}} ReleasedMsg
 * @typedef {{type: "ping", n: number, ttl_ms?: number, ttls?: Record<string, number>}} PingMsg
 *   ttl_ms: the lease's time left; ttls: each held named lock's
 * @typedef {{type: "refreshed", id?: string, expires_in_ms?: number}} RefreshedMsg
 * @typedef {{type: "error", id?: string, code: string, message: string}} ErrorMsg
 * @typedef {WelcomeMsg|StateMsg|UpdateMsg|AcquiredMsg|BusyMsg|QueuedMsg|AskedMsg|RequestedMsg|DeclinedMsg
 *           |ReleasedMsg|PingMsg|RefreshedMsg|ErrorMsg} ServerMsg
 */
/**
 * @typedef {{acquired: true, fence: number, rejoined: boolean}
 *         | {acquired: false, holder: Holder}
 *         | {acquired: false, queued: true, position: number}} AcquireResult
 * @typedef {{released: true, reason: string}} ReleaseResult
 * @typedef {{acquired: true, fence: number, rejoined: boolean}
 *         | {asked: true, deadline_ms: number, holder: Holder}} RequestResult
 * @typedef {{declined: true, reason: string}} DeclineResult
 * @typedef {"connecting"|"open"|"closed"|"reconnecting"} ConnectionStatus
 * @typedef {{status: ConnectionStatus, code?: number, reason?: string, delay?: number}} ConnectionDetail
 * @typedef {string | ((info: {refresh: boolean}) => string | Promise<string>)} TokenSource
 * @typedef {Pick<Storage, "getItem"|"setItem">} TabStorage
 * @typedef {{lock?: string}} LockOption  which lock: a named one, or "" (the default) for the workspace's lease
 */
/**
 * What getSnapshot() returns: the same object until something changes (for React's useSyncExternalStore).
 * @typedef {object} PresenceSnapshot
 * @property {State|null} state
 * @property {ConnectionStatus} status
 * @property {boolean} connected
 * @property {User|null} user
 * @property {boolean} holding  the workspace's lease, as client.holding
 * @property {boolean} canEdit  as client.canEdit when the snapshot was taken
 * @property {number|null} fence
 * @property {number} queuePosition
 * @property {ReadonlyMap<string, Holder>} locks  the named locks held by anyone, as client.locks
 * @property {ReadonlyMap<string, {fence: number, canEdit: boolean}>} held  the named locks this client holds
 */
/**
 * @typedef {object} PresenceOptions
 * @property {string} workspace
 * @property {TokenSource} token  a string, or a (possibly async) function called before every connection
 *   attempt; `refresh` is true when the previous attempt was refused with 4401.
 * @property {string} [url]  WebSocket URL of `/ws`; default: same host as the page.
 * @property {string} [tabId]  override of the per-tab id kept in sessionStorage.
 * @property {TabStorage|null} [storage]  default: sessionStorage when available.
 * @property {typeof WebSocket} [WebSocket]
 * @property {() => number} [random]
 * @property {() => number} [now]  monotonic milliseconds; default: performance.now.
 * @property {() => number} [wallNow]  wall-clock milliseconds; default: Date.now. The lease deadline is kept on
 *   both clocks, because the monotonic one stops while the computer sleeps.
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 * @property {EventTarget|null} [window]  source of pagehide/pageshow/online; default: globalThis.window.
 */

export const CLIENT_NAME = "presence.js/1";
export const TAB_KEY = "presence.tab";
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const SILENCE_FACTOR = 2.5;
const DEFAULT_HEARTBEAT_MS = 5000;
/** While holding, the deadline is re-checked at least this often (timers do not run while the computer sleeps). */
const DEADLINE_CHECK_MS = 1000;
/** Close codes after which reconnecting cannot help. */
const FATAL_CLOSE = new Map([[4400, "protocol_error"], [4403, "forbidden"]]);
/** Longest `request` message the server accepts (characters). */
export const MAX_REQUEST_MESSAGE = 500;
/** Largest meta the server accepts: 1 KiB of JSON (UTF-8 bytes). */
export const MAX_META_BYTES = 1024;
/** setMeta() sends at most one `status` per this many milliseconds (the server applies no more). */
export const META_INTERVAL_MS = 50;
/** A named lock's id: 1-64 characters of A-Z a-z 0-9 . _ : - ("" is the workspace's lease). */
const LOCK_ID = /^[A-Za-z0-9._:-]{1,64}$/;


/**
 * Reconnect delay with capped exponential backoff and full jitter.
 * @param {number} attempt  0 for the first retry
 * @param {() => number} [random]  returns [0, 1)
 */
export function backoffDelay(attempt, random = Math.random) {
  return random() * Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
}

/**
 * How long after a token's `expires_in_ms` was told the client asks for a new one: when a quarter of its
 * lifetime is left, but at least 1 s and at most 1 min before it runs out.
 * @param {number} expiresInMs
 */
export function refreshDelay(expiresInMs) {
  return Math.max(0, expiresInMs - Math.min(60000, Math.max(1000, expiresInMs / 4)));
}

/**
 * Safety margin subtracted from a lease TTL so the client stops editing before the server can expire it.
 * @param {number} ttlMs
 */
export function leaseMargin(ttlMs) {
  return Math.min(1000, ttlMs / 10);
}

/**
 * How long (ms) a server's 1012 close reason says it keeps our lease while we reconnect (the restart grace),
 * as in "server restarting, reconnect; lease kept for 25000 ms"; 0 when it says nothing of the kind.
 * @param {string} reason
 */
export function restartGraceMs(reason) {
  const m = /; lease kept for (\d+) ms$/.exec(reason || "");
  return m ? Number(m[1]) : 0;
}

/** @returns {string} */
export function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
}

/**
 * The tab id kept under `presence.tab`, created once per browser tab (reloads keep it).
 * @param {TabStorage|null|undefined} storage
 */
export function loadTabId(storage) {
  try {
    const existing = storage?.getItem(TAB_KEY);
    if (existing) return existing;
    const id = randomId();
    storage?.setItem(TAB_KEY, id);
    return id;
  } catch {
    return randomId(); // storage disabled (privacy mode, sandboxed frame)
  }
}

/**
 * `ws(s)://host/ws` for the current page, or `url` made absolute.
 * @param {string} [url]
 */
export function resolveUrl(url) {
  const base = globalThis.location?.href;
  if (!url && !base) throw new TypeError("PresenceClient: `url` is required outside a browser");
  const u = new URL(url || "/ws", base);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  return u.href;
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * The state an `update` leads to from `state` (the caller checked that `update.base === state.seq`). Viewers
 * stay in the server's order: by name, then id. Named locks: a holder replaces the lock's, null frees it.
 * @param {State} state
 * @param {UpdateMsg} update
 * @returns {State}
 */
export function applyUpdate(state, update) {
  /** @type {State} */
  const next = { ...state, seq: update.seq };
  if (update.holder !== undefined) next.holder = update.holder;
  if (update.queue !== undefined) next.queue = update.queue;
  if (update.request !== undefined) next.request = update.request;
  if (update.change !== undefined) next.change = update.change;
  else delete next.change;
  if (update.locks) {
    /** @type {Record<string, Holder>} */
    const locks = { ...state.locks };
    for (const [lock, holder] of Object.entries(update.locks)) {
      if (holder) locks[lock] = holder;
      else delete locks[lock];
    }
    if (Object.keys(locks).length > 0) next.locks = locks;
    else delete next.locks; // absent when no named lock is held, as in a state
  }
  if (update.joined || update.left || update.viewers) {
    const byId = new Map(state.viewers.map((v) => [v.user.id, v]));
    for (const id of update.left ?? []) byId.delete(id);
    for (const v of [...(update.joined ?? []), ...(update.viewers ?? [])]) byId.set(v.user.id, v);
    next.viewers = [...byId.values()].sort((a, b) =>
      a.user.name < b.user.name ? -1 : a.user.name > b.user.name ? 1 : a.user.id < b.user.id ? -1 : a.user.id > b.user.id ? 1 : 0);
  }
  return next;
}

/** An Error with a machine-readable `code` (server error codes, or "disconnected", "unauthorized", ...). */
export class PresenceError extends Error {
  /** @param {string} code @param {string} [message] */
  constructor(code, message) {
    super(message || code);
    this.name = "PresenceError";
    this.code = code;
  }
}

/** @typedef {{resolve: (v: any) => void, reject: (e: Error) => void}} Pending */

/**
 * The external-store half of PresenceClient and LeaseWatcher (internal): listeners told of every change, and
 * a snapshot built on demand and kept until the next change, so getSnapshot() returns the same object until
 * something changes (what React's useSyncExternalStore asks of it).
 * @template T
 */
class Store {
  /** @type {Set<() => void>} */ #listeners = new Set();
  /** @type {T|null} */ #snapshot = null;
  #build;

  /** @param {() => T} build */
  constructor(build) {
    this.#build = build;
  }

  /** @param {() => void} listener @returns {() => void} unsubscribe */
  subscribe(listener) {
    if (typeof listener !== "function") throw new TypeError("subscribe: the listener must be a function");
    const entry = () => listener(); // the same function subscribed twice is two subscriptions
    this.#listeners.add(entry);
    return () => { this.#listeners.delete(entry); };
  }

  /** @returns {T} */
  get() {
    if (this.#snapshot === null) this.#snapshot = Object.freeze(this.#build());
    return this.#snapshot;
  }

  /** Something changed: the next get() builds afresh, and every listener hears of it. */
  changed() {
    this.#snapshot = null;
    for (const listener of [...this.#listeners]) {
      // A throwing listener must not cut the client's own handling short: report it as an event listener's.
      try { listener(); } catch (err) { queueMicrotask(() => { throw err; }); }
    }
  }
}

/**
 * What a Connection's owner supplies: the first frame, message handling, and what to do when the socket
 * goes away or the connection gives up.
 * @typedef {object} ConnectionHooks
 * @property {(token: string) => Record<string, unknown>} firstFrame  sent as soon as the socket opens
 * @property {(msg: any) => void} message  each frame that parsed as a JSON object (the silence timer was re-armed)
 * @property {(code: number, reason: string) => void} [closed]  the server closed the socket, before it is dropped
 * @property {() => void} dropped  the socket was detached (closed, lost or given up): the owner is no longer
 *   connected and fails or settles what waited on it
 * @property {(err: PresenceError) => void} gaveUp  after the `error` event, before `connection` closed
 * @property {() => void} [pageShown]  a bfcache restore, before reconnecting
 * @property {(type: string, detail: object) => void} emit  fires an event (`connection`, `error`) on the owner
 */

/**
 * The connection lifecycle PresenceClient and LeaseWatcher share (internal): the socket, the token, backoff
 * and reconnects, the close-code policy (4401, 4400/4403, 4429), the silence timer, named timers and the
 * page listeners. Its events (`connection`, `error`) are the owner's (`hooks.emit`).
 */
class Connection {
  /** @type {WebSocket|null} */ ws = null;
  stopped = true;
  heartbeatMs = DEFAULT_HEARTBEAT_MS;

  #hooks; #url; #token; #WS; #random; #setTimeout; #clearTimeout; #window;
  #gen = 0;
  #attempt = 0;
  #authFailures = 0;
  #refreshToken = false;
  #refreshes = 0;
  /** @type {Map<string, any>} */ #timers = new Map();

  /**
   * @param {ConnectionHooks} hooks
   * @param {{url: string, token: TokenSource, WebSocket: typeof WebSocket, random?: () => number,
   *          setTimeout?: (fn: () => void, ms: number) => any, clearTimeout?: (handle: any) => void,
   *          window: EventTarget|null, heartbeatMs?: number}} options
   */
  constructor(hooks, options) {
    this.#hooks = hooks;
    this.#url = options.url;
    this.#token = options.token;
    this.#WS = options.WebSocket;
    this.#random = options.random || Math.random;
    this.#setTimeout = options.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this.#clearTimeout = options.clearTimeout || ((h) => clearTimeout(h));
    this.#window = options.window;
    if (options.heartbeatMs) this.heartbeatMs = options.heartbeatMs;
  }

  /** Starts connecting when stopped. @returns {boolean} whether it was stopped */
  start() {
    if (!this.stopped) return false;
    this.stopped = false;
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#pageListeners(true);
    this.#open();
    return true;
  }

  /** Stops reconnecting and closes the socket with 1000 (the owner reports `closed`). */
  stop() {
    this.stopped = true;
    this.#pageListeners(false);
    this.#drop(1000, "client closed");
    this.disarm("retry");
  }

  /** The server accepted us (welcome, first leases): the next failure starts the backoff afresh. */
  opened() {
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#refreshToken = false;
  }

  async #open() {
    const gen = ++this.#gen;
    this.#emit("connection", { status: "connecting" });
    let token;
    try {
      const source = this.#token;
      token = typeof source === "function" ? await source({ refresh: this.#refreshToken }) : source;
    } catch (err) {
      if (gen !== this.#gen || this.stopped) return;
      this.#emit("error", { code: "token_failed", message: String(/** @type {any} */ (err)?.message || err) });
      this.#scheduleReconnect(0, "token_failed");
      return;
    }
    if (gen !== this.#gen || this.stopped) return;
    let ws;
    try {
      ws = new this.#WS(this.#url);
    } catch (err) { // bad URL, blocked by CSP or mixed content: retrying cannot help
      return this.#giveUp(0, String(/** @type {any} */ (err)?.message || err), "connect_failed");
    }
    this.ws = ws;
    ws.onopen = () => { if (this.ws === ws) this.send(this.#hooks.firstFrame(token)); };
    ws.onmessage = (ev) => { if (this.ws === ws) this.#onMessage(ev.data); };
    ws.onclose = (ev) => { if (this.ws === ws) this.#onClose(ev.code, ev.reason); };
    ws.onerror = () => {}; // a close event always follows
    this.armSilenceTimer();
  }

  /** @param {unknown} data */
  #onMessage(data) {
    if (typeof data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    this.armSilenceTimer();
    this.#tokenLifetime(msg);
    this.#hooks.message(msg);
  }

  /** @param {number} code @param {string} reason */
  #onClose(code, reason) {
    this.#hooks.closed?.(code, reason);
    this.#drop();
    if (this.stopped) return;
    if (code === 4401) {
      const limit = typeof this.#token === "function" ? 3 : 1;
      if (++this.#authFailures > limit) return this.#giveUp(code, reason, "unauthorized");
      this.#refreshToken = true;
    } else {
      const fatal = FATAL_CLOSE.get(code);
      if (fatal) return this.#giveUp(code, reason, fatal);
    }
    if (code === 4429) this.#attempt = Math.max(this.#attempt, 4);
    this.#scheduleReconnect(code, reason);
  }

  /** @param {number} code @param {string} reason */
  #scheduleReconnect(code, reason) {
    const delay = backoffDelay(this.#attempt, this.#random);
    this.#attempt = Math.min(this.#attempt + 1, 20);
    this.#emit("connection", { status: "reconnecting", code, reason, delay });
    this.arm("retry", delay, () => this.#open());
  }

  /** Permanent failure: no more reconnects. @param {number} code @param {string} reason @param {string} errCode */
  #giveUp(code, reason, errCode) {
    this.stopped = true;
    this.#pageListeners(false);
    this.disarm("retry");
    const err = new PresenceError(errCode, reason || `connection refused (${code})`);
    this.#emit("error", { code: errCode, message: err.message });
    this.#hooks.gaveUp(err);
    this.#emit("connection", { status: "closed", code, reason });
  }

  /**
   * Detaches the current socket (closing it when `code` is given); the owner fails what waited on it.
   * @param {number} [code] @param {string} [reason]
   */
  #drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.#gen++; // also cancels an attempt still waiting for its token
    this.disarm("silence");
    this.#hooks.dropped();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      if (code) try { ws.close(code, reason); } catch { /* already closed */ }
    }
  }

  // ---- token lifetime: a new token before the server closes with 4401, without reconnecting --------

  /**
   * `expires_in_ms` of a `welcome`, `leases` or `refreshed` (re)arms the refresh: a while before the token
   * runs out (refreshDelay), the token function is called again and its token sent in `refresh` on the
   * same socket. A `bad_token` answer reaches the owner as an `error`; the server then closes with 4401 at
   * the old expiry and the usual reconnect fetches a token. A string token cannot be renewed.
   * @param {any} msg
   */
  #tokenLifetime(msg) {
    if (msg.type !== "welcome" && msg.type !== "leases" && msg.type !== "refreshed") return;
    const ws = this.ws;
    if (typeof msg.expires_in_ms !== "number" || typeof this.#token !== "function") return this.disarm("refresh");
    this.arm("refresh", refreshDelay(msg.expires_in_ms), () => this.#refresh(ws));
  }

  /** @param {WebSocket|null} ws  the socket the expiry was told on */
  async #refresh(ws) {
    const source = this.#token;
    if (this.ws !== ws || typeof source !== "function") return;
    let token;
    try {
      token = await source({ refresh: true });
    } catch (err) {
      if (this.ws === ws) this.#emit("error", { code: "token_failed", message: String(/** @type {any} */ (err)?.message || err) });
      return;
    }
    if (this.ws === ws) this.send({ type: "refresh", id: `refresh-${++this.#refreshes}`, token });
  }

  armSilenceTimer() {
    this.arm("silence", SILENCE_FACTOR * this.heartbeatMs, () => {
      // A dead network may never deliver the close event: give up on this socket right away.
      this.#drop(4000, "heartbeat timeout");
      if (!this.stopped) this.#scheduleReconnect(1006, "heartbeat timeout");
    });
  }

  /** (Re)starts the named timer. @param {string} name @param {number} ms @param {() => void} fn */
  arm(name, ms, fn) {
    this.disarm(name);
    this.#timers.set(name, this.#setTimeout(() => {
      this.#timers.delete(name);
      fn();
    }, ms));
  }

  /** @param {string} name @returns {boolean} whether the named timer is set */
  armed(name) {
    return this.#timers.has(name);
  }

  /** @param {string} name */
  disarm(name) {
    if (this.#timers.has(name)) this.#clearTimeout(this.#timers.get(name));
    this.#timers.delete(name);
  }

  /** @param {Record<string, unknown>} msg */
  send(msg) {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  /** @param {boolean} on */
  #pageListeners(on) {
    const win = this.#window;
    if (!win) return;
    const method = on ? "addEventListener" : "removeEventListener";
    win[method]("pagehide", this.#onPageHide);
    win[method]("pageshow", this.#onPageShow);
    win[method]("online", this.#onOnline);
  }

  #onPageHide = () => {
    // Leave cleanly (the server keeps our lease for its grace period); a bfcache restore reconnects.
    this.#drop(1000, "pagehide");
    this.disarm("retry");
    this.#emit("connection", { status: "closed", code: 1000, reason: "pagehide" });
  };

  /** @param {Event} ev */
  #onPageShow = (ev) => {
    if (!(/** @type {any} */ (ev).persisted) || this.stopped || this.ws) return;
    this.#hooks.pageShown?.(); // timers were frozen while the page sat in the bfcache
    this.#attempt = 0;
    this.disarm("retry");
    this.#open();
  };

  #onOnline = () => {
    if (!this.#timers.has("retry") || this.stopped) return;
    this.disarm("retry");
    this.#open();
  };

  /** @param {string} type @param {object} detail */
  #emit(type, detail) {
    this.#hooks.emit(type, detail);
  }
}

/** What this tab knows of one lock it holds, waits for or asks for ("" is the workspace's lease). */
class Hold {
  holding = false;
  /** @type {number|null} fence of the latest grant */
  fence = null;
  deadline = 0; // local deadline on the monotonic clock
  wallDeadline = 0; // ... and on the wall clock
  canEdit = false; // as last reported by a `canedit` event
  waiting = false;
  asking = false;
  queuePosition = 0;

  get idle() { return !this.holding && !this.waiting && !this.asking; }
}

/** `{lock}` for a named lock, nothing for the workspace's lease: spread into frames and event details. @param {string} lock */
const named = (lock) => (lock ? { lock } : {});
/** The lock a server message is about. @param {{lock?: unknown}} msg */
const lockOf = (msg) => (typeof msg.lock === "string" ? msg.lock : "");

/**
 * One workspace, one WebSocket, reconnecting by itself. Events are CustomEvents; `detail`:
 * - state: State, whole, after every change: the welcome's snapshot, then each `update` the server sends
 *   applied to it (a gap asks the server for the whole state again)
 * - acquired: {acquired: true, fence, rejoined, ttl_ms, id?}; busy: {holder, id?}. A reconnect that finds the lease
 *   still ours fires it once, with rejoined: true (the server's confirmation; the client asks nothing)
 * - queued: {position, id?}: our place in the wait queue (1 = next), again whenever it changes
 * - asked: {holder, deadline_ms, id?}: our request() reached the holder, who has deadline_ms to answer
 * - requested: {by, message, deadline_ms}: we hold the lease and `by` asks for it: release() gives it to
 *   them, decline() keeps it; unanswered, `by` may take it over after deadline_ms
 * - declined: {reason, by?}: our request ended without a handoff; reason: declined (by the holder),
 *   timeout (no answer and no takeover allowed), cancelled (our connection dropped, which withdraws it),
 *   cooldown (no answer, but the lease was taken over too recently to be taken again: ask again later)
 * - released: {reason, by?, id?}; reason: released, taken_over, expired, lost, revoked (or idle)
 * - error: {code, message, id?}: server errors no request claims, token failures, giving up
 * - connection: ConnectionDetail; canedit: {canEdit} whenever `canEdit` flips (deadline included)
 * Every lease event about a named lock (acquired, busy, queued, asked, requested, declined, released, canedit)
 * carries `lock`; one without `lock` is about the workspace's lease.
 *
 *   const client = new PresenceClient({ workspace: "doc-1", token: async () => fetchToken() });
 *   await client.connect();
 *   const r = await client.acquire();   // {acquired: true, fence} | {acquired: false, holder}
 *   await client.acquire({ wait: true }); // {acquired: false, queued: true, position}; `acquired` fires later
 *   await client.request("Typo fix");      // {asked: true, deadline_ms, holder}; `acquired` or `declined` later
 *   await client.acquire({ lock: "title" }); // a named lock: the same, for one part of the workspace
 *   client.setMeta({ field: "title" });      // shared with everyone: viewers[i].presence[j].meta
 */
export class PresenceClient extends EventTarget {
  /** @type {State|null} the workspace as this tab knows it (snapshot plus updates) */
  state = null;
  /** @type {User|null} */
  user = null;
  /** @type {boolean} a `welcome` arrived on the current socket */
  connected = false;
  /** @type {ReadonlyMap<string, Holder>} the named locks held (by anyone), from the state */
  locks = new Map();

  #workspace; #now; #wallNow;
  /** @type {Connection} */ #conn;
  /** @type {Map<string, Hold>} by lock; "" (the workspace's lease) is always there */
  #holds = new Map([["", new Hold()]]);
  #syncing = false; // asked for the whole state after a gap in the updates
  #nextId = 0;
  /** @type {ConnectionStatus} */ #status = "closed";
  /** @type {WelcomeMsg|null} */ #welcome = null;
  /** @type {Map<string, Pending>} */ #pending = new Map();
  /** @type {{resolve: (w: WelcomeMsg) => void, reject: (e: Error) => void}[]} */ #connectWaiters = [];
  /** @type {{active?: boolean, meta?: object|null}} this tab's presence, as last set (re-sent on reconnecting) */
  #presence = {};
  #metaDirty = false; // setMeta() has news the server has not been sent
  #metaSentAt = -Infinity;
  /** @type {Store<PresenceSnapshot>} */ #store = new Store(() => this.#buildSnapshot());

  /** @param {PresenceOptions} options */
  constructor(options) {
    super();
    if (!options?.workspace) throw new TypeError("PresenceClient: `workspace` is required");
    if (options.token == null) throw new TypeError("PresenceClient: `token` is required");
    const url = resolveUrl(options.url);
    this.#workspace = options.workspace;
    /** @type {string} sent as `tab` in hello; kept in sessionStorage so a reload reuses it */
    this.tabId = options.tabId || loadTabId(options.storage === undefined ? defaultStorage() : options.storage);
    const WS = options.WebSocket || globalThis.WebSocket;
    if (!WS) throw new TypeError("PresenceClient: no WebSocket implementation");
    this.#now = options.now || (() => performance.now());
    this.#wallNow = options.wallNow || (() => Date.now());
    this.#conn = new Connection({
      firstFrame: (token) => ({ type: "hello", token, workspace: this.#workspace, tab: this.tabId, client: CLIENT_NAME }),
      message: (msg) => this.#onMessage(msg),
      closed: (code, reason) => this.#onServerClose(code, reason),
      dropped: () => this.#onDropped(),
      gaveUp: (err) => {
        for (const [lock, hold] of [...this.#holds]) if (hold.holding) this.#lose(lock, { reason: "lost" });
        this.#settleConnect(err);
      },
      pageShown: () => { for (const lock of [...this.#holds.keys()]) this.#updateCanEdit(lock); },
      emit: (type, detail) => this.#emit(type, detail),
    }, {
      url, token: options.token, WebSocket: WS, random: options.random, setTimeout: options.setTimeout,
      clearTimeout: options.clearTimeout, window: options.window === undefined ? globalThis.window ?? null : options.window,
    });
  }

  get workspace() { return this.#workspace; }
  /**
   * This tab's connection id (the latest welcome's `conn`): its entry in a viewer's `presence`, so a page can
   * tell its own meta from the others' (a new one after each reconnect); null before the first welcome.
   * @returns {string|null}
   */
  get conn() { return this.#welcome?.conn ?? null; }
  /** @returns {boolean} we believe we hold the workspace's lease */
  /** @type {boolean} the token is read-only (claim `lease: false`): it sees presence, holds no lease */
  readOnly = false;
  get holding() { return this.#default.holding; }
  /** @returns {number|null} fence of the latest grant of the workspace's lease; kept (not cleared) after a release */
  get fence() { return this.#default.fence; }
  /** @returns {number} our place in the lease's wait queue (1 = next), 0 when not waiting */
  get queuePosition() { return this.#default.queuePosition; }
  /** True while we hold the lease and its local deadline has not passed (connected or not). */
  get canEdit() { return this.leaseRemainingMs > 0; }
  /**
   * Milliseconds left before the local lease deadline (0 when not holding). The deadline is measured on the
   * monotonic clock and on the wall clock, and the earlier one counts: the monotonic clock does not advance
   * while the computer sleeps, the wall clock may be stepped; neither can make the lease look longer.
   */
  get leaseRemainingMs() { return this.#remaining(this.#default); }

  /** As canEdit, for a named lock (`lock` "" is the workspace's lease). @param {string} lock */
  canEditLock(lock) { return this.lockRemainingMs(lock) > 0; }
  /** As leaseRemainingMs, for a named lock. @param {string} lock */
  lockRemainingMs(lock) {
    const hold = this.#holds.get(lock);
    return hold ? this.#remaining(hold) : 0;
  }
  /** The fence of the latest grant of a named lock while this tab holds it, else null ("": as fence). @param {string} lock */
  lockFence(lock) { return this.#holds.get(lock)?.fence ?? null; }

  get #default() { return /** @type {Hold} */ (this.#holds.get("")); }

  /** @param {Hold} hold */
  #remaining(hold) {
    if (!hold.holding) return 0;
    return Math.max(0, Math.min(hold.deadline - this.#now(), hold.wallDeadline - this.#wallNow()));
  }

  // ---- external store (React's useSyncExternalStore) -----------------------------------------------

  /**
   * Calls `listener` after every change a snapshot shows (state, lease, locks, connection, canEdit).
   * @param {() => void} listener @returns {() => void} unsubscribe
   */
  subscribe = (listener) => this.#store.subscribe(listener);

  /** The client as one immutable object: the same object until something changes. @returns {PresenceSnapshot} */
  getSnapshot = () => this.#store.get();

  /** @returns {PresenceSnapshot} */
  #buildSnapshot() {
    /** @type {Map<string, {fence: number, canEdit: boolean}>} */
    const held = new Map();
    for (const [lock, hold] of this.#holds) {
      if (lock && hold.holding) held.set(lock, { fence: /** @type {number} */ (hold.fence), canEdit: this.canEditLock(lock) });
    }
    return {
      state: this.state, status: this.#status, connected: this.connected, user: this.user, holding: this.holding,
      canEdit: this.canEdit, fence: this.fence, queuePosition: this.queuePosition, locks: this.locks, held,
    };
  }

  // ---- public API ---------------------------------------------------------------------------------

  /**
   * Opens the connection (and keeps it open, reconnecting as needed). Resolves with the next `welcome`;
   * rejects when the client gives up: close 4400/4403, repeated 4401, or close() before welcome.
   * @returns {Promise<WelcomeMsg>}
   */
  connect() {
    const promise = new Promise((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
    if (!this.#conn.start() && this.connected) this.#settleConnect(null);
    return promise;
  }

  /**
   * Asks for the lease (or a named lock). With `wait: true` the server queues us instead of answering busy; the
   * promise then resolves with `{acquired: false, queued: true, position}` and an `acquired` event fires later.
   * @param {{wait?: boolean} & LockOption} [opts]
   * @returns {Promise<AcquireResult>}
   */
  acquire(opts = {}) {
    return this.#call(opts.wait ? { type: "acquire", wait: true } : { type: "acquire" }, opts.lock);
  }

  /** Force-takes the lease (or a named lock) from its holder. @param {LockOption} [opts] @returns {Promise<AcquireResult>} */
  takeover(opts = {}) {
    return this.#call({ type: "takeover" }, opts.lock);
  }

  /**
   * Gives the lease (or a named lock) up: to the pending requester if any (see `requested`), else to the first
   * in line. Called while waiting in line, it leaves the queue instead; called while asking (see request()),
   * it withdraws the request and resolves `{declined: true, reason: "cancelled"}`.
   * @param {LockOption} [opts]
   * @returns {Promise<ReleaseResult | DeclineResult>}
   */
  release(opts = {}) {
    const hold = this.#holds.get(opts.lock ?? "");
    if (hold && (hold.waiting || hold.asking)) {
      Object.assign(hold, { waiting: false, asking: false, queuePosition: 0 });
      this.#tidy();
      this.#store.changed();
    }
    return this.#call({ type: "release" }, opts.lock);
  }

  /**
   * Politely asks the holder for the lease or a named lock (polite handoff). Resolves `{asked: true,
   * deadline_ms, holder}`; then `acquired` fires when the holder gives it (or, by server policy, when the holder
   * did not answer in time), or `declined` when it does not. A free lease is simply granted: `{acquired: true,
   * fence}`. Rejects with a PresenceError: `request_pending` (someone else asked first), `bad_message` (message
   * over MAX_REQUEST_MESSAGE characters), `disconnected`, ...
   * @param {string} [message]  shown to the holder
   * @param {LockOption} [opts]
   * @returns {Promise<RequestResult>}
   */
  request(message = "", opts = {}) {
    const text = String(message ?? "");
    if ([...text].length > MAX_REQUEST_MESSAGE) {
      return Promise.reject(new PresenceError("bad_message", `message is longer than ${MAX_REQUEST_MESSAGE} characters`));
    }
    return this.#call(text ? { type: "request", message: text } : { type: "request" }, opts.lock);
  }

  /**
   * As the holder, keeps the lease (or a named lock) and turns the pending request down (the requester gets
   * `declined`). Rejects with `no_request` when there is none (any more), `not_holder` when we do not hold it.
   * @param {LockOption} [opts]
   * @returns {Promise<DeclineResult>}
   */
  decline(opts = {}) {
    return this.#call({ type: "decline" }, opts.lock);
  }

  /**
   * Per-tab presence info (`active`, and `meta` as setMeta() sets it), sent now and re-sent after each
   * reconnect; fields left out keep their last value. The server only answers on error (`error` event).
   * @param {{active?: boolean, meta?: object|null}} info
   * @returns {boolean} whether it was sent now
   */
  status(info) {
    this.#presence = { ...this.#presence, ...info };
    return this.connected && this.#sendStatus();
  }

  /**
   * Shares what this tab is doing (a cursor, the focused field...) with everyone in the workspace: each viewer
   * entry's `presence` lists its tabs' metas. Call it as often as you like: at most one `status` goes out per
   * META_INTERVAL_MS, with the latest meta; it is sent again after a reconnect. `null` clears it.
   * Throws a TypeError for anything but a plain object or null, a RangeError over MAX_META_BYTES of JSON.
   * @param {Record<string, unknown>|null} meta
   */
  setMeta(meta) {
    if (meta !== null && (typeof meta !== "object" || Array.isArray(meta))) {
      throw new TypeError("setMeta: the meta must be an object or null");
    }
    const bytes = new TextEncoder().encode(JSON.stringify(meta)).length;
    if (bytes > MAX_META_BYTES) throw new RangeError(`setMeta: the meta is ${bytes} bytes of JSON, over ${MAX_META_BYTES}`);
    this.#presence = { ...this.#presence, meta };
    this.#metaDirty = true;
    this.#flushMeta();
  }

  /** Stops everything: timers, reconnects, the socket (closed with 1000). Does not fire `released`. */
  close() {
    if (this.#conn.stopped) return;
    for (const hold of this.#holds.values()) Object.assign(hold, { waiting: false, queuePosition: 0 });
    this.#conn.stop();
    for (const [lock, hold] of [...this.#holds]) if (hold.holding) this.#setHolding(lock, false);
    this.#tidy();
    this.#settleConnect(new PresenceError("closed", "client closed before connecting"));
    this.#emit("connection", { status: "closed", code: 1000, reason: "client closed" });
  }

  // ---- connection lifecycle (the socket itself: Connection) -----------------------------------------

  /**
   * A restarting server (1012) that kept our lease says for how long (restartGraceMs): the local deadline
   * follows, so canEdit stays true while we reconnect (never shortened: the deadline we had stands otherwise).
   * The reason speaks of the workspace's lease: named locks keep their own deadlines.
   * @param {number} code @param {string} reason
   */
  #onServerClose(code, reason) {
    const kept = code === 1012 && this.holding ? restartGraceMs(reason) : 0;
    if (kept - leaseMargin(kept) > this.leaseRemainingMs) this.#setDeadline("", kept);
  }

  /** The socket went away: fail what waited on it. */
  #onDropped() {
    this.connected = false;
    for (const [lock, hold] of this.#holds) {
      if (!hold.asking) continue; // the server withdraws the request of a tab that left
      hold.asking = false;
      if (!this.#conn.stopped) this.#emit("declined", { reason: "cancelled", ...named(lock) });
    }
    this.#tidy();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(new PresenceError("disconnected", "connection lost"));
  }

  /** @param {Error|null} err */
  #settleConnect(err) {
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve(/** @type {WelcomeMsg} */ (this.#welcome));
    }
  }

  // ---- messages -------------------------------------------------------------------------------------

  /** @param {ServerMsg} msg  a frame that parsed as an object */
  #onMessage(msg) {
    switch (msg.type) {
      case "welcome": return this.#onWelcome(msg);
      case "state": {
        const { type: _type, ...state } = msg;
        this.#syncing = false;
        return this.#setState(state);
      }
      case "update": return this.#onUpdate(msg);
      case "ping": return this.#onPing(msg);
      case "acquired": {
        const lock = lockOf(msg);
        Object.assign(this.#hold(lock), { waiting: false, asking: false, queuePosition: 0, fence: msg.fence, holding: true });
        this.#setDeadline(lock, msg.ttl_ms);
        const result = { acquired: true, fence: msg.fence, rejoined: !!msg.rejoined };
        this.#emit("acquired", { ...result, ttl_ms: msg.ttl_ms, id: msg.id, ...named(lock) });
        return this.#settle(msg.id, result);
      }
      case "busy":
        this.#emit("busy", { holder: msg.holder, id: msg.id, ...named(lockOf(msg)) });
        return this.#settle(msg.id, { acquired: false, holder: msg.holder });
      case "queued": {
        const lock = lockOf(msg);
        Object.assign(this.#hold(lock), { waiting: true, queuePosition: msg.position });
        this.#emit("queued", { position: msg.position, id: msg.id, ...named(lock) });
        return this.#settle(msg.id, { acquired: false, queued: true, position: msg.position });
      }
      case "asked": {
        const lock = lockOf(msg);
        this.#hold(lock).asking = true;
        this.#emit("asked", { holder: msg.holder, deadline_ms: msg.deadline_ms, id: msg.id, ...named(lock) });
        return this.#settle(msg.id, { asked: true, deadline_ms: msg.deadline_ms, holder: msg.holder });
      }
      case "requested":
        return this.#emit("requested", {
          by: msg.by, message: msg.message ?? "", deadline_ms: msg.deadline_ms, ...named(lockOf(msg)),
        });
      case "declined": {
        // The answer to our own decline() only settles it; otherwise our request ended without a handoff.
        if (msg.id != null && this.#settle(msg.id, { declined: true, reason: msg.reason })) return;
        const lock = lockOf(msg);
        const hold = this.#holds.get(lock);
        if (hold) hold.asking = false;
        this.#tidy();
        return this.#emit("declined", { reason: msg.reason, by: msg.by, ...named(lock) });
      }
      case "released":
        this.#lose(lockOf(msg), { reason: msg.reason, by: msg.by, id: msg.id });
        return this.#settle(msg.id, { released: true, reason: msg.reason });
      case "error": {
        const pending = msg.id != null ? this.#pending.get(String(msg.id)) : undefined;
        if (!pending) return this.#emit("error", { code: msg.code, message: msg.message, id: msg.id });
        this.#pending.delete(String(msg.id));
        return pending.reject(new PresenceError(msg.code, msg.message));
      }
    }
  }

  /** Answers at once, and moves the deadline of each lock held that the ping gives time for. @param {PingMsg} msg */
  #onPing(msg) {
    this.#conn.send({ type: "pong", n: msg.n });
    if (this.holding && typeof msg.ttl_ms === "number") this.#setDeadline("", msg.ttl_ms);
    if (!msg.ttls || typeof msg.ttls !== "object") return;
    for (const [lock, ttl] of Object.entries(msg.ttls)) {
      if (lock && typeof ttl === "number" && this.#holds.get(lock)?.holding) this.#setDeadline(lock, ttl);
    }
  }

  /** @param {WelcomeMsg} msg */
  #onWelcome(msg) {
    this.connected = true;
    this.#welcome = msg;
    this.#syncing = false;
    this.#conn.opened();
    this.user = msg.user;
    this.readOnly = msg.read_only === true;
    if (msg.heartbeat_ms > 0) this.#conn.heartbeatMs = msg.heartbeat_ms;
    this.#conn.armSilenceTimer();
    for (const [lock, hold] of [...this.#holds]) {
      const holder = (lock ? msg.state?.locks?.[lock] : msg.state?.holder) ?? null;
      if (hold.holding) this.#rejoin(lock, hold, holder);
      // Back in line, unless the server is about to confirm a lease we share (see #confirmedOnJoin).
      if (hold.waiting && !hold.holding && !this.#confirmedOnJoin(hold, holder, msg.scope)) {
        this.#conn.send({ type: "acquire", id: this.#newId(), wait: true, ...named(lock) });
      }
    }
    if (Object.keys(this.#presence).length > 0) this.#sendStatus();
    this.#setState(msg.state);
    this.#emit("connection", { status: "open" });
    this.#settleConnect(null);
  }

  /**
   * After a reconnect while holding a lock. A lock that is still ours (our user, the fence we hold) was already
   * rejoined by the server's join, which sends `acquired{rejoined: true}` right after this welcome: that
   * message renews the local deadline and fires the one `acquired` event (meanwhile canEdit runs on the
   * deadline we had), so nothing is asked for here. A lock that is gone is reported now: no
   * `acquired` follows the welcome then.
   * @param {string} lock @param {Hold} hold
   * @param {Holder|null} holder  the lock's holder in the welcome state
   */
  #rejoin(lock, hold, holder) {
    const ours = holder && holder.user.id === this.user?.id && (holder.fence == null || holder.fence === hold.fence);
    if (ours) return;
    if (holder) this.#lose(lock, { reason: "taken_over", by: holder.user });
    else this.#lose(lock, { reason: "expired" });
  }

  /**
   * Whether the server's join sends this tab `acquired{rejoined: true}` right after the welcome: when the
   * welcome's holder is our user (lease scope "user"), or this very tab (scope "tab"; the state names no
   * tab, but a grant we were given on this tab id carries the fence we kept).
   * @param {Hold} hold
   * @param {Holder|null} holder  the lock's holder in the welcome state
   * @param {"user"|"tab"|undefined} scope  the welcome's lease scope
   */
  #confirmedOnJoin(hold, holder, scope) {
    if (!holder || holder.user.id !== this.user?.id) return false;
    return scope !== "tab" || (holder.fence != null && holder.fence === hold.fence);
  }

  /**
   * An update applies to the state it was computed from; after a gap (a lost frame, a state we
   * have not got), ask once for the whole state (`sync`) and ignore updates until it arrives.
   * @param {UpdateMsg} msg
   */
  #onUpdate(msg) {
    if (this.#syncing) return;
    if (!this.state || msg.base !== this.state.seq) {
      this.#syncing = true;
      this.#conn.send({ type: "sync" });
      return;
    }
    this.#setState(applyUpdate(this.state, msg));
  }

  /** @param {State} state */
  #setState(state) {
    if (!state) return;
    if (state.locks !== this.state?.locks) this.locks = new Map(Object.entries(state.locks ?? {}));
    this.state = state; // whatever its seq: after a Redis failover the sequence may have gone back
    this.#emit("state", state);
  }

  // ---- locks held -----------------------------------------------------------------------------------

  /** The record of `lock`, made when first needed. @param {string} lock */
  #hold(lock) {
    let hold = this.#holds.get(lock);
    if (!hold) this.#holds.set(lock, hold = new Hold());
    return hold;
  }

  /** Forgets the named locks this tab neither holds, nor waits nor asks for: nothing grows with locks used. */
  #tidy() {
    for (const [lock, hold] of this.#holds) if (lock && hold.idle) this.#holds.delete(lock);
  }

  /** @param {string} lock @param {{reason: string, by?: User, id?: string}} detail */
  #lose(lock, detail) {
    this.#setHolding(lock, false);
    this.#tidy();
    this.#emit("released", { ...detail, ...named(lock) });
  }

  /** @param {string} lock @param {boolean} holding */
  #setHolding(lock, holding) {
    this.#hold(lock).holding = holding;
    if (!holding) this.#conn.disarm(deadlineTimer(lock));
    this.#updateCanEdit(lock);
  }

  /** Local deadline = now + ttl - margin; a timer flips canEdit exactly then. @param {string} lock @param {number} ttlMs */
  #setDeadline(lock, ttlMs) {
    const left = ttlMs - leaseMargin(ttlMs);
    const hold = this.#hold(lock);
    hold.deadline = this.#now() + left;
    hold.wallDeadline = this.#wallNow() + left;
    this.#armDeadlineTimer(lock);
    this.#updateCanEdit(lock);
  }

  /** Checks the deadline when it is due, and at least every second (a sleeping computer delays timers). @param {string} lock */
  #armDeadlineTimer(lock) {
    const left = this.lockRemainingMs(lock);
    if (left <= 0) return this.#conn.disarm(deadlineTimer(lock));
    this.#conn.arm(deadlineTimer(lock), Math.min(left, DEADLINE_CHECK_MS), () => {
      this.#armDeadlineTimer(lock); // early (or a periodic check): wait for the rest
      this.#updateCanEdit(lock);
    });
  }

  /** @param {string} lock */
  #updateCanEdit(lock) {
    const hold = this.#holds.get(lock);
    if (!hold) return;
    const canEdit = this.canEditLock(lock);
    if (canEdit === hold.canEdit) return;
    hold.canEdit = canEdit;
    this.#emit("canedit", { canEdit, ...named(lock) });
  }

  // ---- presence --------------------------------------------------------------------------------------

  /** Sends the latest meta now, or when META_INTERVAL_MS has passed since the last `status`. */
  #flushMeta() {
    if (!this.#metaDirty || !this.connected || this.#conn.armed("meta")) return; // sent on (re)connecting, or by the timer
    const wait = this.#metaSentAt + META_INTERVAL_MS - this.#now();
    if (wait > 0) return this.#conn.arm("meta", wait, () => this.#flushMeta());
    this.#sendStatus();
  }

  #sendStatus() {
    this.#conn.disarm("meta");
    this.#metaDirty = false;
    this.#metaSentAt = this.#now();
    return this.#conn.send({ type: "status", id: this.#newId(), ...this.#presence });
  }

  // ---- requests -------------------------------------------------------------------------------------

  #newId() {
    return String(++this.#nextId);
  }

  /**
   * Sends a request and resolves with its answer (by id).
   * @param {Record<string, unknown>} msg @param {string} [lock]  the lock it is about (absent or "": the lease)
   * @returns {Promise<any>}
   */
  #call(msg, lock = "") {
    if (lock !== "" && (typeof lock !== "string" || !LOCK_ID.test(lock))) {
      return Promise.reject(new PresenceError("bad_message", `lock ids are 1-64 characters of A-Z a-z 0-9 . _ : - (got ${JSON.stringify(lock)})`));
    }
    if (!this.connected) return Promise.reject(new PresenceError("disconnected", "not connected"));
    const id = this.#newId();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (!this.#conn.send({ ...msg, ...named(lock), id })) {
        this.#pending.delete(id);
        reject(new PresenceError("disconnected", "not connected"));
      }
    });
  }

  /** Resolves the request `id` with `result`; false when no request of ours has that id. @param {string|undefined} id @param {unknown} result */
  #settle(id, result) {
    if (id == null) return false;
    const pending = this.#pending.get(String(id));
    if (!pending) return false;
    this.#pending.delete(String(id));
    pending.resolve(result);
    return true;
  }

  /** Every event goes through here: the snapshot is stale from now on, and subscribers hear of it. @param {string} type @param {object} detail */
  #emit(type, detail) {
    if (type === "connection") this.#status = /** @type {ConnectionDetail} */ (detail).status;
    this.#store.changed();
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** The named timer of a lock's local deadline. @param {string} lock */
const deadlineTimer = (lock) => (lock ? `deadline:${lock}` : "deadline");

// ---- LeaseWatcher: many workspaces' leases on one connection (list views) ------------------------------

export const MAX_WATCHED = 500;

/** @typedef {{user: User, since_ms: number}} WatchHolder */
/** @typedef {{holder: WatchHolder|null, viewers: number}} WatchedLease */
/**
 * What LeaseWatcher.getSnapshot() returns: the same object until something changes.
 * @typedef {{leases: ReadonlyMap<string, WatchedLease>, connected: boolean, status: ConnectionStatus}} LeaseWatcherSnapshot
 */
/**
 * @typedef {object} LeaseWatcherOptions
 * @property {TokenSource} token  as for PresenceClient; its `ws` claim decides which workspaces may be watched.
 * @property {string[]} [workspaces]  the first set to watch (see watch()).
 * @property {string} [url]  WebSocket URL of `/ws`; default: same host as the page.
 * @property {number} [heartbeatMs]  the server's PRESENCE_HEARTBEAT_MS (default 5000): silence for 2.5 of
 *   them drops the connection and reconnects.
 * @property {typeof WebSocket} [WebSocket]
 * @property {() => number} [random]
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 */

/**
 * Watches the lease (holder and number of viewing users) of many workspaces over one WebSocket: for a list
 * page's badges ("Alice is editing", "3 viewing"). It joins no workspace, so its user appears nowhere.
 *
 *   const watcher = new LeaseWatcher({ token: fetchToken, workspaces: ids });
 *   watcher.addEventListener("lease", (e) => render(e.detail.workspace, e.detail.holder, e.detail.viewers));
 *   await watcher.connect();          // resolves with the `leases` Map once the first answer arrived
 *   watcher.watch(otherIds);          // replaces the set (at most 500)
 *
 * Events: `lease` {workspace, holder, viewers} for every change (also for differences found after a
 * reconnect), `leases` {leases} after each full answer, `error` {code, message, workspaces?} (`forbidden`:
 * ids the token may not see, left out of `leases`), `connection` as PresenceClient's.
 */
export class LeaseWatcher extends EventTarget {
  /** @type {Map<string, WatchedLease>} the watched workspaces' leases, by id (those the token may see) */
  leases = new Map();
  /** @type {boolean} the current socket got its first `leases` */
  connected = false;

  /** @type {Connection} */ #conn;
  /** @type {string[]} */ #ids = [];
  #nextId = 0;
  /** @type {Map<string, (leases: Map<string, WatchedLease>) => void>} */ #waiting = new Map();
  /** @type {{resolve: (l: Map<string, WatchedLease>) => void, reject: (e: Error) => void}[]} */ #connectWaiters = [];
  /** @type {ConnectionStatus} */ #status = "closed";
  /** @type {Store<LeaseWatcherSnapshot>} */
  #store = new Store(() => ({ leases: new Map(this.leases), connected: this.connected, status: this.#status }));

  /** @param {LeaseWatcherOptions} options */
  constructor(options) {
    super();
    if (options?.token == null) throw new TypeError("LeaseWatcher: `token` is required");
    const url = resolveUrl(options.url);
    const WS = options.WebSocket || globalThis.WebSocket;
    if (!WS) throw new TypeError("LeaseWatcher: no WebSocket implementation");
    this.#conn = new Connection({
      firstFrame: (token) => ({ type: "watch", token, workspaces: this.#ids, client: CLIENT_NAME }),
      message: (msg) => this.#onMessage(msg),
      dropped: () => this.#onDropped(),
      gaveUp: (err) => this.#settleConnect(err),
      emit: (type, detail) => this.#emit(type, detail),
    }, {
      url, token: options.token, WebSocket: WS, random: options.random, setTimeout: options.setTimeout,
      clearTimeout: options.clearTimeout, window: null, heartbeatMs: options.heartbeatMs,
    });
    if (options.workspaces) this.#ids = LeaseWatcher.#checked(options.workspaces);
  }

  /** @param {string[]} ids */
  static #checked(ids) {
    const unique = [...new Set(ids)];
    if (unique.length > MAX_WATCHED) throw new RangeError(`LeaseWatcher: at most ${MAX_WATCHED} workspaces`);
    return unique;
  }

  /** The workspaces asked for (the last watch()). */
  get workspaces() { return [...this.#ids]; }

  /**
   * Calls `listener` after every change of the leases or the connection (React's useSyncExternalStore).
   * @param {() => void} listener @returns {() => void} unsubscribe
   */
  subscribe = (listener) => this.#store.subscribe(listener);

  /** The leases and connection as one immutable object: the same object until something changes. @returns {LeaseWatcherSnapshot} */
  getSnapshot = () => this.#store.get();

  /**
   * Opens the connection (and keeps it open, reconnecting and re-watching as needed). Resolves with the
   * `leases` Map once the first answer arrived; rejects when the watcher gives up (4400, 4403, repeated 4401).
   * @returns {Promise<Map<string, WatchedLease>>}
   */
  connect() {
    const promise = new Promise((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
    if (!this.#conn.start() && this.connected) this.#settleConnect(null);
    return promise;
  }

  /**
   * Watches these workspaces instead (at most 500). Resolves with the `leases` Map once the server answered
   * (at once when not connected: the set is sent on connecting).
   * @param {string[]} ids
   * @returns {Promise<Map<string, WatchedLease>>}
   */
  watch(ids) {
    this.#ids = LeaseWatcher.#checked(ids);
    if (!this.connected || !this.#conn.ws) {
      for (const id of [...this.leases.keys()]) if (!this.#ids.includes(id)) this.leases.delete(id);
      this.#store.changed();
      return Promise.resolve(this.leases);
    }
    const id = `w${++this.#nextId}`;
    const promise = new Promise((resolve) => this.#waiting.set(id, resolve));
    this.#conn.send({ type: "watch", workspaces: this.#ids, id });
    return /** @type {Promise<Map<string, WatchedLease>>} */ (promise);
  }

  close() {
    if (this.#conn.stopped) return;
    this.#conn.stop();
    this.#settleConnect(new PresenceError("closed", "client closed before connecting"));
    this.#emit("connection", { status: "closed", code: 1000, reason: "client closed" });
  }

  /** The socket went away: what waited on it is re-watched on reconnecting. */
  #onDropped() {
    this.connected = false;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const resolve of waiting) resolve(this.leases);
  }

  /** @param {Error|null} err */
  #settleConnect(err) {
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve(this.leases);
    }
  }

  /** @param {any} msg  a frame that parsed as an object */
  #onMessage(msg) {
    switch (msg.type) {
      case "ping":
        this.#conn.send({ type: "pong", n: msg.n });
        return;
      case "leases": return this.#onLeases(msg);
      case "lease": {
        if (!this.#ids.includes(msg.workspace)) return; // from a set just replaced
        const lease = { holder: msg.holder ?? null, viewers: msg.viewers ?? 0 };
        this.leases.set(msg.workspace, lease);
        this.#emit("lease", { workspace: msg.workspace, ...lease });
        return;
      }
      case "error":
        this.#emit("error", { code: msg.code, message: msg.message, ...(msg.workspaces && { workspaces: msg.workspaces }) });
        return;
    }
  }

  /**
   * A full answer: adopt it, and fire `lease` for what differs from what we knew (missed while away).
   * @param {{id?: string, leases: Record<string, WatchedLease>}} msg
   */
  #onLeases(msg) {
    const before = this.leases;
    this.leases = new Map();
    for (const id of this.#ids) {
      const lease = msg.leases?.[id];
      if (!lease) continue;
      const now = { holder: lease.holder ?? null, viewers: lease.viewers ?? 0 };
      this.leases.set(id, now);
      const old = before.get(id);
      if (old && JSON.stringify(old) !== JSON.stringify(now)) this.#emit("lease", { workspace: id, ...now });
    }
    this.#conn.opened();
    const first = !this.connected;
    this.connected = true;
    if (first) this.#emit("connection", { status: "open" });
    this.#emit("leases", { leases: this.leases });
    const resolve = msg.id ? this.#waiting.get(msg.id) : undefined;
    if (resolve) {
      this.#waiting.delete(/** @type {string} */ (msg.id));
      resolve(this.leases);
    }
    this.#settleConnect(null);
  }

  /** Every event goes through here: the snapshot is stale from now on, and subscribers hear of it. @param {string} type @param {object} detail */
  #emit(type, detail) {
    if (type === "connection") this.#status = /** @type {ConnectionDetail} */ (detail).status;
    this.#store.changed();
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
