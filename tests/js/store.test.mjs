// subscribe()/getSnapshot() of PresenceClient and LeaseWatcher: the pair React's useSyncExternalStore needs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LeaseWatcher } from "../../static/presence.js";
import { connected, fakeWebSocketClass, FakeClock, flush, makeClient, state, welcome, BOB, ME } from "./helpers.mjs";

test("getSnapshot returns the same frozen object until something changes", async () => {
  const { client } = makeClient();
  const first = client.getSnapshot();
  assert.equal(client.getSnapshot(), first);
  assert.ok(Object.isFrozen(first));
  assert.deepEqual({ ...first, locks: [...first.locks], held: [...first.held] }, {
    state: null, status: "closed", connected: false, user: null, holding: false, canEdit: false, fence: null,
    queuePosition: 0, locks: [], held: [],
  });
});

test("every change a snapshot shows notifies the subscribers and makes a new snapshot", async () => {
  const { client, clock, sockets } = makeClient();
  let calls = 0;
  const unsubscribe = client.subscribe(() => calls++);
  const seen = [client.getSnapshot()];
  const snap = () => {
    const s = client.getSnapshot();
    if (s !== seen.at(-1)) seen.push(s);
    return s;
  };
  client.subscribe(snap); // like React: read the snapshot in the listener
  const p = client.connect();
  await flush();
  assert.equal(snap().status, "connecting");
  const ws = sockets.at(-1);
  ws.open();
  ws.receive(welcome());
  await p;
  const open = client.getSnapshot();
  assert.equal(open.status, "open");
  assert.equal(open.connected, true);
  assert.deepEqual(open.user, ME);
  assert.deepEqual(open.state, state());
  ws.receive({ type: "acquired", fence: 5, ttl_ms: 2000 });
  const holding = client.getSnapshot();
  assert.deepEqual([holding.holding, holding.canEdit, holding.fence], [true, true, 5]);
  assert.notEqual(holding, open);
  // Nothing changes: the same object, however often it is asked for.
  ws.receive({ type: "ping", n: 1 });
  clock.advance(100);
  assert.equal(client.getSnapshot(), holding);
  // The local deadline passes (no ping renewed it): canEdit flips, a new snapshot says so.
  const before = calls;
  clock.advance(1800);
  assert.ok(calls > before);
  assert.equal(client.getSnapshot().canEdit, false);
  assert.equal(client.getSnapshot().holding, true);
  // Unsubscribed: no more calls.
  unsubscribe();
  const after = calls;
  ws.receive({ type: "released", reason: "expired" });
  assert.equal(calls, after);
  assert.equal(client.getSnapshot().holding, false);
  // Each snapshot the listener saw was a distinct object with what it says at that moment.
  assert.ok(seen.length >= 5);
  assert.equal(new Set(seen).size, seen.length);
});

test("leaving the queue changes the snapshot's queuePosition at once", async () => {
  const { client, ws } = await connected();
  const p = client.acquire({ wait: true });
  ws.receive({ type: "queued", id: ws.last("acquire").id, position: 2 });
  await p;
  assert.equal(client.getSnapshot().queuePosition, 2);
  let told = 0;
  client.subscribe(() => told++);
  void client.release().catch(() => {});
  assert.equal(told, 1);
  assert.equal(client.getSnapshot().queuePosition, 0);
});

test("a throwing subscriber neither stops the client nor the other subscribers", async () => {
  const { client, ws } = await connected();
  const thrown = [];
  const onUncaught = (err) => thrown.push(err);
  process.prependListener("uncaughtException", onUncaught);
  const originalListeners = process.listeners("uncaughtException").filter((l) => l !== onUncaught);
  for (const l of originalListeners) process.removeListener("uncaughtException", l);
  try {
    let other = 0;
    client.subscribe(() => { throw new Error("listener bug"); });
    client.subscribe(() => other++);
    ws.receive({ type: "acquired", fence: 3, ttl_ms: 10000 });
    assert.equal(client.holding, true);
    assert.ok(other > 0);
    await flush();
    assert.ok(thrown.length > 0 && thrown.every((e) => e.message === "listener bug"));
  } finally {
    process.removeListener("uncaughtException", onUncaught);
    for (const l of originalListeners) process.on("uncaughtException", l);
  }
});

