// Named locks in PresenceClient: requests carry `lock`, each lock has its own holding, fence and local deadline,
// events say which lock, and a reconnect rejoins (or reports lost) every lock held.
import { test } from "node:test";
import assert from "node:assert/strict";
import { applyUpdate } from "../../static/presence.js";
import { accept, acceptLikeServer, connected, flush, record, state, welcome, BOB, ME } from "./helpers.mjs";

const LEASE_EVENTS = ["acquired", "busy", "queued", "asked", "requested", "declined", "released", "canedit"];

test("every request takes {lock}; the default lease's frames carry none", async () => {
  const { client, ws } = await connected();
  void client.acquire({ lock: "title" });
  void client.acquire({ lock: "title", wait: true });
  void client.takeover({ lock: "title" });
  void client.release({ lock: "title" });
  void client.request("please", { lock: "title" });
  void client.decline({ lock: "title" });
  void client.acquire();
  void client.request("please");
  const sent = ws.sent.slice(1).map(({ id: _id, ...m }) => m);
  assert.deepEqual(sent, [
    { type: "acquire", lock: "title" },
    { type: "acquire", wait: true, lock: "title" },
    { type: "takeover", lock: "title" },
    { type: "release", lock: "title" },
    { type: "request", message: "please", lock: "title" },
    { type: "decline", lock: "title" },
    { type: "acquire" },
    { type: "request", message: "please" },
  ]);
  assert.ok(ws.sent.slice(1).every((m) => typeof m.id === "string"));
});

test("a lock id outside the rules is refused before anything is sent", async () => {
  const { client, ws } = await connected();
  const sent = ws.sent.length;
  for (const bad of ["a b", "x".repeat(65), "tab/1", "é"]) {
    await assert.rejects(client.acquire({ lock: bad }), { code: "bad_message" });
  }
  await assert.rejects(client.takeover({ lock: /** @type {any} */ (7) }), { code: "bad_message" });
  assert.equal(ws.sent.length, sent);
  void client.acquire({ lock: "A-z_0.9:x" }); // every allowed character
  assert.equal(ws.last("acquire").lock, "A-z_0.9:x");
});

test("a named lock is held apart from the lease: its own fence, canEditLock, and events with `lock`", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, LEASE_EVENTS);
  const p = client.acquire({ lock: "title" });
  ws.receive({ type: "acquired", id: ws.last("acquire").id, lock: "title", fence: 41, ttl_ms: 10000 });
  assert.deepEqual(await p, { acquired: true, fence: 41, rejoined: false });
  assert.equal(client.canEditLock("title"), true);
  assert.equal(client.lockFence("title"), 41);
  assert.equal(client.lockRemainingMs("title"), 9000);
  // the workspace's lease is untouched
  assert.deepEqual([client.holding, client.canEdit, client.fence], [false, false, null]);
  assert.equal(client.canEditLock(""), false);
  assert.equal(client.canEditLock("body"), false);
  assert.deepEqual(events.map(([t, d]) => [t, d.lock]), [["canedit", "title"], ["acquired", "title"]]);
  assert.deepEqual(events[1][1], { acquired: true, fence: 41, rejoined: false, ttl_ms: 10000, id: ws.last("acquire").id, lock: "title" });
  // now the lease too: its events carry no lock
  ws.receive({ type: "acquired", fence: 7, ttl_ms: 10000 });
  assert.equal(events.at(-1)[1].lock, undefined);
  assert.equal("lock" in events.at(-1)[1], false);
  assert.equal(client.canEditLock(""), true);
  assert.equal(client.lockFence(""), 7);
});

test("busy, queued, asked, requested, declined and released say which lock", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, LEASE_EVENTS);
  const holder = { user: BOB, since_ms: 1, tabs: 1 };
  ws.receive({ type: "busy", lock: "a", holder });
  ws.receive({ type: "queued", lock: "b", position: 2 });
  ws.receive({ type: "asked", lock: "c", holder, deadline_ms: 3000 });
  ws.receive({ type: "declined", lock: "c", reason: "cooldown", by: BOB });
  ws.receive({ type: "acquired", lock: "d", fence: 1, ttl_ms: 10000 });
  ws.receive({ type: "requested", lock: "d", by: BOB, deadline_ms: 5000 });
  ws.receive({ type: "released", lock: "d", reason: "taken_over", by: BOB });
  assert.deepEqual(events.map(([t, d]) => [t, d.lock]), [
    ["busy", "a"], ["queued", "b"], ["asked", "c"], ["declined", "c"], ["canedit", "d"], ["acquired", "d"],
    ["requested", "d"], ["canedit", "d"], ["released", "d"],
  ]);
  assert.deepEqual(events[3][1], { reason: "cooldown", by: BOB, lock: "c" });
  assert.deepEqual(events[6][1], { by: BOB, message: "", deadline_ms: 5000, lock: "d" });
  assert.equal(client.canEditLock("d"), false);
  assert.equal(client.lockFence("d"), null, "a lock no longer held is forgotten");
  assert.equal(client.queuePosition, 0, "the queue of lock b is not the lease's");
});

