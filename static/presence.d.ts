// TypeScript declarations of presence.js, the browser client of the presence server.
// The wire protocol it speaks is described in docs/protocol.md of the server's repository.

// ---- what the server tells -----------------------------------------------------------------------

/** A user, as its token says (`sub` and `name`), or a backend job holding the lease. */
export interface User {
  id: string;
  name: string;
  /** True for a backend job holding the lease over the HTTP API (its id starts with `svc:`). */
  service?: boolean;
}

/** Who holds the lease. */
export interface Holder {
  user: User;
  /** When this holder got the lease (epoch ms, Redis clock). */
  since_ms: number;
  /** How many of the holder's tabs are open in the workspace. */
  tabs: number;
  /** The lease's fence: in a state's holder; absent in `busy` and `asked`. */
  fence?: number;
}

/** One live tab of a viewer: what it shares with everyone (`setMeta()`, `status({active})`). */
export interface TabPresence {
  /** The tab's connection id (`conn` of its welcome), never its tab id. */
  conn: string;
  active: boolean;
  /** What the tab shares (a cursor, the focused field...), or null when it set none. */
  meta: Record<string, unknown> | null;
}

/** One user viewing the workspace. */
export interface Viewer {
  user: User;
  tabs: number;
  /** True when any of the user's tabs is in use (see `status({active})`). */
  active: boolean;
  /** One entry per live tab of the user, with its meta. */
  presence: TabPresence[];
}

export type ChangeKind = "joined" | "left" | "acquired" | "released" | "expired" | "taken_over" | "revoked" | "idle";

/** What happened, in a state after a change. */
export interface Change {
  kind: ChangeKind;
  user: User;
  /** For `taken_over`: whose lease it was. */
  from?: User;
  /** A lease change of a named lock (absent: the workspace's own lease). */
  lock?: string;
}

/** A pending polite request for the lease. */
export interface HandoffRequest {
  by: User;
  message: string;
  /** When the holder's time to answer ends (epoch ms, Redis clock). */
  deadline_at: number;
}

/** The whole workspace: fired as `state` after every change, and kept as `client.state`. */
export interface State {
  workspace: string;
  /** The workspace's change sequence number. */
  seq: number;
  holder: Holder | null;
  viewers: Viewer[];
  /** Users waiting in line, first first. */
  queue?: User[];
  request?: HandoffRequest | null;
  change?: Change;
  /** The named locks held, by lock id; absent when none is. */
  locks?: Record<string, Holder>;
}

export type LeaseScope = "user" | "tab";

/** The server's `welcome`, which `connect()` resolves with. */
export interface WelcomeMessage {
  type: "welcome";
  conn: string;
  user: User;
  workspace: string;
  heartbeat_ms: number;
  lease_ttl_ms: number;
  scope?: LeaseScope;
  state: State;
  /** Time left until the token's `exp`, when it has one; the client refreshes the token before it runs out. */
  expires_in_ms?: number;
  /** The token is read-only (claim `lease: false`): presence only, no lease. */
  read_only?: boolean;
}

export type ReleaseReason = "released" | "taken_over" | "expired" | "lost" | "revoked" | "idle";
/** `cooldown`: nobody answered, but the lock was taken over too recently to be taken again: ask later. */
export type DeclineReason = "declined" | "timeout" | "cancelled" | "cooldown";

/** Error codes of the server (docs/protocol.md) and of the client itself. */
export type ErrorCode =
  | "bad_message" | "rate_limited" | "not_holder" | "takeover_forbidden" | "takeover_cooldown"
  | "request_pending" | "no_request" | "too_many_locks" | "unavailable" | "internal" | "bad_token"
  // the client's own: a token function that failed, giving up, not connected, closed
  | "token_failed" | "unauthorized" | "protocol_error" | "forbidden" | "connect_failed" | "disconnected" | "closed";

// ---- results of the requests ---------------------------------------------------------------------

/** The lease is yours: send `fence` with every save. */
export interface AcquiredResult {
  acquired: true;
  fence: number;
  /** True when it was already yours (a reconnect, another tab of your user): the same fence. */
  rejoined: boolean;
}

