// Connection lifecycle of PresenceClient: hello, pings, silence, reconnects, close codes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient, CLIENT_NAME, TAB_KEY } from "../../static/presence.js";
import {
  accept, connected, fakeWebSocketClass, FakeClock, FakeStorage, flush, makeClient, record, state, welcome, ME,
} from "./helpers.mjs";

test("hello is the first frame and carries token, workspace, tab and client", async () => {
  const { client, sockets, storage } = makeClient({ token: "secret" });
  const p = client.connect();
  await flush();
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, "ws://example.test/ws");
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, [
    { type: "hello", token: "secret", workspace: "doc-1", tab: storage.getItem(TAB_KEY), client: CLIENT_NAME },
  ]);
  sockets[0].receive(welcome());
  const w = await p;
  assert.equal(w.conn, "c1");
  assert.equal(client.connected, true);
  assert.deepEqual(client.user, ME);
});

test("tab id persists in storage: two clients (a reload) send the same tab", async () => {
  const storage = new FakeStorage();
  const a = makeClient({ storage });
  const b = makeClient({ storage });
  const other = makeClient();
  for (const c of [a, b, other]) c.client.connect();
  await flush();
  for (const c of [a, b, other]) c.sockets[0].open();
  const tabA = a.sockets[0].sent[0].tab;
  assert.ok(tabA);
  assert.equal(storage.getItem(TAB_KEY), tabA);
  assert.equal(b.sockets[0].sent[0].tab, tabA);
  assert.notEqual(other.sockets[0].sent[0].tab, tabA);
  assert.equal(makeClient({ tabId: "fixed" }).client.tabId, "fixed");
});

test("state snapshots: welcome state, then each state message", async () => {
  const ctx = makeClient();
  const events = record(ctx.client, ctx.clock, ["state", "connection"]);
  const p = ctx.client.connect();
  const ws = await accept(ctx.sockets);
  await p;
  assert.deepEqual(ctx.client.state, state());
  const next = state({ seq: 2, change: { kind: "joined", user: { id: "u2", name: "Bob" } } });
  ws.receive({ type: "state", ...next });
  assert.deepEqual(ctx.client.state, next);
  assert.deepEqual(events.filter(([t]) => t === "state").map(([, d]) => d.seq), [1, 2]);
  assert.deepEqual(events.filter(([t]) => t === "connection").map(([, d]) => d.status), ["connecting", "open"]);
});

test("a state with a lower seq replaces the copy (the sequence went back in a Redis failover)", async () => {
  const ctx = makeClient();
  const p = ctx.client.connect();
  const ws = await accept(ctx.sockets);
  await p;
  ws.receive({ type: "state", ...state({ seq: 40 }) });
  const back = state({ seq: 7, holder: null });
  ws.receive({ type: "state", ...back });
  assert.deepEqual(ctx.client.state, back);
});

test("every ping is answered at once with a pong carrying its n", async () => {
  const { ws } = await connected();
  ws.receive({ type: "ping", n: 41 });
  assert.deepEqual(ws.sent.at(-1), { type: "pong", n: 41 });
  ws.receive({ type: "ping", n: 42, ttl_ms: 5000 });
  assert.deepEqual(ws.sent.at(-1), { type: "pong", n: 42 });
});

test("silent server: no message for 2.5 heartbeats closes the socket and reconnects", async () => {
  const { client, clock, sockets, ws } = await connected({ random: () => 0.5 });
  const events = record(client, clock, ["connection"]);
  // pings keep it alive well past 2.5 heartbeats (heartbeat_ms = 1000 in welcome)
  for (let n = 1; n <= 10; n++) {
    clock.advance(1000);
    ws.receive({ type: "ping", n });
  }
  assert.equal(ws.closed, null);
  clock.advance(2499);
  assert.equal(ws.closed, null);
  assert.equal(client.connected, true);
  clock.advance(1);
  assert.equal(ws.closed?.code, 4000);
  assert.equal(client.connected, false);
  assert.deepEqual(events.map(([, d]) => d.status), ["reconnecting"]);
  assert.equal(events[0][1].delay, 250); // attempt 0: 0.5 * 500
  clock.advance(250);
  await flush();
  assert.equal(sockets.length, 2);
});

