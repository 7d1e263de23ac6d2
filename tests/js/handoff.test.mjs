// Wait queue and polite handoff in PresenceClient: request/asked, requested, decline/declined, queuePosition.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_REQUEST_MESSAGE } from "../../static/presence.js";
import { accept, connected, flush, record, BOB, ME } from "./helpers.mjs";

const ALICE_HOLDS = { user: BOB, since_ms: 1, tabs: 1 }; // "the holder" seen from our side (user ME)

test("request(message) sends request with an id and resolves {asked} on asked; an asked event fires", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, ["asked"]);
  const p = client.request("Just a typo, 2 minutes");
  const m = ws.last("request");
  assert.ok(m.id != null);
  assert.deepEqual({ ...m, id: 0 }, { type: "request", id: 0, message: "Just a typo, 2 minutes" });
  ws.receive({ type: "asked", id: m.id, holder: ALICE_HOLDS, deadline_ms: 30000 });
  assert.deepEqual(await p, { asked: true, deadline_ms: 30000, holder: ALICE_HOLDS });
  assert.deepEqual(events.map(([t, d]) => [t, d]), [["asked", { holder: ALICE_HOLDS, deadline_ms: 30000, id: m.id }]]);
  assert.equal(client.holding, false);
});

test("request() without a message sends no message field", async () => {
  const { client, ws } = await connected();
  client.request();
  assert.equal("message" in ws.last("request"), false);
});

test("request() on a free lease resolves {acquired} with the fence and makes us holder", async () => {
  const { client, ws } = await connected();
  const p = client.request("hi");
  ws.receive({ type: "acquired", id: ws.last("request").id, fence: 8, ttl_ms: 10000 });
  assert.deepEqual(await p, { acquired: true, fence: 8, rejoined: false });
  assert.equal(client.holding, true);
  assert.equal(client.canEdit, true);
});

test("request() errors reject with the server's code (request_pending)", async () => {
  const { client, ws } = await connected();
  const p = client.request();
  ws.receive({ type: "error", id: ws.last("request").id, code: "request_pending", message: "someone asked first" });
  await assert.rejects(p, { name: "PresenceError", code: "request_pending" });
});

test("a message over MAX_REQUEST_MESSAGE characters is refused locally, nothing is sent", async () => {
  const { client, ws } = await connected();
  const sent = ws.sent.length;
  await assert.rejects(client.request("x".repeat(MAX_REQUEST_MESSAGE + 1)), { code: "bad_message" });
  assert.equal(ws.sent.length, sent);
  // 500 characters (astral ones count once, as on the server) are fine
  client.request("😀".repeat(MAX_REQUEST_MESSAGE));
  assert.equal(ws.last("request").message.length, MAX_REQUEST_MESSAGE * 2);
});

test("after asked, the holder's answer: an unsolicited acquired makes us holder (Give it)", async () => {
  const { client, clock, ws } = await connected();
  const p = client.request();
  ws.receive({ type: "asked", id: ws.last("request").id, holder: ALICE_HOLDS, deadline_ms: 30000 });
  await p;
  const events = record(client, clock, ["acquired", "declined"]);
  ws.receive({ type: "acquired", fence: 10, ttl_ms: 10000 });
  assert.deepEqual(events.map(([t]) => t), ["acquired"]);
  assert.equal(client.holding, true);
  assert.equal(client.fence, 10);
  // the request is over: a later disconnect does not report it as cancelled
  ws.serverClose(1006);
  assert.deepEqual(events.map(([t]) => t), ["acquired"]);
});

test("after asked, an unsolicited declined fires declined with reason and by (Keep it, timeout)", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, ["declined"]);
  client.request();
  ws.receive({ type: "asked", id: ws.last("request").id, holder: ALICE_HOLDS, deadline_ms: 30000 });
  ws.receive({ type: "declined", reason: "declined", by: BOB });
  client.request();
  ws.receive({ type: "asked", id: ws.last("request").id, holder: ALICE_HOLDS, deadline_ms: 1500 });
  ws.receive({ type: "declined", reason: "timeout" });
  assert.deepEqual(events.map(([, d]) => d), [{ reason: "declined", by: BOB }, { reason: "timeout", by: undefined }]);
  assert.equal(client.holding, false);
});

test("a connection drop while asking fires declined {cancelled} (the server withdraws the request); close() does not", async () => {
  const { client, clock, ws, sockets } = await connected();
  const events = record(client, clock, ["declined"]);
  client.request();
  ws.receive({ type: "asked", id: ws.last("request").id, holder: ALICE_HOLDS, deadline_ms: 30000 });
  ws.serverClose(1006);
  assert.deepEqual(events.map(([, d]) => d), [{ reason: "cancelled" }]);
  clock.advance(0);
  const ws2 = await accept(sockets);
  assert.equal(ws2.last("request"), undefined, "a request is not re-sent after a reconnect");
  client.request();
  ws2.receive({ type: "asked", id: ws2.last("request").id, holder: ALICE_HOLDS, deadline_ms: 30000 });
  client.close();
  assert.equal(events.length, 1);
});