test("each lock has its own local deadline, moved by ping.ttls; ttl_ms moves only the lease's", async () => {
  const { client, clock, ws } = await connected({}, welcome({ heartbeat_ms: 60000 }));
  const events = record(client, clock, ["canedit"]);
  ws.receive({ type: "acquired", lock: "a", fence: 1, ttl_ms: 2000 }); // deadline 1800
  ws.receive({ type: "acquired", lock: "b", fence: 2, ttl_ms: 2000 }); // deadline 1800
  ws.receive({ type: "acquired", fence: 3, ttl_ms: 2000 }); // the lease: deadline 1800
  clock.advance(1000);
  ws.receive({ type: "ping", n: 1, ttl_ms: 2000, ttls: { a: 2000, zzz: 2000 } }); // lease and a: 2800
  assert.equal(client.lockRemainingMs("a"), 1800);
  assert.equal(client.lockRemainingMs("b"), 800);
  assert.equal(client.lockRemainingMs("zzz"), 0, "a lock we do not hold gets no deadline from a ping");
  clock.advance(800); // t = 1800: b's deadline
  assert.deepEqual([client.canEditLock("a"), client.canEditLock("b"), client.canEdit], [true, false, true]);
  assert.deepEqual(events.filter(([, d]) => !d.canEdit).map(([, d, t]) => [d.lock, t]), [["b", 1800]]);
  clock.advance(1000); // t = 2800: a's and the lease's
  assert.deepEqual([client.canEditLock("a"), client.canEdit], [false, false]);
  const ended = events.filter(([, d]) => !d.canEdit).map(([, d, t]) => `${d.lock ?? "(lease)"}@${t}`);
  assert.deepEqual(ended.sort(), ["(lease)@2800", "a@2800", "b@1800"]);
});

test("a named lock's deadline ends editing while disconnected, as the lease's does", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", lock: "title", fence: 1, ttl_ms: 10000 }); // deadline 9000
  ws.serverClose(1006);
  clock.advance(8999);
  assert.equal(client.canEditLock("title"), true);
  clock.advance(1);
  assert.equal(client.canEditLock("title"), false);
});

test("state.locks fills client.locks; an update's locks change it (null frees a lock)", async () => {
  const alice = { user: ME, since_ms: 1, tabs: 1, fence: 10 };
  const bob = { user: BOB, since_ms: 2, tabs: 1, fence: 11 };
  const { client, ws } = await connected({}, welcome({ state: state({ locks: { title: alice } }) }));
  assert.deepEqual([...client.locks], [["title", alice]]);
  ws.receive({ type: "update", workspace: "doc-1", seq: 2, base: 1, locks: { body: bob } });
  assert.deepEqual([...client.locks].sort(), [["body", bob], ["title", alice]]);
  ws.receive({ type: "update", workspace: "doc-1", seq: 3, base: 2, locks: { title: null } });
  assert.deepEqual([...client.locks], [["body", bob]]);
  ws.receive({ type: "update", workspace: "doc-1", seq: 4, base: 3, locks: { body: null } });
  assert.equal(client.locks.size, 0);
  assert.equal("locks" in client.state, false, "absent when no named lock is held, as in a state");
  const kept = client.locks;
  ws.receive({ type: "update", workspace: "doc-1", seq: 5, base: 4, left: ["u9"] });
  assert.equal(client.locks, kept, "the map stays the same object while the locks do");
});

test("applyUpdate: locks merge into the state's, and the state it was given is not changed", () => {
  const a = { user: ME, since_ms: 1, tabs: 1, fence: 1 };
  const b = { user: BOB, since_ms: 1, tabs: 1, fence: 2 };
  const before = state({ locks: { a } });
  const after = applyUpdate(before, { type: "update", workspace: "doc-1", seq: 2, base: 1, locks: { a: null, b } });
  assert.deepEqual(after.locks, { b });
  assert.deepEqual(before.locks, { a });
  const same = applyUpdate(before, { type: "update", workspace: "doc-1", seq: 2, base: 1 });
  assert.equal(same.locks, before.locks);
});