test("subscribe takes a function and returns its own unsubscribe; the same listener twice is two", async () => {
  const { client, ws } = await connected();
  assert.throws(() => client.subscribe(/** @type {any} */ (null)), TypeError);
  let n = 0;
  const listener = () => n++;
  const off1 = client.subscribe(listener);
  const off2 = client.subscribe(listener);
  ws.receive({ type: "state", ...state({ seq: 2 }) });
  assert.equal(n, 2);
  off1();
  off1(); // twice: harmless
  ws.receive({ type: "state", ...state({ seq: 3 }) });
  assert.equal(n, 3);
  off2();
  ws.receive({ type: "state", ...state({ seq: 4 }) });
  assert.equal(n, 3);
  // the methods are bound: React passes them around detached
  const { subscribe, getSnapshot } = client;
  const off = subscribe(() => {});
  assert.equal(getSnapshot().state.seq, 4);
  off();
});

test("the snapshot lists named locks (anyone's) and the ones this tab holds", async () => {
  const { client, ws } = await connected();
  const title = { user: BOB, since_ms: 1, tabs: 1, fence: 4 };
  ws.receive({ type: "update", workspace: "doc-1", seq: 2, base: 1, locks: { title } });
  const s1 = client.getSnapshot();
  assert.equal(s1.locks, client.locks);
  assert.deepEqual([...s1.locks], [["title", title]]);
  ws.receive({ type: "acquired", lock: "body", fence: 8, ttl_ms: 10000 });
  const s2 = client.getSnapshot();
  assert.deepEqual([...s2.held], [["body", { fence: 8, canEdit: true }]]);
  assert.equal(s2.holding, false, "holding is the workspace's lease");
  assert.equal(s2.locks, s1.locks, "the locks map is kept while the state's locks are the same");
});

function makeWatcher() {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const watcher = new LeaseWatcher({
    token: "secret", url: "ws://example.test/ws", WebSocket: WS, random: () => 0.5,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, workspaces: ["a", "b"],
  });
  return { watcher, clock, sockets: WS.sockets };
}

test("LeaseWatcher: a snapshot of the leases, the same until a lease or the connection changes", async () => {
  const { watcher, sockets } = makeWatcher();
  let calls = 0;
  watcher.subscribe(() => calls++);
  const empty = watcher.getSnapshot();
  assert.deepEqual([empty.status, empty.connected, empty.leases.size], ["closed", false, 0]);
  const p = watcher.connect();
  await flush();
  const ws = sockets.at(-1);
  ws.open();
  const free = { holder: null, viewers: 0 };
  ws.receive({ type: "leases", leases: { a: free, b: free } });
  await p;
  const s1 = watcher.getSnapshot();
  assert.deepEqual([s1.status, s1.connected, [...s1.leases.keys()]], ["open", true, ["a", "b"]]);
  assert.equal(watcher.getSnapshot(), s1);
  ws.receive({ type: "ping", n: 1 });
  assert.equal(watcher.getSnapshot(), s1, "a ping changes nothing");
  const held = { holder: { user: ME, since_ms: 5 }, viewers: 1 };
  ws.receive({ type: "lease", workspace: "b", ...held });
  const s2 = watcher.getSnapshot();
  assert.notEqual(s2, s1);
  assert.deepEqual(s2.leases.get("b"), held);
  assert.deepEqual(s1.leases.get("b"), free, "an earlier snapshot is not changed afterwards");
  assert.ok(calls >= 3);
  watcher.close();
  assert.equal(watcher.getSnapshot().status, "closed");
});

test("LeaseWatcher: watch() while disconnected drops the unwatched ids from the snapshot", async () => {
  const { watcher } = makeWatcher();
  let calls = 0;
  watcher.subscribe(() => calls++);
  watcher.leases.set("a", { holder: null, viewers: 0 });
  await watcher.watch(["b"]);
  assert.equal(calls, 1);
  assert.equal(watcher.getSnapshot().leases.has("a"), false);
});
