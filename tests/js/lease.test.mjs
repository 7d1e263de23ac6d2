// Lease handling of PresenceClient: requests by id, unsolicited grants, local deadline, rejoin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { restartGraceMs } from "../../static/presence.js";
import { accept, acceptLikeServer, connected, flush, record, state, welcome, BOB, ME } from "./helpers.mjs";

test("acquire/busy/queued resolve by request id, in any order", async () => {
  const { client, ws } = await connected();
  const a = client.acquire();
  const b = client.acquire({ wait: true });
  const c = client.acquire();
  const [ma, mb, mc] = ws.sent.filter((m) => m.type === "acquire");
  assert.equal(ma.wait, undefined);
  assert.equal(mb.wait, true);
  assert.ok(ma.id != null && ma.id !== mb.id && mb.id !== mc.id);
  const holder = { user: BOB, since_ms: 1, tabs: 1 };
  ws.receive({ type: "queued", id: mb.id, position: 2 });
  ws.receive({ type: "busy", id: "no-such-request", holder });
  ws.receive({ type: "busy", id: mc.id, holder });
  ws.receive({ type: "acquired", id: ma.id, fence: 9, ttl_ms: 10000 });
  assert.deepEqual(await a, { acquired: true, fence: 9, rejoined: false });
  assert.deepEqual(await b, { acquired: false, queued: true, position: 2 });
  assert.deepEqual(await c, { acquired: false, holder });
  assert.equal(client.holding, true);
  assert.equal(client.fence, 9);
});

test("acquire({wait}) resolves queued, then an acquired event fires when our turn comes", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, ["queued", "acquired"]);
  const p = client.acquire({ wait: true });
  const { id } = ws.last("acquire");
  ws.receive({ type: "queued", id, position: 1 });
  assert.deepEqual(await p, { acquired: false, queued: true, position: 1 });
  assert.equal(client.holding, false);
  ws.receive({ type: "acquired", fence: 3, ttl_ms: 10000 });
  assert.deepEqual(events.map(([t]) => t), ["queued", "acquired"]);
  assert.equal(client.holding, true);
  assert.equal(client.canEdit, true);
});

test("takeover sends takeover and resolves on acquired; errors reject with .code", async () => {
  const { client, ws } = await connected();
  const p = client.takeover();
  const m = ws.last("takeover");
  assert.ok(m.id != null);
  ws.receive({ type: "acquired", id: m.id, fence: 12, ttl_ms: 10000 });
  assert.deepEqual(await p, { acquired: true, fence: 12, rejoined: false });
  const q = client.takeover();
  ws.receive({ type: "error", id: ws.last("takeover").id, code: "forbidden", message: "no takeover" });
  await assert.rejects(q, { code: "forbidden", message: "no takeover" });
});

test("release resolves on released with its id and fires released", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 4, ttl_ms: 10000 });
  const events = record(client, clock, ["released", "canedit"]);
  const p = client.release();
  const { id } = ws.last("release");
  ws.receive({ type: "released", id, reason: "released" });
  assert.deepEqual(await p, { released: true, reason: "released" });
  assert.equal(client.holding, false);
  assert.equal(client.canEdit, false);
  assert.equal(client.fence, 4, "fence keeps its last known value");
  assert.deepEqual(events.map(([t, d]) => [t, d.reason ?? d.canEdit]), [["canedit", false], ["released", "released"]]);
});

test("requests while disconnected reject; pending requests reject when the connection drops", async () => {
  const { client, ws, clock, sockets } = await connected();
  const p = client.acquire();
  ws.serverClose(1006);
  await assert.rejects(p, { code: "disconnected" });
  await assert.rejects(client.acquire(), { code: "disconnected" });
  await assert.rejects(client.release(), { code: "disconnected" });
  clock.advance(0);
  await accept(sockets);
  const q = client.acquire();
  sockets.at(-1).receive({ type: "acquired", id: sockets.at(-1).last("acquire").id, fence: 1, ttl_ms: 1000 });
  assert.equal((await q).acquired, true);
});

test("unsolicited acquired (another tab of ours, reload within grace) makes us holder", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, ["acquired", "canedit"]);
  ws.receive({ type: "acquired", fence: 21, ttl_ms: 10000, rejoined: true });
  assert.equal(client.holding, true);
  assert.equal(client.fence, 21);
  assert.equal(client.canEdit, true);
  assert.deepEqual(events.map(([t]) => t), ["canedit", "acquired"]);
  assert.equal(events[1][1].rejoined, true);
  assert.equal(events[1][1].fence, 21);
});

