// Pure helpers of static/presence.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, leaseMargin, loadTabId, resolveUrl, TAB_KEY } from "../../static/presence.js";
import { FakeStorage } from "./helpers.mjs";

test("backoffDelay: full jitter between 0 and 500 * 2**attempt", () => {
  for (let attempt = 0; attempt < 6; attempt++) {
    const cap = 500 * 2 ** attempt;
    assert.equal(backoffDelay(attempt, () => 0), 0);
    assert.equal(backoffDelay(attempt, () => 0.5), cap / 2);
    const high = backoffDelay(attempt, () => 0.999999);
    assert.ok(high < cap && high > cap * 0.99, `attempt ${attempt}: ${high}`);
  }
});

test("backoffDelay: capped at 30 s however many attempts", () => {
  for (const attempt of [6, 7, 10, 50, 2000]) {
    assert.equal(backoffDelay(attempt, () => 0.5), 15000);
    assert.ok(backoffDelay(attempt, () => 0.999999) < 30000);
  }
});

test("backoffDelay: uses Math.random by default and stays in range", () => {
  const seen = new Set();
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3);
    assert.ok(d >= 0 && d < 4000);
    seen.add(Math.floor(d / 1000));
  }
  assert.ok(seen.size >= 3, "delays are spread (jitter)");
});

test("leaseMargin: a tenth of the TTL, at most one second", () => {
  assert.equal(leaseMargin(15000), 1000);
  assert.equal(leaseMargin(5000), 500);
  assert.equal(leaseMargin(200), 20);
});

test("loadTabId: created once, then read back from storage", () => {
  const storage = new FakeStorage();
  const id = loadTabId(storage);
  assert.ok(id.length >= 8);
  assert.equal(storage.getItem(TAB_KEY), id);
  assert.equal(loadTabId(storage), id);
  assert.notEqual(loadTabId(new FakeStorage()), id);
});

test("loadTabId: works without storage or with a throwing one", () => {
  assert.ok(loadTabId(null));
  const broken = { getItem() { throw new Error("denied"); }, setItem() { throw new Error("denied"); } };
  assert.ok(loadTabId(broken));
});

test("resolveUrl: keeps ws URLs, turns http(s) into ws(s)", () => {
  assert.equal(resolveUrl("ws://h:1/ws"), "ws://h:1/ws");
  assert.equal(resolveUrl("https://h/ws"), "wss://h/ws");
  assert.equal(resolveUrl("http://h/ws"), "ws://h/ws");
  assert.throws(() => resolveUrl(undefined), TypeError);
});
