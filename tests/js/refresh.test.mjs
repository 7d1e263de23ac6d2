// Token lifetime: the client sends `refresh` with a new token before `expires_in_ms` runs out, on the same socket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LeaseWatcher, refreshDelay } from "../../static/presence.js";
import { connected, fakeWebSocketClass, FakeClock, flush, record, welcome } from "./helpers.mjs";

/** A welcome telling the token's time left, with a heartbeat too slow for the silence timer to matter here. */
const told = (expiresInMs) => welcome({ heartbeat_ms: 3_600_000, ...(expiresInMs && { expires_in_ms: expiresInMs }) });

/** A token function that counts its calls and says how it was called. */
function tokens() {
  const calls = [];
  const source = async (info) => {
    calls.push(info);
    return `tok-${calls.length}`;
  };
  return { calls, source };
}

test("refreshDelay: a quarter of the lifetime before it ends, at least 1 s and at most 1 min", () => {
  assert.equal(refreshDelay(600_000), 540_000);
  assert.equal(refreshDelay(20_000), 15_000);
  assert.equal(refreshDelay(2_000), 1_000);
  assert.equal(refreshDelay(500), 0);
});

test("a welcome's expires_in_ms is refreshed on the same socket; refreshed re-arms it", async () => {
  const t = tokens();
  const { clock, sockets, ws } = await connected({ token: t.source }, told(20_000));
  assert.equal(t.calls.length, 1);
  clock.advance(14_999);
  await flush();
  assert.equal(ws.last("refresh"), undefined);
  clock.advance(1);
  await flush();
  assert.deepEqual(t.calls.at(-1), { refresh: true });
  const sent = ws.last("refresh");
  assert.deepEqual(sent, { type: "refresh", id: sent.id, token: "tok-2" });
  assert.equal(sockets.length, 1, "no reconnect");
  ws.receive({ type: "refreshed", id: sent.id, expires_in_ms: 600_000 });
  clock.advance(539_999);
  await flush();
  assert.equal(ws.sent.filter((m) => m.type === "refresh").length, 1);
  clock.advance(1);
  await flush();
  assert.equal(ws.last("refresh").token, "tok-3");
  assert.notEqual(ws.last("refresh").id, sent.id);
});

test("no refresh without expires_in_ms, or with a string token", async () => {
  const t = tokens();
  const plain = await connected({ token: t.source }, told(0));
  const fixed = await connected({ token: "tok" }, told(20_000));
  for (const { clock } of [plain, fixed]) clock.advance(60_000);
  await flush();
  assert.equal(plain.ws.last("refresh"), undefined);
  assert.equal(fixed.ws.last("refresh"), undefined);
  assert.equal(t.calls.length, 1);
});

test("a refused refresh is an error event; the server's 4401 at expiry reconnects with a fresh token", async () => {
  const t = tokens();
  const { client, clock, sockets, ws } = await connected({ token: t.source }, told(4_000));
  const events = record(client, clock, ["error"]);
  clock.advance(3_000);
  await flush();
  const sent = ws.last("refresh");
  ws.receive({ type: "error", code: "bad_token", message: "the new token is for another user", id: sent.id });
  assert.deepEqual(events.map(([, d]) => d.code), ["bad_token"]);
  assert.equal(sockets.length, 1);
  ws.serverClose(4401, "token expired");
  clock.advance(0);
  await flush();
  assert.equal(sockets.length, 2);
  assert.deepEqual(t.calls.at(-1), { refresh: true });
});

test("a socket that went away takes its refresh along: the next one waits for its own welcome", async () => {
  const t = tokens();
  const { clock, sockets, ws } = await connected({ token: t.source, random: () => 0.5 }, told(20_000));
  ws.serverClose(1006, "gone");
  clock.advance(300); // the reconnect delay
  await flush();
  const next = sockets.at(-1);
  assert.notEqual(next, ws);
  next.open();
  clock.advance(20_000);
  await flush();
  assert.equal(next.last("refresh"), undefined);
  assert.equal(ws.last("refresh"), undefined);
  next.receive(told(8_000));
  clock.advance(6_000);
  await flush();
  assert.equal(next.last("refresh").type, "refresh");
});

test("a watcher refreshes its token from the expires_in_ms of leases", async () => {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const t = tokens();
  const watcher = new LeaseWatcher({
    token: t.source, url: "ws://example.test/ws", WebSocket: WS, random: () => 0.5,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, workspaces: ["a"],
  });
  const p = watcher.connect();
  await flush();
  const ws = WS.sockets.at(-1);
  ws.open();
  ws.receive({ type: "leases", leases: { a: { holder: null, viewers: 0 } }, expires_in_ms: 8_000 });
  await p;
  clock.advance(6_000);
  await flush();
  assert.equal(ws.last("refresh").token, "tok-2");
  assert.equal(WS.sockets.length, 1);
});
