// LeaseWatcher: one connection watching many workspaces' leases (list views).
import { test } from "node:test";
import assert from "node:assert/strict";
import { LeaseWatcher, CLIENT_NAME, MAX_WATCHED, PresenceError } from "../../static/presence.js";
import { fakeWebSocketClass, FakeClock, flush, ME } from "./helpers.mjs";

function makeWatcher(options = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const watcher = new LeaseWatcher({
    token: "secret", url: "ws://example.test/ws", WebSocket: WS, random: () => 0.5,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, workspaces: ["a", "b"], ...options,
  });
  const events = [];
  for (const type of ["lease", "leases", "error", "connection"]) {
    watcher.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  return { watcher, clock, sockets: WS.sockets, events };
}

const held = { holder: { user: ME, since_ms: 5 }, viewers: 2 };
const free = { holder: null, viewers: 0 };

async function opened(ctx) {
  const p = ctx.watcher.connect();
  await flush();
  const ws = ctx.sockets.at(-1);
  ws.open();
  return { p, ws };
}

test("the first frame is watch with the token and the set; leases fill the map and settle connect()", async () => {
  const ctx = makeWatcher();
  const { p, ws } = await opened(ctx);
  assert.deepEqual(ws.sent, [{ type: "watch", token: "secret", workspaces: ["a", "b"], client: CLIENT_NAME }]);
  ws.receive({ type: "leases", leases: { a: held, b: free } });
  const leases = await p;
  assert.equal(leases, ctx.watcher.leases);
  assert.deepEqual([...leases], [["a", held], ["b", free]]);
  assert.equal(ctx.watcher.connected, true);
  assert.deepEqual(ctx.events.map(([t]) => t), ["connection", "connection", "leases"]);
});

test("a lease message updates the map and fires lease; pings are answered", async () => {
  const ctx = makeWatcher();
  const { ws } = await opened(ctx);
  ws.receive({ type: "leases", leases: { a: free, b: free } });
  ws.receive({ type: "lease", workspace: "b", ...held });
  assert.deepEqual(ctx.watcher.leases.get("b"), held);
  assert.deepEqual(ctx.events.at(-1), ["lease", { workspace: "b", ...held }]);
  ws.receive({ type: "lease", workspace: "zzz", ...held }); // not watched (a set just replaced): ignored
  assert.equal(ctx.watcher.leases.has("zzz"), false);
  ws.receive({ type: "ping", n: 7 });
  assert.deepEqual(ws.sent.at(-1), { type: "pong", n: 7 });
});

test("watch() replaces the set and resolves with the answer; forbidden ids come as an error", async () => {
  const ctx = makeWatcher();
  const { ws } = await opened(ctx);
  ws.receive({ type: "leases", leases: { a: free, b: free } });
  const p = ctx.watcher.watch(["b", "c", "c", "secret"]);
  const sent = ws.sent.at(-1);
  assert.deepEqual(sent.workspaces, ["b", "c", "secret"]);
  ws.receive({ type: "error", code: "forbidden", message: "no", workspaces: ["secret"], id: sent.id });
  ws.receive({ type: "leases", leases: { b: free, c: held }, id: sent.id });
  const leases = await p;
  assert.deepEqual([...leases.keys()], ["b", "c"]);
  const error = ctx.events.find(([t]) => t === "error");
  assert.deepEqual(error[1], { code: "forbidden", message: "no", workspaces: ["secret"] });
  assert.throws(() => ctx.watcher.watch(Array.from({ length: MAX_WATCHED + 1 }, (_, i) => `w${i}`)), RangeError);
});

test("reconnects after a drop, watches the current set again and reports what changed meanwhile", async () => {
  const ctx = makeWatcher();
  const { ws } = await opened(ctx);
  ws.receive({ type: "leases", leases: { a: free, b: free } });
  ws.serverClose(1012, "server restarting");
  assert.equal(ctx.watcher.connected, false);
  const reconnecting = ctx.events.at(-1);
  assert.equal(reconnecting[0], "connection");
  assert.equal(reconnecting[1].status, "reconnecting");
  ctx.clock.advance(reconnecting[1].delay);
  await flush();
  const again = ctx.sockets.at(-1);
  assert.notEqual(again, ws);
  again.open();
  assert.deepEqual(again.sent[0].workspaces, ["a", "b"]);
  const before = ctx.events.length;
  again.receive({ type: "leases", leases: { a: held, b: free } });
  const lease = ctx.events.slice(before).filter(([t]) => t === "lease");
  assert.deepEqual(lease, [["lease", { workspace: "a", ...held }]]); // missed while away: reported
});

test("silence for 2.5 heartbeats drops the socket and reconnects", async () => {
  const ctx = makeWatcher({ heartbeatMs: 1000 });
  const { ws } = await opened(ctx);
  ws.receive({ type: "leases", leases: { a: free, b: free } });
  ctx.clock.advance(2400);
  assert.equal(ws.closed, null);
  ctx.clock.advance(200);
  assert.deepEqual(ws.closed, { code: 4000, reason: "heartbeat timeout" });
  ctx.clock.advance(1000);
  await flush();
  assert.equal(ctx.sockets.length, 2);
});

test("4403 gives up; repeated 4401 gives up after refreshing the token; close() stops", async () => {
  const ctx = makeWatcher();
  const { p, ws } = await opened(ctx);
  ws.serverClose(4403, "forbidden");
  await assert.rejects(p, (err) => err instanceof PresenceError && err.code === "forbidden");

  const refreshes = [];
  const auth = makeWatcher({ token: async ({ refresh }) => { refreshes.push(refresh); return "t"; } });
  const done = auth.watcher.connect();
  for (let i = 0; i < 4; i++) {
    await flush(); await flush();
    auth.sockets.at(-1).open();
    auth.sockets.at(-1).serverClose(4401, "bad token");
    auth.clock.advance(60000);
  }
  await assert.rejects(done, (err) => err.code === "unauthorized");
  assert.deepEqual(refreshes, [false, true, true, true]);

  const closing = makeWatcher();
  const { ws: live } = await opened(closing);
  live.receive({ type: "leases", leases: {} });
  closing.watcher.close();
  assert.deepEqual(live.closed, { code: 1000, reason: "client closed" });
});
