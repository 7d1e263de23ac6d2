// TypeScript declarations of react.js: React hooks over the presence client (React >= 18, a peer dependency).

import type {
  AcquireResult,
  AcquiredResult,
  AskedResult,
  ConnectionStatus,
  DeclineResult,
  Holder,
  LeaseWatcherOptions,
  PresenceClient,
  PresenceOptions,
  QueuedResult,
  ReleaseResult,
  State,
  User,
  Viewer,
  WatchedLease,
} from "./presence.js";

/** What `usePresence` returns; a new object whenever the client's snapshot changes. */
export interface UsePresenceResult {
  /** The workspace as this tab knows it; null until the first welcome. */
  state: State | null;
  /** `state.viewers`, or an empty list. */
  viewers: readonly Viewer[];
  /** Who holds the workspace's lease (with its fence), or null. */
  holder: Holder | null;
  /** This tab holds the workspace's lease and its local deadline has not passed. */
  canEdit: boolean;
  /** The fence of the workspace's lease while this tab holds it: send it with every save. */
  fence: number | null;
  status: ConnectionStatus;
  /** Who the server says we are (after the welcome). */
  user: User | null;
  acquire(options?: { wait?: boolean; lock?: string }): Promise<AcquireResult | QueuedResult>;
  release(options?: { lock?: string }): Promise<ReleaseResult | DeclineResult>;
  takeover(options?: { lock?: string }): Promise<AcquiredResult>;
  /** As `client.setMeta`: shared with everyone, at most one frame per 50 ms. */
  setMeta(meta: Record<string, unknown> | null): void;
  /** The component's client (for events and `useLock`); null only when rendered on a server. */
  client: PresenceClient | null;
}

/**
 * One workspace's presence and lease for a component. The client lives as long as the component (a new one
 * when `url` or `workspace` changes), connects after mounting and closes on unmounting; under StrictMode there
 * is one live connection. A new `token` (an inline function, a fresh string) is used from the next connection
 * attempt on, without reconnecting.
 */
export declare function usePresence(options: PresenceOptions): UsePresenceResult;

/** What `useLock` returns; a new object only when this lock's holder, canEdit or fence changes. */
export interface UseLockResult {
  /** Who holds the lock (anyone), or null. */
  holder: Holder | null;
  /** This tab holds the lock and its own local deadline has not passed. */
  canEdit: boolean;
  /** The lock's fence while this tab holds it: send it with every save of what the lock guards. */
  fence: number | null;
  acquire(options?: { wait?: boolean }): Promise<AcquireResult | QueuedResult>;
  release(): Promise<ReleaseResult | DeclineResult>;
  takeover(): Promise<AcquiredResult>;
  request(message?: string): Promise<AskedResult | AcquiredResult>;
  decline(): Promise<DeclineResult>;
}

/** One lock of `client`: a named lock, or "" (the default) for the workspace's lease. */
export declare function useLock(client: PresenceClient | null, lock?: string): UseLockResult;

/** Options of `useLeases`: those of a LeaseWatcher, with the workspaces to watch. */
export interface UseLeasesOptions extends LeaseWatcherOptions {
  /** Re-watched on the same connection whenever the list changes (by content). */
  workspaces: string[];
}

/** Many workspaces' leases over one connection, for a list page: workspace id -> {holder, viewers}. */
export declare function useLeases(options: UseLeasesOptions): ReadonlyMap<string, WatchedLease>;