/** Someone else holds it. */
export interface BusyResult {
  acquired: false;
  queued?: undefined;
  holder: Holder;
}

/** You wait in line (`acquire({wait: true})`); an `acquired` event fires when it is your turn. */
export interface QueuedResult {
  acquired: false;
  queued: true;
  /** 1 = next. */
  position: number;
}

/** The result of `acquire()`: `{acquired: true, fence}` or `{acquired: false, holder}`. */
export type AcquireResult = AcquiredResult | BusyResult;

export interface ReleaseResult {
  released: true;
  reason: ReleaseReason;
}

export interface DeclineResult {
  declined: true;
  reason: DeclineReason;
}

/** `request()` reached the holder, who has `deadline_ms` to answer. */
export interface AskedResult {
  asked: true;
  deadline_ms: number;
  holder: Holder;
}

// ---- events (all CustomEvents; `detail` below) -----------------------------------------------------

export type ConnectionStatus = "connecting" | "open" | "closed" | "reconnecting";

/** Which lock a request is about: a named lock's id (1-64 characters of A-Z a-z 0-9 . _ : -), or "" (the
 *  default) for the workspace's lease. */
export interface LockOption {
  lock?: string;
}

/** Lease events about a named lock carry its id; those about the workspace's lease carry none. */
export interface LockDetail {
  lock?: string;
}

export interface ConnectionDetail {
  status: ConnectionStatus;
  /** The close code, when the status follows a close. */
  code?: number;
  reason?: string;
  /** `reconnecting`: milliseconds until the next attempt. */
  delay?: number;
}

export interface AcquiredDetail extends AcquiredResult, LockDetail {
  /** Time to the server's local deadline of the lease, when it was granted. */
  ttl_ms: number;
  /** The request it answers; undefined when it came unasked (another tab, your turn in line, a rejoin). */
  id?: string;
}

export interface BusyDetail extends LockDetail {
  holder: Holder;
  id?: string;
}

export interface QueuedDetail extends LockDetail {
  position: number;
  id?: string;
}

export interface AskedDetail extends LockDetail {
  holder: Holder;
  deadline_ms: number;
  id?: string;
}

export interface RequestedDetail extends LockDetail {
  /** Who asks you, the holder, for the lease: `release()` gives it, `decline()` keeps it. */
  by: User;
  message: string;
  deadline_ms: number;
}

export interface DeclinedDetail extends LockDetail {
  reason: DeclineReason;
  by?: User;
}

export interface ReleasedDetail extends LockDetail {
  reason: ReleaseReason;
  /** Who took it over, or the operator who revoked it. */
  by?: User;
  id?: string;
}

export interface ErrorDetail {
  code: ErrorCode | (string & {});
  message: string;
  id?: string;
}

export interface CanEditDetail extends LockDetail {
  canEdit: boolean;
}

/** Every event of a PresenceClient and its detail. */
export interface PresenceEventMap {
  state: CustomEvent<State>;
  acquired: CustomEvent<AcquiredDetail>;
  busy: CustomEvent<BusyDetail>;
  queued: CustomEvent<QueuedDetail>;
  asked: CustomEvent<AskedDetail>;
  requested: CustomEvent<RequestedDetail>;
  declined: CustomEvent<DeclinedDetail>;
  released: CustomEvent<ReleasedDetail>;
  error: CustomEvent<ErrorDetail>;
  connection: CustomEvent<ConnectionDetail>;
  canedit: CustomEvent<CanEditDetail>;
}

// ---- options ------------------------------------------------------------------------------------

/** A token, or a (possibly async) function called before every connection attempt; `refresh` is true
 *  when the previous attempt was refused with 4401 (fetch a new one). A function is also called, with
 *  `refresh: true`, a while before the connection's token expires: its token is sent in `refresh` on the
 *  open connection (no reconnect). A string token cannot be renewed. */
export type TokenSource = string | ((info: { refresh: boolean }) => string | Promise<string>);

/** Where the tab id is kept (default: sessionStorage). */
export type TabStorage = Pick<Storage, "getItem" | "setItem">;

