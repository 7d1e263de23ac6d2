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

/** One user viewing the workspace. */
export interface Viewer {
  user: User;
  tabs: number;
  /** True when any of the user's tabs is in use (see `status({active})`). */
  active: boolean;
}

export type ChangeKind = "joined" | "left" | "acquired" | "released" | "expired" | "taken_over" | "revoked" | "idle";

/** What happened, in a state after a change. */
export interface Change {
  kind: ChangeKind;
  user: User;
  /** For `taken_over`: whose lease it was. */
  from?: User;
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
  /** Time left until the token's `exp`; the client refreshes the token before it runs out. */
  expires_in_ms?: number;
}

export type ReleaseReason = "released" | "taken_over" | "expired" | "lost" | "revoked" | "idle";
export type DeclineReason = "declined" | "timeout" | "cancelled";

/** Error codes of the server (docs/protocol.md) and of the client itself. */
export type ErrorCode =
  | "bad_message" | "rate_limited" | "not_holder" | "takeover_forbidden" | "takeover_cooldown"
  | "request_pending" | "no_request" | "unavailable" | "internal" | "bad_token"
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

export interface ConnectionDetail {
  status: ConnectionStatus;
  /** The close code, when the status follows a close. */
  code?: number;
  reason?: string;
  /** `reconnecting`: milliseconds until the next attempt. */
  delay?: number;
}

export interface AcquiredDetail extends AcquiredResult {
  /** Time to the server's local deadline of the lease, when it was granted. */
  ttl_ms: number;
  /** The request it answers; undefined when it came unasked (another tab, your turn in line, a rejoin). */
  id?: string;
}

export interface BusyDetail {
  holder: Holder;
  id?: string;
}

export interface QueuedDetail {
  position: number;
  id?: string;
}

export interface AskedDetail {
  holder: Holder;
  deadline_ms: number;
  id?: string;
}

export interface RequestedDetail {
  /** Who asks you, the holder, for the lease: `release()` gives it, `decline()` keeps it. */
  by: User;
  message: string;
  deadline_ms: number;
}

export interface DeclinedDetail {
  reason: DeclineReason;
  by?: User;
}

export interface ReleasedDetail {
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

export interface CanEditDetail {
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
  /** We believe we hold the lease. */
  holding: boolean;
  /** Fence of the latest grant; kept after a release. */
  fence: number | null;
  /** Who the server says we are (after `welcome`). */
  user: User | null;
  /** A `welcome` arrived on the current socket. */
  connected: boolean;
  /** Our place in line (1 = next); 0 when not waiting. */
  queuePosition: number;
  /** Sent as `tab` in hello; kept in sessionStorage so a reload reuses it. */
  tabId: string;
  readonly workspace: string;
  /** True while we hold the lease and its local deadline has not passed, connected or not. */
  readonly canEdit: boolean;
  /** Milliseconds left to the local lease deadline (0 when not holding). */
  readonly leaseRemainingMs: number;

  /** Opens the connection and keeps it open; resolves with the next `welcome`, rejects (PresenceError)
   *  when the client gives up: close 4400/4403, repeated 4401, or close() before a welcome. */
  connect(): Promise<WelcomeMessage>;
  /** Asks for the lease: `{acquired: true, fence}` or `{acquired: false, holder}`. */
  acquire(options?: { wait?: false }): Promise<AcquireResult>;
  /** Waits in line instead of `busy`: `{acquired: false, queued: true, position}`, then an `acquired` event. */
  acquire(options: { wait: true }): Promise<AcquiredResult | QueuedResult>;
  acquire(options?: { wait?: boolean }): Promise<AcquireResult | QueuedResult>;
  /** Force-takes the lease (rejects with `takeover_forbidden` or `takeover_cooldown`). */
  takeover(): Promise<AcquiredResult>;
  /** Gives the lease up (to the requester or the first in line); while waiting, leaves the line; while
   *  asking, withdraws the request (`{declined: true, reason: "cancelled"}`). */
  release(): Promise<ReleaseResult | DeclineResult>;
  /** Politely asks the holder (a free lease is simply granted). Rejects with `request_pending`,
   *  `bad_message` (message over MAX_REQUEST_MESSAGE characters), `disconnected`... */
  request(message?: string): Promise<AskedResult | AcquiredResult>;
  /** As the holder, keeps the lease and turns the pending request down. */
  decline(): Promise<DeclineResult>;
  /** Per-tab presence info, re-sent after each reconnect; true when sent now. */
  status(info: { active?: boolean; meta?: Record<string, unknown> }): boolean;
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
}

// ---- helpers ------------------------------------------------------------------------------------

/** "presence.js/1": sent as `client` in hello. */
export declare const CLIENT_NAME: string;
/** The sessionStorage key of the tab id. */
export declare const TAB_KEY: string;
/** Longest `request()` message the server accepts (characters). */
export declare const MAX_REQUEST_MESSAGE: number;
/** Reconnect delay: capped exponential backoff with full jitter. */
export declare function backoffDelay(attempt: number, random?: () => number): number;
/** Milliseconds after being told `expires_in_ms` that the client refreshes its token: when a quarter of
 *  the token's lifetime is left, at least 1 s and at most 1 min before it runs out. */
export declare function refreshDelay(expiresInMs: number): number;
/** The safety margin the client takes off a lease's ttl_ms: min(1 s, ttl/10). */
export declare function leaseMargin(ttlMs: number): number;
export declare function randomId(): string;
/** The tab id kept under TAB_KEY, created once per browser tab. */
export declare function loadTabId(storage: TabStorage | null | undefined): string;
/** `ws(s)://host/ws` for the page, or `url` made absolute. */
export declare function resolveUrl(url?: string): string;
/** The state `update` leads to from `state` (whose `seq` is the update's `base`); `state` is not changed. */
export declare function applyUpdate(state: State, update: Update): State;
