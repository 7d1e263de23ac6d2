// @ts-check
// react.js - React hooks over presence.js (types in react.d.ts). React >= 18 is a peer dependency: this module
// imports "react" and bundles nothing; a page's bundler (or an import map) supplies it.
//
// Each hook keeps one client for as long as its component lives (a new one only when `url` or `workspace`
// changes), connects it after mounting and closes it on unmounting. Under StrictMode (mount, unmount, mount)
// the connection is opened on a microtask after the effect, so the unmount that follows at once cancels it
// before any socket exists: one live connection, nothing leaked. Rendered on a server (no `window`), the hooks
// make no client and show nothing held.

import { useEffect, useMemo, useRef, useSyncExternalStore } from "react";
import { LeaseWatcher, PresenceClient, PresenceError } from "./presence.js";

/** @typedef {import("./presence.js").PresenceOptions} PresenceOptions */
/** @typedef {import("./presence.js").LeaseWatcherOptions} LeaseWatcherOptions */
/** @typedef {import("./presence.js").PresenceSnapshot} PresenceSnapshot */
/** @typedef {import("./presence.js").LeaseWatcherSnapshot} LeaseWatcherSnapshot */
/** @typedef {import("./presence.js").TokenSource} TokenSource */
/** @typedef {import("./presence.js").Holder} Holder */
/** @typedef {{holder: Holder|null, canEdit: boolean, fence: number|null}} LockView */

const IN_BROWSER = typeof window !== "undefined";

/** @type {PresenceSnapshot} what a component shows before it has a client (server rendering, hydration) */
const NO_PRESENCE = Object.freeze({
  state: null, status: /** @type {const} */ ("closed"), connected: false, user: null, holding: false, canEdit: false,
  fence: null, queuePosition: 0, locks: new Map(), held: new Map(),
});
/** @type {LeaseWatcherSnapshot} */
const NO_LEASES = Object.freeze({ leases: new Map(), connected: false, status: /** @type {const} */ ("closed") });
/** @type {readonly import("./presence.js").Viewer[]} */
const NO_VIEWERS = Object.freeze([]);
/** @type {LockView} */
const NO_LOCK = Object.freeze({ holder: null, canEdit: false, fence: null });
const noPresence = () => NO_PRESENCE;
const noLeases = () => NO_LEASES;
const noSubscription = () => () => {};

/**
 * The token source a hook's client keeps: it asks the latest render's `token` every time, so a new token
 * function (an inline arrow, a refreshed string) never tears the connection down.
 * @param {{current: {token: TokenSource}}} latest
 * @returns {TokenSource}
 */
function latestToken(latest) {
  return (info) => {
    const token = latest.current.token;
    return typeof token === "function" ? token(info) : token;
  };
}

/**
 * Connects `client` after mounting (on a microtask, so that StrictMode's immediate unmount cancels it before
 * a socket exists) and closes it on unmounting.
 * @param {{connect(): Promise<unknown>, close(): void} | null} client
 */
function useConnection(client) {
  useEffect(() => {
    if (!client) return undefined;
    let mounted = true;
    queueMicrotask(() => {
      // Failures show as the snapshot's `status` ("closed" after giving up) and as `error` events.
      if (mounted) client.connect().catch(() => {});
    });
    return () => {
      mounted = false;
      client.close();
    };
  }, [client]);
}

/** @param {string} what */
const notConnected = (what) => Promise.reject(new PresenceError("disconnected", `${what}: no client (rendered on a server)`));

/**
 * One workspace's presence and lease for a component: `{state, viewers, holder, canEdit, fence, status, user,
 * acquire, release, takeover, setMeta, client}`. Re-renders whenever the client's snapshot changes.
 * @param {PresenceOptions} options  as for PresenceClient; a change of `url` or `workspace` makes a new client
 */