export interface PresenceOptions {
  workspace: string;
  token: TokenSource;
  /** WebSocket URL of `/ws`; default: the page's host. Required outside a browser. */
  url?: string;
  /** Overrides the per-tab id kept in `storage`. */
  tabId?: string;
  /** Default: sessionStorage when available; null: none (a new tab id per client). */
  storage?: TabStorage | null;
  /** A WebSocket implementation (default: the global one). */
  WebSocket?: typeof WebSocket;
  /** Returns [0, 1); used for the reconnect jitter. */
  random?(): number;
  /** Monotonic milliseconds (default: performance.now). */
  now?(): number;
  /** Wall-clock milliseconds (default: Date.now). The lease deadline is kept on both clocks. */
  wallNow?(): number;
  setTimeout?(fn: () => void, ms: number): unknown;
  clearTimeout?(handle: unknown): void;
  /** Source of pagehide/pageshow/online events; default: the global window (null: none). */
  window?: EventTarget | null;
}

// ---- the client ---------------------------------------------------------------------------------

/** An Error with a machine-readable `code`. */
export declare class PresenceError extends Error {
  constructor(code: ErrorCode | (string & {}), message?: string);
  readonly name: "PresenceError";
  code: ErrorCode | (string & {});
}

/** What `getSnapshot()` returns: the client as one immutable object, the same until something changes. */
export interface PresenceSnapshot {
  readonly state: State | null;
  readonly status: ConnectionStatus;
  readonly connected: boolean;
  readonly user: User | null;
  /** The workspace's lease, as `client.holding`. */
  readonly holding: boolean;
  /** `client.canEdit` when the snapshot was taken (a new snapshot follows when it flips). */
  readonly canEdit: boolean;
  readonly fence: number | null;
  readonly queuePosition: number;
  /** The named locks held by anyone, as `client.locks`. */
  readonly locks: ReadonlyMap<string, Holder>;
  /** The named locks this client holds: their fence, and whether their local deadline has not passed. */
  readonly held: ReadonlyMap<string, { readonly fence: number; readonly canEdit: boolean }>;
}

/**
 * One workspace, one WebSocket, reconnecting by itself; an EventTarget (see PresenceEventMap).
 *
 *   const client = new PresenceClient({ workspace: "doc-42", token: () => fetchToken() });
 *   await client.connect();
 *   const r = await client.acquire();
 *   if (r.acquired) save(text, r.fence); else showBanner(`${r.holder.user.name} is editing`);
 */
export declare class PresenceClient extends EventTarget {
  constructor(options: PresenceOptions);

  /** The latest workspace state (the welcome's, then every `state`). */
  state: State | null;
  /** We believe we hold the workspace's lease. */
  readonly holding: boolean;
  /** Fence of the latest grant of the workspace's lease; kept after a release. */
  readonly fence: number | null;
  /** Who the server says we are (after `welcome`). */
  user: User | null;
  /** The token is read-only (claim `lease: false`, told by the welcome): it sees presence and
   *  shares its meta, but acquire, takeover, request and waiting answer `error` `forbidden`. */
  readOnly: boolean;
  /** A `welcome` arrived on the current socket. */
  connected: boolean;
  /** Our place in the lease's line (1 = next); 0 when not waiting. */
  readonly queuePosition: number;
  /** The named locks held (by anyone), by lock id: the state's `locks`. */
  readonly locks: ReadonlyMap<string, Holder>;
  /** Sent as `tab` in hello; kept in sessionStorage so a reload reuses it. */
  tabId: string;
  readonly workspace: string;
  /** This tab's connection id (the latest welcome's `conn`), as in viewers' `presence[].conn`: tells this
   *  tab's own meta from the others'. A new one after each reconnect; null before the first welcome. */
  readonly conn: string | null;
  /** True while we hold the lease and its local deadline has not passed, connected or not. */
  readonly canEdit: boolean;
  /** Milliseconds left to the local lease deadline (0 when not holding). */
  readonly leaseRemainingMs: number;
  /** As `canEdit`, for a named lock: this tab holds it and its own local deadline has not passed ("": the lease). */
  canEditLock(lock: string): boolean;
  /** As `leaseRemainingMs`, for a named lock. */
  lockRemainingMs(lock: string): number;
  /** The fence of a named lock while this tab holds it, else null ("": as `fence`). */
  lockFence(lock: string): number | null;

