// Test doubles for static/presence.js: a fake WebSocket, a fake clock, a fake storage.
import assert from "node:assert/strict";
import { PresenceClient } from "../../static/presence.js";

/**
 * Deterministic clock: now(), setTimeout/clearTimeout, advance(ms) runs due timers in order.
 * wallNow() is the wall clock: it moves with advance(), and alone with sleep(ms) (a computer asleep: the
 * monotonic clock and the timers stand still) or step(ms) (the wall clock set forward or back).
 */
export class FakeClock {
  t = 0;
  seq = 0;
  wallOffset = 1_700_000_000_000;
  /** @type {Map<number, {at: number, fn: () => void}>} */
  timers = new Map();
  now = () => this.t;
  wallNow = () => this.t + this.wallOffset;
  sleep(ms) {
    this.wallOffset += ms;
  }
  step(ms) {
    this.wallOffset += ms;
  }
  setTimeout = (fn, ms) => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

export class FakeStorage {
  map = new Map();
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
}

/** Returns a WebSocket class whose instances are recorded in `sockets`. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    static sockets = sockets;
    readyState = 0;
    sent = [];
    closed = null;
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;
    /** Called with every message the client sends (after it is recorded in `sent`). */
    onsent = null;
    constructor(url) {
      this.url = url;
      sockets.push(this);
    }
    send(data) {
      assert.equal(this.readyState, 1, "send on a socket that is not open");
      const msg = JSON.parse(data);
      this.sent.push(msg);
      this.onsent?.(msg);
    }
    close(code, reason) {
      this.closed = { code, reason };
      this.readyState = 3;
    }
    // server side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(msg) {
      this.onmessage?.({ data: JSON.stringify(msg) });
    }
    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    last(type) {
      return this.sent.filter((m) => m.type === type).at(-1);
    }
  }
  return FakeWebSocket;
}

export const flush = () => new Promise((resolve) => setImmediate(resolve));

export const ME = { id: "u1", name: "Alice" };
export const BOB = { id: "u2", name: "Bob" };

export function state(extra = {}) {
  return { workspace: "doc-1", seq: 1, holder: null, viewers: [{ user: ME, tabs: 1, active: true }], ...extra };
}

export function welcome(extra = {}) {
  return {
    type: "welcome",
    conn: "c1",
    user: ME,
    workspace: "doc-1",
    heartbeat_ms: 1000,
    lease_ttl_ms: 10000,
    state: state(),
    ...extra,
  };
}

/** Records every event of the given types as [type, detail, time]. */
export function record(client, clock, types) {
  const events = [];
  for (const type of types) {
    client.addEventListener(type, (e) => events.push([type, e.detail, clock.t]));
  }
  return events;
}

/** A client wired to fakes; `random` defaults to 0 so reconnects happen after 0 ms. */
export function makeClient(options = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const storage = new FakeStorage();
  const client = new PresenceClient({
    url: "ws://example.test/ws",
    workspace: "doc-1",
    token: "tok",
    WebSocket: WS,
    storage,
    random: () => 0,
    now: clock.now,
    wallNow: clock.wallNow,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    window: null,
    ...options,
  });
  return { client, clock, WS, sockets: WS.sockets, storage };
}

/** Runs the newest socket through open + hello + welcome; returns the socket. */
export async function accept(sockets, welcomeMsg = welcome()) {
  await flush();
  const ws = sockets.at(-1);
  ws.open();
  assert.equal(ws.sent[0]?.type, "hello");
  ws.receive(welcomeMsg);
  return ws;
}

/** A connected client (welcome received). */
export async function connected(options = {}, welcomeMsg = welcome()) {
  const ctx = makeClient(options);
  const p = ctx.client.connect();
  const ws = await accept(ctx.sockets, welcomeMsg);
  await p;
  return { ...ctx, ws };
}

/**
 * Plays the server's side of a (re)join on the newest socket as the server's join does (presence/engine/workspaces.py): `welcome`, then, when
 * the welcome's holder is this tab's (our user; in scope "tab" only with `ownsGrant`), `acquired{rejoined: true}`
 * at once. From then on it answers the client's `acquire` as the lease script would: acquired (rejoined) for
 * the holder, queued with wait, busy otherwise (a free lease is granted `freeFence`). Replies come on the next
 * turn of the event loop, like a real reply; `await flush()` lets them arrive. Returns the socket.
 */
export async function acceptLikeServer(sockets, welcomeMsg, { ttlMs = 10000, ownsGrant = false, freeFence = 100 } = {}) {
  await flush();
  const ws = sockets.at(-1);
  const holder = welcomeMsg.state.holder;
  const ours = !!holder && holder.user.id === welcomeMsg.user.id && (welcomeMsg.scope !== "tab" || ownsGrant);
  ws.onsent = (m) => {
    if (m.type !== "acquire") return;
    let reply;
    if (ours) reply = { type: "acquired", id: m.id, fence: holder.fence, ttl_ms: ttlMs, rejoined: true };
    else if (!holder) reply = { type: "acquired", id: m.id, fence: freeFence, ttl_ms: ttlMs };
    else if (m.wait) reply = { type: "queued", id: m.id, position: 1 };
    else reply = { type: "busy", id: m.id, holder };
    setImmediate(() => ws.readyState === 1 && ws.receive(reply));
  };
  ws.open();
  assert.equal(ws.sent[0]?.type, "hello");
  ws.receive(welcomeMsg);
  if (ours) ws.receive({ type: "acquired", fence: holder.fence, ttl_ms: ttlMs, rejoined: true });
  return ws;
}