export function usePresence(options) {
  const latest = useRef(options);
  useEffect(() => { latest.current = options; });
  const { url, workspace } = options;
  const client = useMemo(
    () => (IN_BROWSER ? new PresenceClient({ ...options, token: latestToken(latest) }) : null),
    [url, workspace], // the other options are read once, as by the client itself
  );
  useConnection(client);
  const snapshot = useSyncExternalStore(client?.subscribe ?? noSubscription, client?.getSnapshot ?? noPresence, noPresence);
  const actions = useMemo(() => ({
    /** @param {{wait?: boolean, lock?: string}} [opts] */
    acquire: (opts) => (client ? client.acquire(opts) : notConnected("acquire")),
    /** @param {{lock?: string}} [opts] */
    release: (opts) => (client ? client.release(opts) : notConnected("release")),
    /** @param {{lock?: string}} [opts] */
    takeover: (opts) => (client ? client.takeover(opts) : notConnected("takeover")),
    /** @param {Record<string, unknown>|null} meta */
    setMeta: (meta) => { client?.setMeta(meta); },
  }), [client]);
  return useMemo(() => ({
    state: snapshot.state,
    viewers: snapshot.state?.viewers ?? NO_VIEWERS,
    holder: snapshot.state?.holder ?? null,
    canEdit: snapshot.canEdit,
    fence: snapshot.holding ? snapshot.fence : null,
    status: snapshot.status,
    user: snapshot.user,
    ...actions,
    client,
  }), [snapshot, actions, client]);
}

/**
 * One lock of a client (a named lock, or "" for the workspace's lease): `{holder, canEdit, fence, acquire,
 * release, takeover, request, decline}`. Re-renders only when this lock's holder, canEdit or fence changes.
 * @param {PresenceClient|null} client  usePresence's `client` (null: nothing held)
 * @param {string} [lock]
 */
export function useLock(client, lock = "") {
  const getView = useMemo(() => {
    const read = client?.getSnapshot ?? noPresence;
    /** @type {{snapshot: PresenceSnapshot|null, view: LockView}} the last view, kept while it says the same */
    let last = { snapshot: null, view: NO_LOCK };
    return () => {
      const snapshot = read();
      if (snapshot === last.snapshot) return last.view;
      const mine = lock ? snapshot.held.get(lock) : snapshot.holding ? { fence: snapshot.fence, canEdit: snapshot.canEdit } : undefined;
      const view = {
        holder: (lock ? snapshot.locks.get(lock) : snapshot.state?.holder) ?? null,
        canEdit: !!mine?.canEdit,
        fence: mine?.fence ?? null,
      };
      const same = view.holder === last.view.holder && view.canEdit === last.view.canEdit && view.fence === last.view.fence;
      last = { snapshot, view: same ? last.view : view };
      return last.view;
    };
  }, [client, lock]);
  const view = useSyncExternalStore(client?.subscribe ?? noSubscription, getView, getView);
  const actions = useMemo(() => ({
    /** @param {{wait?: boolean}} [opts] */
    acquire: (opts) => (client ? client.acquire({ ...opts, lock }) : notConnected("acquire")),
    release: () => (client ? client.release({ lock }) : notConnected("release")),
    takeover: () => (client ? client.takeover({ lock }) : notConnected("takeover")),
    /** @param {string} [message] */
    request: (message) => (client ? client.request(message, { lock }) : notConnected("request")),
    decline: () => (client ? client.decline({ lock }) : notConnected("decline")),
  }), [client, lock]);
  return useMemo(() => ({ ...view, ...actions }), [view, actions]);
}

/**
 * Many workspaces' leases over one connection, for a list page: the watcher's map, workspace id -> {holder,
 * viewers}, a new map whenever one changes. A change of `workspaces` (by content) re-watches on the same
 * connection; a change of `url` makes a new watcher.
 * @param {LeaseWatcherOptions & {workspaces: string[]}} options
 */
export function useLeases(options) {
  const latest = useRef(options);
  useEffect(() => { latest.current = options; });
  const watcher = useMemo(
    () => (IN_BROWSER ? new LeaseWatcher({ ...options, token: latestToken(latest) }) : null),
    [options.url], // the other options are read once, as by the watcher itself
  );
  const ids = JSON.stringify(options.workspaces ?? []);
  useEffect(() => {
    watcher?.watch(JSON.parse(ids)).catch(() => {});
  }, [watcher, ids]);
  useConnection(watcher);
  return useSyncExternalStore(watcher?.subscribe ?? noSubscription, watcher?.getSnapshot ?? noLeases, noLeases).leases;
}