test("canEdit turns false exactly at the local deadline while disconnected, with a canedit event", async () => {
  const { client, clock, ws } = await connected();
  clock.advance(100);
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 }); // deadline = 100 + 10000 - 1000
  const events = record(client, clock, ["canedit"]);
  clock.advance(2000);
  ws.serverClose(1006); // network gone; reconnects keep failing
  assert.equal(client.connected, false);
  assert.equal(client.holding, true);
  clock.advance(9099 - clock.t);
  assert.equal(client.canEdit, true);
  assert.equal(client.leaseRemainingMs, 1);
  assert.deepEqual(events, []);
  clock.advance(1);
  assert.equal(client.canEdit, false);
  assert.deepEqual(events, [["canedit", { canEdit: false }, 9100]]);
});

test("a 1012 that says the lease is kept for the restart moves the local deadline to that window", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 }); // deadline 9000
  const events = record(client, clock, ["canedit", "released"]);
  clock.advance(2000);
  ws.serverClose(1012, "server restarting, reconnect; lease kept for 25000 ms"); // reconnects keep failing
  assert.equal(client.holding, true);
  clock.advance(25999 - clock.t); // 2000 + 25000 - the margin (1000)
  assert.equal(client.canEdit, true);
  assert.deepEqual(events, []);
  clock.advance(1);
  assert.equal(client.canEdit, false);
  assert.deepEqual(events, [["canedit", { canEdit: false }, 26000]]);
});

test("a 1012 that keeps nothing, or less than the deadline we have, leaves the deadline as it was", async () => {
  for (const reason of ["server restarting, reconnect", "server restarting, reconnect; lease kept for 3000 ms",
    "restart", "lease kept for 25000 ms but not as the server says it"]) {
    const { client, clock, ws } = await connected();
    ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 }); // deadline 9000
    ws.serverClose(1012, reason);
    clock.advance(8999);
    assert.equal(client.canEdit, true, reason);
    clock.advance(1);
    assert.equal(client.canEdit, false, reason);
  }
});

test("only a 1012 while holding moves the deadline: another code, or no lease, is not a restart's", async () => {
  const other = await connected();
  other.ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 });
  other.ws.serverClose(1011, "server restarting, reconnect; lease kept for 25000 ms");
  other.clock.advance(9000);
  assert.equal(other.client.canEdit, false);
  const idle = await connected();
  idle.ws.serverClose(1012, "server restarting, reconnect; lease kept for 25000 ms");
  assert.equal(idle.client.holding, false);
  assert.equal(idle.client.leaseRemainingMs, 0);
});

test("restartGraceMs reads the window of a restart's close reason, and nothing else", () => {
  assert.equal(restartGraceMs("server restarting, reconnect; lease kept for 25000 ms"), 25000);
  assert.equal(restartGraceMs("server restarting, reconnect"), 0);
  assert.equal(restartGraceMs(""), 0);
  assert.equal(restartGraceMs(undefined), 0);
  assert.equal(restartGraceMs("; lease kept for -5 ms"), 0);
  assert.equal(restartGraceMs("; lease kept for 25000 ms, more"), 0);
});

test("canEdit turns false at the deadline while connected when no ping renews it", async () => {
  const { client, clock, ws } = await connected({}, welcome({ heartbeat_ms: 60000 }));
  const events = record(client, clock, ["canedit"]);
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 2000 }); // margin 200 -> deadline 1800
  clock.advance(1799);
  assert.equal(client.canEdit, true);
  clock.advance(1);
  assert.equal(client.canEdit, false);
  assert.deepEqual(events.map(([, d, t]) => [d.canEdit, t]), [[true, 0], [false, 1800]]);
});

test("a computer that slept past the deadline: canEdit is false on waking, its event within a second", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 }); // deadline 9000 on both clocks
  const events = record(client, clock, ["canedit"]);
  clock.advance(2000);
  ws.receive({ type: "ping", n: 1 }); // the connection is alive (no lease time in it)
  clock.sleep(60000); // monotonic clock and timers stand still, the wall clock moves on
  assert.equal(client.canEdit, false, "the wall-clock deadline has passed");
  assert.equal(client.leaseRemainingMs, 0);
  assert.equal(client.holding, true);
  clock.advance(1000); // the periodic deadline check runs after waking
  assert.deepEqual(events, [["canedit", { canEdit: false }, 3000]]);
  ws.receive({ type: "ping", n: 2, ttl_ms: 10000 }); // the server still had it (it renewed): editing resumes
  assert.equal(client.canEdit, true);
});

test("a wall clock set back does not extend the lease: the monotonic deadline still ends it", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 }); // deadline 9000
  const events = record(client, clock, ["canedit"]);
  ws.serverClose(1006);
  clock.step(-3_600_000);
  clock.advance(8999);
  assert.equal(client.canEdit, true);
  assert.equal(client.leaseRemainingMs, 1);
  clock.advance(1);
  assert.equal(client.canEdit, false);
  assert.deepEqual(events, [["canedit", { canEdit: false }, 9000]]);
});