test("silent server before welcome (socket never opens) is detected too", async () => {
  const { client, clock, sockets } = makeClient();
  client.connect();
  await flush();
  clock.advance(12499); // default heartbeat 5000 * 2.5
  assert.equal(sockets[0].closed, null);
  clock.advance(1);
  assert.equal(sockets[0].closed?.code, 4000);
  await flush();
  assert.equal(sockets.length, 2);
});

test("reconnect backoff grows per failed attempt and resets after welcome", async () => {
  const { client, clock, sockets } = await connected({ random: () => 0.5 });
  const delays = [];
  client.addEventListener("connection", (e) => e.detail.status === "reconnecting" && delays.push(e.detail.delay));
  for (let i = 0; i < 8; i++) {
    sockets.at(-1).serverClose(1006);
    clock.advance(delays.at(-1));
    await flush();
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 15000, 15000]);
  await accept(sockets);
  sockets.at(-1).serverClose(1012, "restarting");
  assert.equal(delays.at(-1), 250);
});

test("4429 starts the backoff at a larger attempt", async () => {
  const { client, sockets } = await connected({ random: () => 0.5 });
  const delays = [];
  client.addEventListener("connection", (e) => e.detail.status === "reconnecting" && delays.push(e.detail.delay));
  sockets.at(-1).serverClose(4429, "rate limited");
  assert.equal(delays[0], 4000); // attempt 4: 0.5 * 500 * 2 ** 4
});

test("1013 and 1012 reconnect by themselves", async () => {
  const { clock, sockets } = await connected();
  sockets.at(-1).serverClose(1013, "overloaded");
  clock.advance(0);
  await flush();
  assert.equal(sockets.length, 2);
  await accept(sockets);
  sockets.at(-1).serverClose(1012, "restart");
  clock.advance(0);
  await flush();
  assert.equal(sockets.length, 3);
});

test("4401 calls the token function again (refresh) and sends the fresh token", async () => {
  const calls = [];
  const token = async (info) => {
    calls.push(info);
    return `t${calls.length}`;
  };
  const { client, clock, sockets } = makeClient({ token });
  const p = client.connect();
  await flush();
  sockets[0].open();
  assert.equal(sockets[0].sent[0].token, "t1");
  sockets[0].serverClose(4401, "token expired");
  clock.advance(1000);
  await flush();
  assert.equal(sockets.length, 2);
  sockets[1].open();
  assert.equal(sockets[1].sent[0].token, "t2");
  assert.deepEqual(calls, [{ refresh: false }, { refresh: true }]);
  sockets[1].receive(welcome());
  await p; // connect() survives one 4401 when the new token works
});

test("4401 with a plain string token: one retry, then stop with an error", async () => {
  const { client, clock, sockets } = makeClient({ token: "stale" });
  const events = record(client, clock, ["error", "connection"]);
  const p = client.connect();
  await flush();
  sockets[0].open();
  sockets[0].serverClose(4401, "bad token");
  clock.advance(1000);
  await flush();
  assert.equal(sockets.length, 2);
  sockets[1].open();
  sockets[1].serverClose(4401, "bad token");
  await assert.rejects(p, { code: "unauthorized" });
  clock.advance(120000);
  await flush();
  assert.equal(sockets.length, 2);
  assert.deepEqual(events.find(([t]) => t === "error")[1].code, "unauthorized");
  assert.equal(events.at(-1)[1].status, "closed");
});

test("no reconnect after 4403: connect() rejects with forbidden", async () => {
  const { client, clock, sockets } = makeClient();
  const events = record(client, clock, ["connection", "error"]);
  const p = client.connect();
  await flush();
  sockets[0].open();
  sockets[0].serverClose(4403, "workspace not allowed");
  await assert.rejects(p, { code: "forbidden" });
  clock.advance(600000);
  await flush();
  assert.equal(sockets.length, 1);
  assert.deepEqual(events.at(-1), ["connection", { status: "closed", code: 4403, reason: "workspace not allowed" }, 0]);
});