test("after a reconnect, each named lock still ours is rejoined by the server; the others are reported", async () => {
  const { client, clock, ws, sockets } = await connected();
  ws.receive({ type: "acquired", lock: "kept", fence: 5, ttl_ms: 10000 });
  ws.receive({ type: "acquired", lock: "taken", fence: 6, ttl_ms: 10000 });
  ws.receive({ type: "acquired", lock: "gone", fence: 7, ttl_ms: 10000 });
  ws.serverClose(1012, "restart");
  const events = record(client, clock, ["acquired", "released"]);
  clock.advance(0);
  const locks = { kept: { user: ME, fence: 5, since_ms: 1, tabs: 1 }, taken: { user: BOB, fence: 9, since_ms: 1, tabs: 1 } };
  const ws2 = await accept(sockets, welcome({ conn: "c2", state: state({ locks }) }));
  assert.equal(ws2.last("acquire"), undefined, "nothing is asked for: the server's join rejoins");
  assert.deepEqual(events.map(([t, d]) => [t, d.lock, d.reason, d.by]), [
    ["released", "taken", "taken_over", BOB], ["released", "gone", "expired", undefined],
  ]);
  assert.equal(client.canEditLock("kept"), true, "runs on the deadline it had until the server confirms");
  ws2.receive({ type: "acquired", lock: "kept", fence: 5, ttl_ms: 10000, rejoined: true });
  assert.deepEqual(events.at(-1)[1].rejoined, true);
  assert.deepEqual([client.canEditLock("kept"), client.canEditLock("taken"), client.canEditLock("gone")], [true, false, false]);
});

test("a named lock waited for is waited for again after a reconnect, unless our user got it meanwhile", async () => {
  const { client, clock, ws, sockets } = await connected();
  for (const lock of ["x", "y"]) {
    const p = client.acquire({ lock, wait: true });
    ws.receive({ type: "queued", id: ws.last("acquire").id, lock, position: 1 });
    await p;
  }
  ws.serverClose(1006);
  clock.advance(0);
  const locks = { y: { user: ME, fence: 3, since_ms: 1, tabs: 2 } }; // our other tab holds y (scope user)
  const ws2 = await acceptLikeServer(sockets, welcome({ scope: "user", state: state({ locks }) }));
  await flush();
  const again = ws2.sent.filter((m) => m.type === "acquire").map(({ id: _id, ...m }) => m);
  assert.deepEqual(again, [{ type: "acquire", wait: true, lock: "x" }]);
});

test("a request for a named lock withdrawn by a dropped connection fires declined{cancelled, lock}", async () => {
  const { client, clock, ws } = await connected();
  const p = client.request("", { lock: "title" });
  ws.receive({ type: "asked", id: ws.last("request").id, lock: "title", holder: { user: BOB, since_ms: 1, tabs: 1 }, deadline_ms: 1000 });
  await p;
  const events = record(client, clock, ["declined"]);
  ws.serverClose(1006);
  assert.deepEqual(events.map(([, d]) => d), [{ reason: "cancelled", lock: "title" }]);
});

test("giving up (4403) loses every lock held; close() ends them without released", async () => {
  const a = await connected();
  a.ws.receive({ type: "acquired", lock: "t", fence: 1, ttl_ms: 10000 });
  a.ws.receive({ type: "acquired", fence: 2, ttl_ms: 10000 });
  const events = record(a.client, a.clock, ["released"]);
  a.ws.serverClose(4403, "forbidden");
  assert.deepEqual(events.map(([, d]) => [d.lock, d.reason]).sort(), [["t", "lost"], [undefined, "lost"]].sort());
  const b = await connected();
  b.ws.receive({ type: "acquired", lock: "t", fence: 1, ttl_ms: 10000 });
  const closing = record(b.client, b.clock, ["released", "canedit"]);
  b.client.close();
  assert.deepEqual(closing.map(([t, d]) => [t, d.lock, d.canEdit]), [["canedit", "t", false]]);
  assert.equal(b.client.canEditLock("t"), false);
});

test("a restart's 1012 grace moves the lease's deadline only: a named lock keeps its own", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 10000 }); // deadline 9000
  ws.receive({ type: "acquired", lock: "title", fence: 6, ttl_ms: 10000 }); // deadline 9000
  ws.serverClose(1012, "server restarting, reconnect; lease kept for 25000 ms");
  clock.advance(9000);
  assert.deepEqual([client.canEdit, client.canEditLock("title")], [true, false]);
});
