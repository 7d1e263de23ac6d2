// Presence meta: setMeta() shares what a tab is doing, at most one status per 50 ms with the latest meta,
// sent again after a reconnect; each viewer's `presence` arrives in states and updates.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_META_BYTES, META_INTERVAL_MS } from "../../static/presence.js";
import { accept, connected, makeClient, state, welcome, BOB, ME } from "./helpers.mjs";

const metas = (ws) => ws.sent.filter((m) => m.type === "status").map((m) => m.meta);

test("the first meta goes at once; later ones at most every 50 ms, the latest winning", async () => {
  assert.equal(META_INTERVAL_MS, 50);
  const { client, clock, ws } = await connected();
  client.setMeta({ cursor: 1 });
  assert.deepEqual(metas(ws), [{ cursor: 1 }]);
  assert.ok(ws.last("status").id != null);
  clock.advance(10);
  client.setMeta({ cursor: 2 });
  client.setMeta({ cursor: 3 });
  clock.advance(30);
  client.setMeta({ cursor: 4 });
  assert.deepEqual(metas(ws), [{ cursor: 1 }], "nothing more before 50 ms");
  clock.advance(9); // t = 49
  assert.equal(metas(ws).length, 1);
  clock.advance(1); // t = 50
  assert.deepEqual(metas(ws), [{ cursor: 1 }, { cursor: 4 }]);
  clock.advance(500);
  assert.equal(metas(ws).length, 2, "nothing new: nothing sent");
  client.setMeta({ cursor: 5 }); // long after the last: at once
  assert.deepEqual(metas(ws).at(-1), { cursor: 5 });
});

test("a tab that moves 60 times a second sends 20 status frames a second, ending with its last meta", async () => {
  const { client, clock, ws } = await connected({}, welcome({ heartbeat_ms: 60000 }));
  for (let i = 1; i <= 60; i++) {
    client.setMeta({ x: i });
    clock.advance(1000 / 60);
  }
  clock.advance(100);
  const sent = metas(ws);
  assert.ok(sent.length <= 21 && sent.length >= 19, `${sent.length} frames`);
  assert.deepEqual(sent.at(-1), { x: 60 });
  const times = [];
  // every pair of frames is at least 50 ms apart
  ws.sent.length = 0;
  ws.onsent = () => times.push(clock.t);
  for (let i = 0; i < 30; i++) {
    client.setMeta({ y: i });
    clock.advance(7);
  }
  clock.advance(100);
  for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= 50, `${times}`);
});

test("null clears the meta; status({active}) keeps it, and both are re-sent after a reconnect", async () => {
  const { client, clock, ws, sockets } = await connected();
  client.setMeta({ field: "title" });
  assert.equal(client.status({ active: false }), true);
  assert.deepEqual({ ...ws.last("status"), id: 0 }, { type: "status", id: 0, active: false, meta: { field: "title" } });
  ws.serverClose(1006);
  client.setMeta({ field: "body" }); // while away: kept for the reconnect
  clock.advance(0);
  const ws2 = await accept(sockets);
  assert.deepEqual({ ...ws2.last("status"), id: 0 }, { type: "status", id: 0, active: false, meta: { field: "body" } });
  assert.equal(ws2.sent.filter((m) => m.type === "status").length, 1, "one status, not one more from a timer");
  clock.advance(1000);
  assert.equal(ws2.sent.filter((m) => m.type === "status").length, 1);
  client.setMeta(null);
  clock.advance(100);
  assert.equal(ws2.last("status").meta, null);
});

test("a tab that never set anything sends no status on connecting", async () => {
  const { ws } = await connected();
  assert.equal(ws.last("status"), undefined);
});

test("setMeta refuses what the server would: not an object, or over 1 KiB of JSON", async () => {
  const { client, ws } = await connected();
  assert.equal(MAX_META_BYTES, 1024);
  for (const bad of [[1, 2], "x", 3, true, undefined]) {
    assert.throws(() => client.setMeta(/** @type {any} */ (bad)), TypeError);
  }
  const cyclic = {};
  cyclic.self = cyclic;
  assert.throws(() => client.setMeta(cyclic), TypeError);
  // {"s":"…"} is 8 bytes plus the string's UTF-8 bytes
  assert.throws(() => client.setMeta({ s: "é".repeat(509) }), RangeError); // 8 + 1018 = 1026
  client.setMeta({ s: "x".repeat(MAX_META_BYTES - 8) }); // exactly 1 KiB
  assert.equal(metas(ws).length, 1);
});

test("setMeta before connecting is sent with the welcome", async () => {
  const { client, sockets } = makeClient();
  client.setMeta({ cursor: 9 });
  const p = client.connect();
  const ws = await accept(sockets);
  await p;
  assert.deepEqual(metas(ws), [{ cursor: 9 }]);
});

test("viewers' presence arrives in the welcome and in updates, as part of each viewer entry", async () => {
  const alice = { user: ME, tabs: 2, active: true, presence: [
    { conn: "c1", active: true, meta: { field: "title" } }, { conn: "c7", active: false, meta: null },
  ] };
  const { client, ws } = await connected({}, welcome({ state: state({ viewers: [alice] }) }));
  assert.deepEqual(client.state.viewers[0].presence[0].meta, { field: "title" });
  const bob = { user: BOB, tabs: 1, active: true, presence: [{ conn: "c9", active: true, meta: { cursor: 4 } }] };
  ws.receive({ type: "update", workspace: "doc-1", seq: 2, base: 1, joined: [bob] });
  const moved = { ...bob, presence: [{ conn: "c9", active: true, meta: { cursor: 5 } }] };
  ws.receive({ type: "update", workspace: "doc-1", seq: 3, base: 2, viewers: [moved] });
  assert.deepEqual(client.state.viewers.map((v) => [v.user.id, v.presence.map((p) => p.meta)]), [
    ["u1", [{ field: "title" }, null]], ["u2", [{ cursor: 5 }]],
  ]);
});

test("client.conn names this tab's own presence entry, anew after each reconnect", async () => {
  const { client, clock, sockets } = makeClient();
  assert.equal(client.conn, null);
  const p = client.connect();
  const ws = await accept(sockets, welcome({ conn: "s1-7" }));
  await p;
  assert.equal(client.conn, "s1-7");
  ws.serverClose(1006);
  clock.advance(0);
  await accept(sockets, welcome({ conn: "s2-3" }));
  assert.equal(client.conn, "s2-3");
});