test("no reconnect after 4400 either, even once connected", async () => {
  const { client, clock, sockets } = await connected();
  sockets[0].serverClose(4400, "bad message");
  clock.advance(600000);
  await flush();
  assert.equal(sockets.length, 1);
  await assert.rejects(client.acquire(), { code: "disconnected" });
});

test("close() closes with 1000 and stops reconnecting; pending connect() rejects", async () => {
  const { client, clock, sockets, ws } = await connected();
  const events = record(client, clock, ["connection"]);
  client.close();
  assert.deepEqual(ws.closed, { code: 1000, reason: "client closed" });
  ws.serverClose(1000); // handlers were detached: ignored
  clock.advance(600000);
  await flush();
  assert.equal(sockets.length, 1);
  assert.deepEqual(events.map(([, d]) => d.status), ["closed"]);
  assert.equal(clock.timers.size, 0, "no timer left behind");
  // connect() after close() starts afresh
  const again = client.connect();
  await accept(sockets);
  await again;
  assert.equal(sockets.length, 2);
  client.close();

  // close() during a reconnect wait
  const b = makeClient();
  const p = b.client.connect();
  await flush();
  b.sockets[0].serverClose(1006);
  b.client.close();
  await assert.rejects(p, { code: "closed" });
  b.clock.advance(600000);
  await flush();
  assert.equal(b.sockets.length, 1);
});

test("close() while the token function is still running opens no socket", async () => {
  let release;
  const token = () => new Promise((r) => (release = r));
  const { client, sockets } = makeClient({ token });
  client.connect().catch(() => {});
  await flush();
  client.close();
  release("late");
  await flush();
  assert.equal(sockets.length, 0);
});

test("pagehide closes with 1000; pageshow from bfcache reconnects", async () => {
  const win = new EventTarget();
  const { client, clock, sockets, ws } = await connected({ window: win });
  win.dispatchEvent(new Event("pagehide"));
  assert.equal(ws.closed?.code, 1000);
  clock.advance(600000);
  await flush();
  assert.equal(sockets.length, 1, "no reconnect while hidden");
  const show = new Event("pageshow");
  Object.defineProperty(show, "persisted", { value: true });
  win.dispatchEvent(show);
  await flush();
  assert.equal(sockets.length, 2);
  client.close();
  win.dispatchEvent(show);
  await flush();
  assert.equal(sockets.length, 2, "listeners removed by close()");
});

test("unsolicited error message fires an error event", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, ["error"]);
  ws.receive({ type: "error", code: "rate_limited", message: "slow down" });
  assert.deepEqual(events[0][1], { code: "rate_limited", message: "slow down", id: undefined });
});

test("the default URL comes from location", async () => {
  const WS = fakeWebSocketClass();
  const clock = new FakeClock();
  globalThis.location = /** @type {any} */ ({ href: "https://app.example/docs/1" });
  let c;
  try {
    c = new PresenceClient({ workspace: "w", token: "t", WebSocket: WS, storage: null, window: null,
      setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: clock.now });
  } finally {
    delete globalThis.location;
  }
  c.connect().catch(() => {});
  await flush();
  assert.equal(WS.sockets[0].url, "wss://app.example/ws");
  c.close();
});

test("4401 with a token function: gives up after 3 fresh tokens are refused", async () => {
  let calls = 0;
  const { client, clock, sockets } = makeClient({ token: async () => `t${++calls}` });
  const p = client.connect();
  for (let i = 0; i < 4; i++) {
    await flush();
    sockets.at(-1).open();
    sockets.at(-1).serverClose(4401, "bad token");
    clock.advance(10000);
  }
  await assert.rejects(p, { code: "unauthorized" });
  clock.advance(600000);
  await flush();
  assert.equal(sockets.length, 4);
  assert.equal(calls, 4);
});

test("a WebSocket constructor that throws (bad URL, CSP) stops with connect_failed", async () => {
  const Throwing = class { constructor() { throw new SyntaxError("blocked"); } };
  const { client } = makeClient({ WebSocket: Throwing });
  await assert.rejects(client.connect(), { code: "connect_failed", message: "blocked" });
});