  /** Calls `listener` after every change a snapshot shows; returns the unsubscribe function. Bound: it may be
   *  passed around on its own (React's `useSyncExternalStore(client.subscribe, client.getSnapshot)`). */
  subscribe(listener: () => void): () => void;
  /** The client as one immutable object: the same object until something changes. Bound, as `subscribe`. */
  getSnapshot(): PresenceSnapshot;

  /** Opens the connection and keeps it open; resolves with the next `welcome`, rejects (PresenceError)
   *  when the client gives up: close 4400/4403, repeated 4401, or close() before a welcome. */
  connect(): Promise<WelcomeMessage>;
  /** Asks for the lease (or the named lock `lock`): `{acquired: true, fence}` or `{acquired: false, holder}`. */
  acquire(options?: { wait?: false } & LockOption): Promise<AcquireResult>;
  /** Waits in line instead of `busy`: `{acquired: false, queued: true, position}`, then an `acquired` event. */
  acquire(options: { wait: true } & LockOption): Promise<AcquiredResult | QueuedResult>;
  acquire(options?: { wait?: boolean } & LockOption): Promise<AcquireResult | QueuedResult>;
  /** Force-takes the lease or a named lock (rejects with `takeover_forbidden` or `takeover_cooldown`). */
  takeover(options?: LockOption): Promise<AcquiredResult>;
  /** Gives the lease (or a named lock) up, to the requester or the first in line; while waiting, leaves the
   *  line; while asking, withdraws the request (`{declined: true, reason: "cancelled"}`). */
  release(options?: LockOption): Promise<ReleaseResult | DeclineResult>;
  /** Politely asks the holder (a free lock is simply granted). Rejects with `request_pending`,
   *  `bad_message` (message over MAX_REQUEST_MESSAGE characters), `disconnected`... */
  request(message?: string, options?: LockOption): Promise<AskedResult | AcquiredResult>;
  /** As the holder, keeps the lease (or a named lock) and turns the pending request down. */
  decline(options?: LockOption): Promise<DeclineResult>;
  /** Per-tab presence info, sent now and re-sent after each reconnect (fields left out keep their value);
   *  true when sent now. */
  status(info: { active?: boolean; meta?: Record<string, unknown> | null }): boolean;
  /** Shares what this tab is doing with everyone (each viewer's `presence`): at most one `status` per
   *  META_INTERVAL_MS with the latest meta, re-sent after a reconnect; null clears it. Throws a TypeError
   *  for anything but an object or null, a RangeError over MAX_META_BYTES of JSON. */
  setMeta(meta: Record<string, unknown> | null): void;
  /** Stops everything (closes with 1000); fires no `released`. */
  close(): void;

