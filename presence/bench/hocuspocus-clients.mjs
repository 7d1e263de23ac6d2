// The peer's clients for `presence bench --peer hocuspocus`: many HocuspocusProvider clients in one
// Node process, driven over stdin and stdout like presence's tab farm (presence/bench/farm.py): one
// JSON command per line in, one JSON answer per line out, each with `ok` or `error`.
//
// Commands (`op`):
//   open {url, doc, users, parallel}   connect one client per user to document `doc`, each
//                                      announcing itself in its awareness ({user, active: true});
//                                      at most `parallel` connecting at once; done when synced
//   wait_viewers {viewers, timeout}    until every client's awareness holds `viewers` states
//   received {}                        payload bytes each client received so far
//   fanout {changer, changes, gap_ms, wait_s}
//                                      client `changer` flips its awareness `active` `changes`
//                                      times, each `gap_ms` after every other client saw the
//                                      previous flip (or `wait_s` after it was made); when each
//                                      flip was made, and when every other client saw the
//                                      changer's `active` change and to what
//   close_all {}, exit {}
//
// Usage: node hocuspocus-clients.mjs (copied next to the installed node_modules by the bench).

import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { HocuspocusProvider } from "@hocuspocus/provider";
import WebSocket from "ws";
import * as Y from "yjs";

// Answers own stdout: whatever a library prints goes to stderr.
const answer = process.stdout.write.bind(process.stdout);
console.log = console.error;
console.info = console.error;
console.warn = console.error;

/**
 * @typedef {object} Client
 * @property {string} user
 * @property {HocuspocusProvider | null} provider
 * @property {number} bytes payload bytes of the messages received
 * @property {Array<[number, boolean]>} seen (seconds since the fan-out began, the changer's `active`)
 */

/** @type {Client[]} */
let clients = [];

const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now() / 1000;

/** A `ws` WebSocket that counts the payload bytes of what it receives for `client`. */
function countingSocket(/** @type {Client} */ client) {
  return class extends WebSocket {
    constructor(/** @type {string} */ url, /** @type {any} */ protocols) {
      super(url, protocols);
      this.on("message", (/** @type {ArrayBuffer | Buffer} */ data) => {
        client.bytes += data.byteLength;
      });
    }
  };
}

/** Connect one client; resolves once its document is synced (as a tab's `welcome`). */
function connect(/** @type {Client} */ client, /** @type {string} */ url, /** @type {string} */ doc) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${client.user} not synced after 60 s`)), 60_000);
    client.provider = new HocuspocusProvider({
      url,
      name: doc,
      document: new Y.Doc(),
      WebSocketPolyfill: countingSocket(client),
      onSynced: () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    });
    client.provider.awareness?.setLocalState({ user: { id: client.user, name: client.user }, active: true });
  });
}

/** @param {{url: string, doc: string, users: string[], parallel: number}} cmd */
async function open({ url, doc, users, parallel }) {
  const fresh = users.map((user) => /** @type {Client} */ ({ user, provider: null, bytes: 0, seen: [] }));
  clients.push(...fresh);
  const started = now();
  /** @type {Record<string, number>} */
  const errors = {};
  let connected = 0;
  let next = 0;
  const worker = async () => {
    while (next < fresh.length) {
      const client = fresh[next++];
      try {
        await connect(client, url, doc);
        connected++;
      } catch (e) {
        const key = String(e).slice(0, 120);
        errors[key] = (errors[key] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, fresh.length)) }, worker));
  return { seconds: now() - started, connected, errors };
}

/** @param {{viewers: number, timeout?: number}} cmd */
async function waitViewers({ viewers, timeout = 60 }) {
  const started = now();
  const behind = () => clients.filter((c) => c.provider?.awareness?.getStates().size !== viewers).length;
  while (behind() > 0) {
    if (now() - started > timeout) {
      throw new Error(`${behind()} clients do not see ${viewers} states after ${timeout} s`);
    }
    await sleep(10);
  }
  return { seconds: now() - started };
}

/** @param {{changer: number, changes: number, gap_ms: number, wait_s?: number}} cmd */
async function fanout({ changer, changes, gap_ms, wait_s = 10 }) {
  const source = clients[changer]?.provider?.awareness;
  const others = clients.filter((_, i) => i !== changer);
  if (!source || others.length === 0) throw new Error("a fan-out needs a connected changer and other clients");
  const id = source.clientID;
  const t0 = now();
  /** @type {{at: number, value: boolean, behind: Set<Client>, done: () => void} | null} */
  let expected = null;
  /** @type {Array<() => void>} */
  const unsubscribe = [];
  for (const client of others) {
    client.seen = [];
    const awareness = client.provider?.awareness;
    if (!awareness) throw new Error(`${client.user} is not connected`);
    const onChange = (/** @type {{added: number[], updated: number[]}} */ { added, updated }) => {
      if (!added.includes(id) && !updated.includes(id)) return;
      const t = now() - t0;
      const value = Boolean(awareness.getStates().get(id)?.active);
      client.seen.push([t, value]);
      if (expected && t >= expected.at && value === expected.value && expected.behind.delete(client)) {
        if (expected.behind.size === 0) expected.done();
      }
    };
    awareness.on("change", onChange);
    unsubscribe.push(() => awareness.off("change", onChange));
  }
  try {
    /** @type {number[]} */
    const sent = [];
    for (let k = 0; k < changes; k++) {
      await sleep(gap_ms);
      /** @type {() => void} */
      let done = () => {};
      const allSeen = new Promise((resolve) => {
        done = () => resolve(undefined);
      });
      const at = now() - t0;
      sent.push(at);
      expected = { at, value: k % 2 === 1, behind: new Set(others), done };
      source.setLocalStateField("active", k % 2 === 1);
      // Until every other client saw it, or wait_s (the bench counts the change as missed).
      /** @type {NodeJS.Timeout | undefined} */
      let timer;
      await Promise.race([allSeen, new Promise((resolve) => { timer = setTimeout(resolve, wait_s * 1000); })]);
      clearTimeout(timer);
    }
    return { sent, seen: others.map((c) => c.seen) };
  } finally {
    for (const off of unsubscribe) off();
  }
}

async function closeAll() {
  for (const client of clients) {
    client.provider?.destroy();
  }
  clients = [];
  await sleep(200);
  return {};
}

/** @type {Record<string, (cmd: any) => Promise<object>>} */
const ops = {
  open,
  wait_viewers: waitViewers,
  received: async () => ({ bytes: clients.map((c) => c.bytes) }),
  fanout,
  close_all: closeAll,
};

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { op, ...cmd } = JSON.parse(line);
  if (op === "exit") {
    await closeAll();
    break;
  }
  let reply;
  try {
    const run = ops[op];
    if (!run) throw new Error(`unknown op ${op}`);
    reply = { ok: true, ...(await run(cmd)) };
  } catch (e) {
    reply = { ok: false, error: String(e), traceback: e instanceof Error ? String(e.stack).slice(-2000) : "" };
  }
  answer(`${JSON.stringify(reply)}\n`);
}
process.exit(0);