test("a ping with ttl_ms pushes the local deadline while holding", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 }); // deadline 9000
  clock.advance(800);
  ws.receive({ type: "ping", n: 1, ttl_ms: 10000 }); // deadline 9800
  clock.advance(800);
  ws.receive({ type: "ping", n: 2, ttl_ms: 10000 }); // deadline 10600
  ws.serverClose(1006);
  clock.advance(10599 - clock.t);
  assert.equal(client.canEdit, true);
  clock.advance(1);
  assert.equal(client.canEdit, false);
});

test("ping ttl_ms is ignored when not holding", async () => {
  const { client, ws } = await connected();
  ws.receive({ type: "ping", n: 1, ttl_ms: 10000 });
  assert.equal(client.holding, false);
  assert.equal(client.canEdit, false);
});

test("released from the server (taken over) ends holding and canEdit", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 });
  const events = record(client, clock, ["released"]);
  ws.receive({ type: "released", reason: "taken_over", by: BOB });
  assert.equal(client.holding, false);
  assert.equal(client.canEdit, false);
  assert.deepEqual(events[0][1], { reason: "taken_over", by: BOB, id: undefined });
  clock.advance(20000);
  assert.equal(client.canEdit, false);
});

test("after a reconnect while holding, the server's acquired{rejoined} restores the lease (no acquire sent)", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 });
  ws.serverClose(1012, "restart");
  clock.advance(0);
  const holder = { user: ME, fence: 7, since_ms: 1, tabs: 1 };
  const ws2 = await accept(sockets, welcome({ conn: "c2", state: state({ holder }) }));
  assert.equal(ws2.last("acquire"), undefined, "the server's join already rejoined the lease");
  assert.equal(client.holding, true);
  ws2.receive({ type: "acquired", fence: 7, ttl_ms: 10000, rejoined: true });
  assert.equal(client.fence, 7);
  assert.equal(client.canEdit, true);
  await flush();
  assert.equal(client.holding, true);
});

test("a reconnect while holding fires exactly one acquired: the server's, with the same fence and a new deadline", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 }); // deadline 9000
  const events = record(client, clock, ["acquired", "released", "canedit"]);
  const holder = { user: ME, fence: 7, since_ms: 1, tabs: 1 };
  let last = ws;
  for (const at of [3000, 6000]) { // two reconnects, each rejoining the same lease
    clock.advance(at - clock.t);
    last.serverClose(1012, "restart");
    clock.advance(0);
    last = await acceptLikeServer(sockets, welcome({ state: state({ holder }) }));
    await flush(); // the reply to any acquire the client sent would arrive now
    assert.equal(last.last("acquire"), undefined);
  }
  // One acquired per rejoin, and nothing else: no released, canEdit never flipped.
  assert.deepEqual(events.map(([t, d, when]) => [t, d.fence, d.rejoined, when]), [
    ["acquired", 7, true, 3000], ["acquired", 7, true, 6000],
  ]);
  assert.equal(events[0][1].id, undefined);
  assert.equal(client.holding, true);
  assert.equal(client.fence, 7);
  // The last confirmation (at 6000, ttl 10000) set the deadline: 6000 + 10000 - 1000.
  clock.advance(14999 - clock.t);
  assert.equal(client.canEdit, true);
  clock.advance(1);
  assert.equal(client.canEdit, false);
});

test("a lease that expired while we were away: no acquired after the welcome, released{expired}, fence kept", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 });
  ws.serverClose(1006);
  const events = record(client, clock, ["acquired", "released", "canedit"]);
  clock.advance(0);
  const ws2 = await acceptLikeServer(sockets, welcome()); // no holder: the server sends no acquired
  await flush();
  assert.equal(ws2.last("acquire"), undefined);
  assert.equal(client.holding, false);
  assert.equal(client.canEdit, false);
  assert.equal(client.leaseRemainingMs, 0);
  assert.equal(client.fence, 7, "fence keeps its last known value");
  assert.deepEqual(events.map(([t, d]) => [t, d.reason ?? d.canEdit]), [["canedit", false], ["released", "expired"]]);
  clock.advance(20000);
  assert.equal(client.canEdit, false);
});

test("a lease taken over while we were away: released{taken_over}, canEdit false, our fence kept", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 });
  ws.serverClose(1006);
  const events = record(client, clock, ["acquired", "released"]);
  clock.advance(0);
  const holder = { user: BOB, fence: 8, since_ms: 1, tabs: 1 };
  const ws2 = await acceptLikeServer(sockets, welcome({ state: state({ holder }) }));
  await flush();
  assert.equal(ws2.last("acquire"), undefined);
  assert.equal(client.holding, false);
  assert.equal(client.canEdit, false);
  assert.equal(client.fence, 7, "Bob's fence is not ours");
  assert.deepEqual(events.map(([t, d]) => [t, d]), [["released", { reason: "taken_over", by: BOB }]]);
});