  addEventListener<K extends keyof PresenceEventMap>(
    type: K, listener: (this: PresenceClient, event: PresenceEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof PresenceEventMap>(
    type: K, listener: (this: PresenceClient, event: PresenceEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions,
  ): void;
}

// ---- LeaseWatcher (list views) --------------------------------------------------------------------

/** The most workspaces one LeaseWatcher may watch (500). */
export declare const MAX_WATCHED: number;

/** A watched workspace's holder, as list views show it. */
export interface WatchHolder {
  user: User;
  /** When this holder got the lease (epoch ms, Redis clock). */
  since_ms: number;
}

/** A watched workspace's lease: its holder (or null) and how many users have it open. */
export interface WatchedLease {
  holder: WatchHolder | null;
  viewers: number;
}

/** What `LeaseWatcher.getSnapshot()` returns: the same object until something changes. */
export interface LeaseWatcherSnapshot {
  /** A copy of `leases` as it was when the snapshot was taken. */
  readonly leases: ReadonlyMap<string, WatchedLease>;
  readonly connected: boolean;
  readonly status: ConnectionStatus;
}

/** The detail of a `lease` event: one watched workspace changed. */
export interface LeaseDetail extends WatchedLease {
  workspace: string;
}

export interface WatchErrorDetail extends ErrorDetail {
  /** With code `forbidden`: the ids the token may not see (left out of `leases`). */
  workspaces?: string[];
}

/** Every event of a LeaseWatcher and its detail. */
export interface LeaseWatcherEventMap {
  lease: CustomEvent<LeaseDetail>;
  leases: CustomEvent<{ leases: Map<string, WatchedLease> }>;
  error: CustomEvent<WatchErrorDetail>;
  connection: CustomEvent<ConnectionDetail>;
}

export interface LeaseWatcherOptions {
  token: TokenSource;
  /** The first set to watch (see watch()). */
  workspaces?: string[];
  /** WebSocket URL of `/ws`; default: same host as the page. */
  url?: string;
  /** The server's PRESENCE_HEARTBEAT_MS (default 5000): 2.5 of them of silence reconnect. */
  heartbeatMs?: number;
  WebSocket?: typeof WebSocket;
  random?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
}

/** Watches many workspaces' leases over one connection, for list views; its user is nobody's viewer. */
export declare class LeaseWatcher extends EventTarget {
  constructor(options: LeaseWatcherOptions);
  /** The watched workspaces' leases (those the token may see), by id. */
  leases: Map<string, WatchedLease>;
  /** The current socket got its first `leases`. */
  connected: boolean;
  /** The workspaces asked for (the last watch()). */
  readonly workspaces: string[];
  /** Opens the connection and keeps it open (reconnecting and re-watching); resolves with `leases` once
   *  the first answer arrived, rejects (PresenceError) when it gives up: 4400, 4403, repeated 4401. */
  connect(): Promise<Map<string, WatchedLease>>;
  /** Watches these instead (at most MAX_WATCHED: RangeError); resolves once the server answered. */
  watch(workspaces: string[]): Promise<Map<string, WatchedLease>>;
  /** Calls `listener` after every change of the leases or the connection; returns the unsubscribe function
   *  (bound, as PresenceClient's). */
  subscribe(listener: () => void): () => void;
  /** The leases and the connection as one immutable object: the same object until something changes. */
  getSnapshot(): LeaseWatcherSnapshot;
  /** Stops everything (closes with 1000). */
  close(): void;

  addEventListener<K extends keyof LeaseWatcherEventMap>(
    type: K, listener: (this: LeaseWatcher, event: LeaseWatcherEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof LeaseWatcherEventMap>(
    type: K, listener: (this: LeaseWatcher, event: LeaseWatcherEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions,
  ): void;
}

/** What changed since `base` (the state's `seq`), leading to `seq`: only what changed is present. */
export interface Update {
  type: "update";
  workspace: string;
  seq: number;
  base: number;
  change?: Change;
  holder?: Holder | null;
  joined?: Viewer[];
  left?: string[];
  viewers?: Viewer[];
  queue?: User[];
  request?: HandoffRequest | null;
  /** The named locks whose holder changed: the new holder, or null when freed. */
  locks?: Record<string, Holder | null>;
}

// ---- the wire protocol, frame by frame (docs/protocol.md; checked against docs/protocol.schema.json) ---

/** A request's id, echoed in its answer. */
export type RequestId = string | number;

export interface HelloMessage { type: "hello"; token: string; workspace: string; tab: string; client?: string }
export interface AcquireMessage { type: "acquire"; id?: RequestId; lock?: string; wait?: boolean }
export interface TakeoverMessage { type: "takeover"; id?: RequestId; lock?: string }
export interface ReleaseMessage { type: "release"; id?: RequestId; lock?: string }
export interface PongMessage { type: "pong"; n: number }
export interface StatusMessage { type: "status"; id?: RequestId; active?: boolean; meta?: Record<string, unknown> | null }
export interface RequestMessage { type: "request"; id?: RequestId; lock?: string; message?: string }
export interface DeclineMessage { type: "decline"; id?: RequestId; lock?: string }
export interface SyncMessage { type: "sync"; id?: RequestId }
/** A new token (the same user) for the open connection, before its token expires. */
export interface RefreshMessage { type: "refresh"; token: string; id?: RequestId }
export interface WatchMessage {
  type: "watch"; workspaces: string[]; token?: string; tab?: string; client?: string; id?: RequestId;
}
/** What a tab sends (`hello` first), or a watcher (`watch` first). */
export type ClientMessage =
  | HelloMessage | AcquireMessage | TakeoverMessage | ReleaseMessage | PongMessage | StatusMessage
  | RequestMessage | DeclineMessage | SyncMessage | RefreshMessage | WatchMessage;

export interface StateMessage extends State { type: "state" }
export type UpdateMessage = Update;
export interface AcquiredMessage {
  type: "acquired"; id?: RequestId; lock?: string; fence: number; ttl_ms: number; rejoined?: boolean;
}
export interface BusyMessage { type: "busy"; id?: RequestId; lock?: string; holder: Holder }
export interface QueuedMessage { type: "queued"; id?: RequestId; lock?: string; position: number }
export interface AskedMessage { type: "asked"; id?: RequestId; lock?: string; holder: Holder; deadline_ms: number }
export interface RequestedMessage { type: "requested"; lock?: string; by: User; deadline_ms: number; message?: string }
export interface DeclinedMessage { type: "declined"; id?: RequestId; lock?: string; reason: DeclineReason; by?: User }
export interface ReleasedMessage { type: "released"; id?: RequestId; lock?: string; reason: ReleaseReason; by?: User }
/** `ttl_ms`: the lease's time left while you hold it; `ttls`: each named lock's you hold. */
export interface PingMessage { type: "ping"; n: number; ttl_ms?: number; ttls?: Record<string, number> }
export interface ErrorMessage {
  type: "error"; id?: RequestId; code: ErrorCode | (string & {}); message: string;
  /** A watcher's `forbidden`: the ids its token may not see. */
  workspaces?: string[];
}
export interface LeasesMessage {
  type: "leases"; id?: RequestId; leases: Record<string, WatchedLease>;
  /** Time left until the watcher's token expires, when it has an `exp`. */
  expires_in_ms?: number;
}
/** The answer to `refresh`: the new token's time left. */
export interface RefreshedMessage { type: "refreshed"; id?: RequestId; expires_in_ms?: number }
export interface LeaseMessage { type: "lease"; workspace: string; holder: WatchHolder | null; viewers: number }
/** What the server sends a tab, or a watcher. */
export type ServerMessage =
  | WelcomeMessage | StateMessage | UpdateMessage | AcquiredMessage | BusyMessage | QueuedMessage
  | ReleasedMessage | AskedMessage | RequestedMessage | DeclinedMessage | PingMessage | RefreshedMessage
  | ErrorMessage | LeasesMessage | LeaseMessage;

// ---- helpers ------------------------------------------------------------------------------------

/** "presence.js/1": sent as `client` in hello. */
export declare const CLIENT_NAME: string;
/** The sessionStorage key of the tab id. */
export declare const TAB_KEY: string;
/** Longest `request()` message the server accepts (characters). */
export declare const MAX_REQUEST_MESSAGE: number;
/** Largest meta the server accepts: 1024 bytes of JSON. */
export declare const MAX_META_BYTES: number;
/** setMeta() sends at most one `status` per this many milliseconds (50). */
export declare const META_INTERVAL_MS: number;
/** Reconnect delay: capped exponential backoff with full jitter. */
export declare function backoffDelay(attempt: number, random?: () => number): number;
/** Milliseconds after being told `expires_in_ms` that the client refreshes its token: when a quarter of
 *  the token's lifetime is left, at least 1 s and at most 1 min before it runs out. */
export declare function refreshDelay(expiresInMs: number): number;
/** The safety margin the client takes off a lease's ttl_ms: min(1 s, ttl/10). */
export declare function leaseMargin(ttlMs: number): number;
/** How long (ms) a server's 1012 close reason says it keeps our lease while we reconnect; 0 when it says none. */
export declare function restartGraceMs(reason: string): number;
export declare function randomId(): string;
/** The tab id kept under TAB_KEY, created once per browser tab. */
export declare function loadTabId(storage: TabStorage | null | undefined): string;
/** `ws(s)://host/ws` for the page, or `url` made absolute. */
export declare function resolveUrl(url?: string): string;
/** The state `update` leads to from `state` (whose `seq` is the update's `base`); `state` is not changed. */
export declare function applyUpdate(state: State, update: Update): State;
