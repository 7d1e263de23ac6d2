// Presence deltas: PresenceClient applies `update`s to its state, fires `state` with the whole state, and
// asks for a fresh one (`sync`) when an update does not follow on from its state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { applyUpdate } from "../../static/presence.js";
import { BOB, ME, connected, flush, record, state, welcome } from "./helpers.mjs";

const CAROL = { id: "u3", name: "Carol" };
const viewer = (user, tabs = 1, active = true) => ({ user, tabs, active });

test("applyUpdate: joined, left and changed viewers, in the server's order; holder, queue, request whole", () => {
  const s = state({ viewers: [viewer(ME), viewer(CAROL)] });
  const holder = { user: BOB, fence: 7, since_ms: 1, tabs: 1 };
  const next = applyUpdate(s, {
    type: "update", workspace: "doc-1", seq: 4, base: 1, holder, joined: [viewer(BOB)], left: ["u3"],
    viewers: [viewer(ME, 2, false)], queue: [ME], request: null, change: { kind: "acquired", user: BOB },
  });
  assert.deepEqual(next, {
    workspace: "doc-1", seq: 4, holder, viewers: [viewer(ME, 2, false), viewer(BOB)], queue: [ME], request: null,
    change: { kind: "acquired", user: BOB },
  });
  assert.deepEqual(s.viewers, [viewer(ME), viewer(CAROL)], "the old state is not changed");
  // Absent fields are unchanged; `holder: null` frees it; a new update names its own change or none.
  const freed = applyUpdate(next, { type: "update", workspace: "doc-1", seq: 5, base: 4, holder: null });
  assert.equal(freed.holder, null);
  assert.deepEqual(freed.viewers, next.viewers);
  assert.deepEqual(freed.queue, [ME]);
  assert.equal("change" in freed, false);
});

test("an update that follows on is applied and fires state with the whole state", async () => {
  const ctx = await connected();
  const events = record(ctx.client, ctx.clock, ["state"]);
  ctx.ws.receive({ type: "update", workspace: "doc-1", seq: 2, base: 1, joined: [viewer(BOB)],
    change: { kind: "joined", user: BOB } });
  assert.deepEqual(ctx.client.state, state({ seq: 2, viewers: [viewer(ME), viewer(BOB)],
    change: { kind: "joined", user: BOB } }));
  assert.deepEqual(events.map(([, detail]) => detail), [ctx.client.state]);
  assert.equal(ctx.ws.sent.some((m) => m.type === "sync"), false);
});

test("a gap asks for sync once, ignores updates until the state comes, then follows on from it", async () => {
  const ctx = await connected();
  const events = record(ctx.client, ctx.clock, ["state"]);
  ctx.ws.receive({ type: "update", workspace: "doc-1", seq: 4, base: 3, left: ["u1"] });
  ctx.ws.receive({ type: "update", workspace: "doc-1", seq: 5, base: 4, joined: [viewer(BOB)] });
  assert.deepEqual(ctx.ws.sent.filter((m) => m.type === "sync"), [{ type: "sync" }]);
  assert.equal(ctx.client.state.seq, 1, "nothing applied across the gap");
  assert.equal(events.length, 0);
  const fresh = state({ seq: 5, viewers: [viewer(ME), viewer(BOB)] });
  ctx.ws.receive({ type: "state", ...fresh });
  ctx.ws.receive({ type: "update", workspace: "doc-1", seq: 6, base: 5, left: ["u2"] });
  assert.deepEqual(ctx.client.state, state({ seq: 6 }));
  assert.equal(ctx.ws.sent.filter((m) => m.type === "sync").length, 1);
  assert.deepEqual(events.map(([, detail]) => detail.seq), [5, 6]);
});

test("after a reconnect the new welcome's snapshot is the base, whatever came before", async () => {
  const ctx = await connected();
  ctx.ws.receive({ type: "update", workspace: "doc-1", seq: 9, base: 8, left: ["u1"] }); // a gap: sync asked
  ctx.ws.close(1012, "restart");
  ctx.clock.advance(60_000);
  await flush();
  const ws2 = ctx.sockets.at(-1);
  ws2.open();
  ws2.receive(welcome({ state: state({ seq: 20 }) }));
  await flush();
  ws2.receive({ type: "update", workspace: "doc-1", seq: 21, base: 20, joined: [viewer(BOB)] });
  assert.equal(ctx.client.state.seq, 21);
  assert.deepEqual(ctx.client.state.viewers, [viewer(ME), viewer(BOB)]);
  assert.equal(ws2.sent.some((m) => m.type === "sync"), false);
});