test("after a reconnect, another holder in welcome means taken over (no acquire sent)", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 });
  ws.serverClose(1006);
  const events = record(client, clock, ["released"]);
  clock.advance(0);
  const holder = { user: BOB, fence: 8, since_ms: 1, tabs: 1 };
  const ws2 = await accept(sockets, welcome({ state: state({ holder }) }));
  assert.equal(ws2.last("acquire"), undefined);
  assert.equal(client.holding, false);
  assert.deepEqual(events.map(([, d]) => d), [{ reason: "taken_over", by: BOB }]);
});

test("after a reconnect, no holder in welcome means expired", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 });
  ws.serverClose(1006);
  const events = record(client, clock, ["released"]);
  clock.advance(0);
  const ws2 = await accept(sockets);
  assert.equal(ws2.last("acquire"), undefined);
  assert.equal(client.holding, false);
  assert.deepEqual(events.map(([, d]) => d.reason), ["expired"]);
});

test("a takeover right after the rejoin: the server's released ends the lease", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 });
  ws.serverClose(1006);
  clock.advance(0);
  const holder = { user: ME, fence: 7, since_ms: 1, tabs: 1 };
  const ws2 = await acceptLikeServer(sockets, welcome({ state: state({ holder }) }));
  const events = record(client, clock, ["released"]);
  ws2.receive({ type: "released", reason: "taken_over", by: BOB });
  await flush();
  assert.equal(client.holding, false);
  assert.equal(client.canEdit, false);
  assert.deepEqual(events.map(([, d]) => d), [{ reason: "taken_over", by: BOB, id: undefined }]);
});

test("a queued wait is renewed after a reconnect", async () => {
  const { client, clock, ws, sockets } = await connected();
  const p = client.acquire({ wait: true });
  ws.receive({ type: "queued", id: ws.last("acquire").id, position: 3 });
  await p;
  ws.serverClose(1006);
  clock.advance(0);
  const ws2 = await accept(sockets);
  assert.equal(ws2.last("acquire")?.wait, true);
});

test("a waiter whose user got the lease meanwhile is not re-queued: one acquired, from the server's join", async () => {
  const { client, clock, ws, sockets } = await connected();
  const p = client.acquire({ wait: true });
  ws.receive({ type: "queued", id: ws.last("acquire").id, position: 1 });
  await p;
  ws.serverClose(1006);
  const events = record(client, clock, ["acquired", "queued"]);
  clock.advance(0);
  const holder = { user: ME, fence: 9, since_ms: 1, tabs: 2 }; // our other tab holds it (scope "user")
  const ws2 = await acceptLikeServer(sockets, welcome({ scope: "user", state: state({ holder }) }));
  await flush();
  assert.equal(ws2.last("acquire"), undefined);
  assert.deepEqual(events.map(([t, d]) => [t, d.fence, d.rejoined]), [["acquired", 9, true]]);
  assert.equal(client.holding, true);
  assert.equal(client.fence, 9);
  assert.equal(client.queuePosition, 0);
  assert.equal(client.canEdit, true);
});

test("in tab scope a waiter re-queues while another tab of its user holds the lease", async () => {
  const { client, clock, ws, sockets } = await connected({}, welcome({ scope: "tab" }));
  const p = client.acquire({ wait: true });
  ws.receive({ type: "queued", id: ws.last("acquire").id, position: 1 });
  await p;
  ws.serverClose(1006);
  const events = record(client, clock, ["acquired", "queued"]);
  clock.advance(0);
  const holder = { user: ME, fence: 9, since_ms: 1, tabs: 2 }; // not this tab's grant
  const ws2 = await acceptLikeServer(sockets, welcome({ scope: "tab", state: state({ holder }) }));
  assert.equal(ws2.last("acquire")?.wait, true);
  await flush();
  assert.deepEqual(events.map(([t, d]) => [t, d.position]), [["queued", 1]]);
  assert.equal(client.holding, false);
  assert.equal(client.queuePosition, 1);
});

test("status() is sent with an id and re-sent after a reconnect", async () => {
  const { client, clock, ws, sockets } = await connected();
  assert.equal(client.status({ active: false, meta: { cursor: 3 } }), true);
  const m = ws.last("status");
  assert.ok(m.id != null);
  assert.deepEqual({ ...m, id: 0 }, { type: "status", id: 0, active: false, meta: { cursor: 3 } });
  ws.serverClose(1006);
  assert.equal(client.status({ active: true }), false);
  clock.advance(0);
  const ws2 = await accept(sockets);
  assert.equal(ws2.last("status").active, true);
});