test("release() while asking withdraws the request: resolves {declined, cancelled}, no later cancelled event", async () => {
  const { client, clock, ws } = await connected();
  const events = record(client, clock, ["declined"]);
  client.request();
  ws.receive({ type: "asked", id: ws.last("request").id, holder: ALICE_HOLDS, deadline_ms: 30000 });
  const p = client.release();
  ws.receive({ type: "declined", id: ws.last("release").id, reason: "cancelled" });
  assert.deepEqual(await p, { declined: true, reason: "cancelled" });
  ws.serverClose(1006);
  assert.deepEqual(events, []);
});

test("requested (to the holder) fires requested with by, message and deadline_ms", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 4, ttl_ms: 10000 });
  const events = record(client, clock, ["requested"]);
  ws.receive({ type: "requested", by: BOB, message: "may I?", deadline_ms: 30000 });
  ws.receive({ type: "requested", by: BOB, deadline_ms: 29000 });
  assert.deepEqual(events.map(([, d]) => d), [
    { by: BOB, message: "may I?", deadline_ms: 30000 },
    { by: BOB, message: "", deadline_ms: 29000 },
  ]);
  assert.equal(client.holding, true, "being asked changes nothing by itself");
});

test("decline() sends decline and resolves on its declined reply, without a declined event", async () => {
  const { client, clock, ws } = await connected();
  ws.receive({ type: "acquired", fence: 4, ttl_ms: 10000 });
  ws.receive({ type: "requested", by: BOB, message: "", deadline_ms: 30000 });
  const events = record(client, clock, ["declined", "released"]);
  const p = client.decline();
  const m = ws.last("decline");
  assert.ok(m.id != null);
  assert.deepEqual(Object.keys(m).sort(), ["id", "type"]);
  ws.receive({ type: "declined", id: m.id, reason: "declined" });
  assert.deepEqual(events, [], "declined events are about our own requests only");
  assert.deepEqual(await p, { declined: true, reason: "declined" });
  assert.equal(client.holding, true);
  assert.equal(client.canEdit, true);
  const q = client.decline();
  ws.receive({ type: "error", id: ws.last("decline").id, code: "no_request", message: "nothing to decline" });
  await assert.rejects(q, { code: "no_request" });
});

test("Give it is release(): it resolves released and ends holding", async () => {
  const { client, ws } = await connected();
  ws.receive({ type: "acquired", fence: 4, ttl_ms: 10000 });
  ws.receive({ type: "requested", by: BOB, message: "", deadline_ms: 30000 });
  const p = client.release();
  ws.receive({ type: "released", id: ws.last("release").id, reason: "released" });
  assert.deepEqual(await p, { released: true, reason: "released" });
  assert.equal(client.holding, false);
});

test("queuePosition follows queued replies and updates, and is 0 once granted", async () => {
  const { client, clock, ws } = await connected();
  assert.equal(client.queuePosition, 0);
  const events = record(client, clock, ["queued", "acquired"]);
  const p = client.acquire({ wait: true });
  ws.receive({ type: "queued", id: ws.last("acquire").id, position: 3 });
  assert.deepEqual(await p, { acquired: false, queued: true, position: 3 });
  assert.equal(client.queuePosition, 3);
  ws.receive({ type: "queued", position: 2 });
  assert.equal(client.queuePosition, 2);
  ws.receive({ type: "queued", position: 1 });
  assert.equal(client.queuePosition, 1);
  ws.receive({ type: "acquired", fence: 6, ttl_ms: 10000 });
  assert.equal(client.queuePosition, 0);
  assert.equal(client.holding, true);
  assert.deepEqual(events.map(([t, d]) => [t, d.position ?? d.fence]), [
    ["queued", 3], ["queued", 2], ["queued", 1], ["acquired", 6],
  ]);
});

test("release() while waiting leaves the queue: position 0 at once, and no re-queue after a reconnect", async () => {
  const { client, clock, ws, sockets } = await connected();
  client.acquire({ wait: true });
  ws.receive({ type: "queued", id: ws.last("acquire").id, position: 2 });
  const p = client.release();
  assert.equal(client.queuePosition, 0);
  assert.equal(ws.last("release").type, "release");
  ws.receive({ type: "released", id: ws.last("release").id, reason: "released" });
  assert.deepEqual(await p, { released: true, reason: "released" });
  ws.serverClose(1006);
  clock.advance(0);
  const ws2 = await accept(sockets);
  assert.equal(ws2.last("acquire"), undefined);
  await flush();
  assert.equal(client.queuePosition, 0);
});

test("close() resets queuePosition", async () => {
  const { client, ws } = await connected();
  client.acquire({ wait: true });
  ws.receive({ type: "queued", id: ws.last("acquire").id, position: 1 });
  client.close();
  assert.equal(client.queuePosition, 0);
});

test("state keeps queue and request as sent", async () => {
  const { client, ws } = await connected();
  const request = { by: BOB, message: "hi", deadline_at: 1_700_000_030_000 };
  ws.receive({
    type: "state", workspace: "doc-1", seq: 2, holder: { user: ME, fence: 3, since_ms: 1, tabs: 1 },
    viewers: [], queue: [BOB], request,
  });
  assert.deepEqual(client.state.queue, [BOB]);
  assert.deepEqual(client.state.request, request);
});
