"""Chaos soak: many tabs on two ``presence serve`` processes doing random acquire, takeover,
release, close, crash and reconnect for a bounded time, on each workspace's own lease and on two
of its named locks (``LOCKS``; a tab may hold several), while faults are injected one after the
other: pub/sub connections killed, a server's link to Redis slowed down, cut or black-holed
(through ``tcpproxy``), a server paused with SIGSTOP for longer than the lease TTL, a server
SIGKILLed and restarted.

Every message each tab receives is recorded with its receipt time, and an observer on a connection
no fault touches records what Redis did. ``chaos_check.check`` then judges the run, each lock of
each workspace on its own (windows on two locks of one workspace never conflict):

- a tab's **validity window** for a fence opens when it receives ``acquired`` and closes at the
  first of: receiving ``released``; sending ``release`` or closing the tab itself; its local
  deadline (receipt time of the last ``acquired``/``ping`` for it + that message's ``ttl_ms``;
  a late message does not revive a passed deadline). A connection that dies does not close it;
- windows of different users never overlap, except after an explicit act that ends a lease in
  Redis at once (takeover; release by another tab of the same user) where the old holder cannot
  know first - then the newcomer's fence must be higher. In scope ``user`` a user's tabs share
  one grant, so they are never compared with each other;
- fences strictly increase per lock (in Redis order);
- every holder whose lease Redis ended stopped holding within TTL + 1 s of it (it was told, or its
  deadline passed: nobody keeps a lost lease silently), and windows still open at the end are of
  the fence Redis still holds.

The short run (about 25 s of chaos) is part of the normal suite; ``--runslow`` adds a long one
(``PRESENCE_CHAOS_SECONDS``, default 300). Each run prints its figures. To study a run, set
``PRESENCE_CHAOS_DUMP`` to a directory: the run's history (every client's log, the observer's
events and links, the faults with their times) goes there as JSON, with the Sentinel soak's
Redis and Sentinel logs.

The Sentinel soak runs the same tabs and checker on servers that reach Redis through three
Sentinels (a primary and a replica), with Redis failovers among the faults: the primary is
SIGKILLed, the Sentinels promote the replica, and the old primary comes back (empty) as a replica
of the new one. Its observer listens on both data nodes (``chaos_observer.FailoverObserver``). The
data nodes run with ``min-replicas-to-write 1``, as docs/deployment.md advises for Sentinel: the Sentinels
(``down-after-milliseconds`` 1000) now and then fail over from a primary that is alive (often one
they promoted a second before, as their first ping of it can come later than that; or on a loaded
machine), and without it that primary goes on taking the servers' writes beside the new one until
the Sentinels demote it: two histories at once, which the checker cannot order (and its lease
events can be lost: a demoted or promoted instance's clients are killed with the events still
unsent).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from chaos_check import check
from chaos_client import ChaosClient
from chaos_observer import FailoverObserver, Observer
from ha_procs import SentinelGroup
from procs import RedisServer, ServerProcess
from tcpproxy import TcpProxy

from presence.gateway.keys import lease_key

# A violation is never run again (the suite's reruns are for timing tests on a loaded machine):
# a soak that passes on its second try may have found a real one the first time.
pytestmark = pytest.mark.flaky(reruns=0)

TTL_MS = 2000
ENV = {
    "PRESENCE_DEV": "1",  # dev tokens on a real Redis
    "PRESENCE_HEARTBEAT_MS": "400",
    "PRESENCE_DEAD_AFTER_MS": "2000",
    "PRESENCE_LEASE_TTL_MS": str(TTL_MS),
    "PRESENCE_GRACE_MS": "600",
    "PRESENCE_HELLO_TIMEOUT_MS": "3000",
    "PRESENCE_LOG_LEVEL": "warning",
}
TTL_S = TTL_MS / 1000
# The Sentinel soak runs with the servers' WAIT setting from the environment (docs/correctness.md
# has a run with 1); the plain one has no replica to wait for.
WAIT_REPLICAS = int(os.environ.get("PRESENCE_REDIS_WAIT_REPLICAS", "0"))
WAIT_ENV = {"PRESENCE_REDIS_WAIT_REPLICAS": str(WAIT_REPLICAS),
            "PRESENCE_REDIS_WAIT_TIMEOUT_MS": os.environ.get("PRESENCE_REDIS_WAIT_TIMEOUT_MS", "300")}
WORKSPACES = ["w0", "w1", "w2"]
LOCKS = ["", "title", "cell:B7"]  # each workspace's own lease and two named locks
# (user, workspace, tab): some users have two tabs in one workspace (they share one grant).
CLIENTS = [
    ("ann", "w0", "ann-1"), ("ann", "w0", "ann-2"), ("bob", "w0", "bob-1"), ("cat", "w0", "cat-1"),
    ("bob", "w1", "bob-2"), ("dan", "w1", "dan-1"), ("dan", "w1", "dan-2"), ("eve", "w1", "eve-1"),
    ("ann", "w2", "ann-3"), ("cat", "w2", "cat-2"), ("eve", "w2", "eve-2"), ("fay", "w2", "fay-1"),
    ("fay", "w2", "fay-2"), ("gus", "w0", "gus-1"), ("gus", "w1", "gus-2"), ("hal", "w2", "hal-1"),
]


class Node:
    """A server process behind its own proxy to Redis (or, with ``sentinels``, reaching Redis
    through them, without a proxy); restartable on the same port."""

    def __init__(self, name: str, redis_server: RedisServer | None, prefix: str,
                 sentinels: SentinelGroup | None = None) -> None:
        self.proxy: TcpProxy | None = None
        env = {**ENV, "PRESENCE_KEY_PREFIX": prefix}
        if sentinels is not None:
            env.update(sentinels.env(), **WAIT_ENV)
        else:
            assert redis_server is not None
            self.proxy = TcpProxy(redis_server.port).start()
            env.update(PRESENCE_REDIS_URL=self.proxy.url, PRESENCE_REDIS_WAIT_REPLICAS="0")
        self.proc = ServerProcess(env, name=name).start()

    def restart(self) -> None:
        """SIGKILL, then start again on the same port."""
        old = self.proc
        old.kill()
        old.close()
        self.proc = ServerProcess(old.settings, port=old.port, name=old.name).start()

    def close(self) -> None:
        self.proc.close()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def nodes(own_redis: RedisServer, prefix: str) -> Iterator[list[Node]]:
    made: list[Node] = []
    try:
        made += [Node("chaos-a", own_redis, prefix), Node("chaos-b", own_redis, prefix)]
        yield made
    finally:
        for n in made:
            n.close()


class Faults:
    """Injects one fault at a time, each undone before the next; counts them."""

    def __init__(self, nodes: list[Node], redis_server: RedisServer, rng: random.Random) -> None:
        self.nodes = nodes
        self.redis = redis_server.client()
        self.rng = rng
        self.count: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []  # (monotonic time, what happened): for a dump

    def note(self, what: str) -> None:
        self.timeline.append((time.monotonic(), what))

    def kill_pubsub(self) -> None:
        for c in self.redis.client_list(_type="pubsub"):
            if c.get("name") != Observer.NAME:
                self.redis.client_kill_filter(_id=c["id"])

    async def server_fault(self, node: Node, fault: str) -> None:
        """A fault of one server process: paused longer than the TTL, or SIGKILLed and restarted."""
        if fault == "sigstop":
            node.proc.signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(TTL_S + self.rng.uniform(0.3, 1.5))
            finally:
                node.proc.signal(signal.SIGCONT)
        elif fault == "restart":
            await asyncio.to_thread(node.restart)

    async def run(self, until: float) -> None:
        rng = self.rng
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            node = rng.choice(self.nodes)
            fault = rng.choice(["pubsub", "latency", "cut", "blackhole", "slow_then_cut", "sigstop", "restart"])
            self.count[fault] += 1
            self.note(f"{fault} {node.proc.name}")
            if fault == "pubsub":
                await asyncio.to_thread(self.kill_pubsub)
            elif fault == "latency" and node.proxy is not None:
                # A round trip below the servers' Redis socket timeout (0.5 s); the way back alone
                # may exceed the safety margin (TTL/10).
                down = rng.uniform(0.05, 0.45)
                node.proxy.set_latency(rng.uniform(0.0, 0.45 - down), down=down)
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                node.proxy.heal()
            elif fault == "slow_then_cut" and node.proxy is not None:
                # Grants made over a slow link, then no renewal gets through: the holders' local
                # deadlines must count from when their requests were sent.
                node.proxy.set_latency(0.0, down=rng.uniform(0.25, 0.45))
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                node.proxy.cut()
                await asyncio.sleep(TTL_S + rng.uniform(0.2, 1.0))
                node.proxy.heal()
            elif fault in ("cut", "blackhole") and node.proxy is not None:
                node.proxy.cut() if fault == "cut" else node.proxy.blackhole()
                await asyncio.sleep(rng.uniform(0.3, 2.5))
                node.proxy.heal()
            elif fault in ("sigstop", "restart"):
                await self.server_fault(node, fault)


def _append(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _write_dump(directory: str, seed: int, history: dict[str, object]) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"history-{seed}.json"), "w") as f:
        json.dump(history, f)


def lease_fences(redis_server: RedisServer, prefix: str) -> dict[tuple[str, str], int | None]:
    """The fence each lock's lease key holds (None: free), by (workspace, lock)."""
    r = redis_server.client()
    out: dict[tuple[str, str], int | None] = {}
    for ws in WORKSPACES:
        for lock in LOCKS:
            value = r.get(lease_key(prefix, ws, lock))
            out[(ws, lock)] = int(value) if value is not None else None
    return out


class SentinelFaults(Faults):
    """The faults of the Sentinel soak: Redis failovers (the primary SIGKILLed, the replica
    promoted, the old primary back as a replica), pub/sub connections killed, a server paused or
    SIGKILLed and restarted."""

    def __init__(self, nodes: list[Node], group: SentinelGroup, observer: FailoverObserver,
                 rng: random.Random) -> None:
        super().__init__(nodes, group.nodes[group.primary_port()], rng)
        self.group = group
        self.observer = observer

    async def failover(self) -> None:
        old = await asyncio.to_thread(self.group.primary_port)
        self.note(f"kill primary :{old}")
        await self.group.kill_async(old)
        new = await self.group.wait_new_primary_async(old)
        self.note(f"new primary :{new}")
        self.redis = self.group.node(new)
        back = time.monotonic()
        await self.group.restart_as_replica_async(old)
        # The Sentinels may promote it a second from now (they now and then fail over from a live
        # primary): the observer listens to it before the next fault.
        await self.observer.linked(old, since=back)
        self.note(f":{old} back as a replica")

    async def run(self, until: float) -> None:
        rng = self.rng
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            node = rng.choice(self.nodes)
            fault = rng.choice(["failover", "failover", "pubsub", "sigstop", "restart"])
            self.count[fault] += 1
            self.note(f"{fault} {node.proc.name}")
            if fault == "failover":
                await self.failover()
            elif fault == "pubsub":
                await asyncio.to_thread(self.kill_pubsub)
            else:
                await self.server_fault(node, fault)


async def soak(nodes: list[Node], redis_server: RedisServer, prefix: str, seconds: float, seed: int,
               group: SentinelGroup | None = None) -> None:
    rng = random.Random(seed)
    observer: Observer
    faults: Faults
    clients = [ChaosClient(u, ws, tab, lambda: [n.proc.ws_url for n in nodes], random.Random(rng.random()), LOCKS)
               for u, ws, tab in CLIENTS]
    if group is not None:
        observer = watcher = await FailoverObserver(list(group.nodes), prefix).start()
        faults = SentinelFaults(nodes, group, watcher, random.Random(rng.random()))
    else:
        observer = await Observer(redis_server.url, prefix).start()
        faults = Faults(nodes, redis_server, random.Random(rng.random()))
    started = time.monotonic()
    until = started + seconds
    try:
        await asyncio.gather(faults.run(until), *(c.run(until) for c in clients))
        # Quiesce: no more faults or requests; every connected tab keeps answering pings. After
        # two TTLs every stale belief has ended by deadline or been corrected.
        for n in nodes:
            if n.proxy is not None:
                n.proxy.heal()
        for c in clients:
            if not c.connected:
                await c.connect()
        await asyncio.sleep(2 * TTL_S + 1)
        end_time = time.monotonic()
        current = redis_server if group is None else group.nodes[group.primary_port()]
        final = await asyncio.to_thread(lease_fences, current, prefix)
        await asyncio.sleep(0.3)  # messages already in flight at end_time are logged
    finally:
        for c in clients:
            await c.drop(voluntary=True)
        await observer.close()
    logs = {(c.workspace, c.user, c.tab): c.log for c in clients}
    report = check(logs, observer, end_time, notify_bound=TTL_S + 1.0, final_holders=final,
                   wait_replicas=WAIT_REPLICAS if group is not None else 0)
    ops: Counter[str] = Counter()
    for c in clients:
        ops.update(c.ops)
    kind = "chaos soak with Sentinel failovers" if group else "chaos soak"
    figures = (
        f"{kind}: {seconds:.0f}s, seed {seed}, {len(clients)} tabs on {len(nodes)} servers, "
        f"{sum(ops[k] for k in ('acquire', 'takeover', 'release', 'close', 'crash', 'connect'))} operations "
        f"{dict(ops)}, {sum(faults.count.values())} faults {dict(faults.count)}; {report}"
    )
    print(figures)
    if dump := os.environ.get("PRESENCE_CHAOS_DUMP"):
        history = {"seed": seed, "report": str(report), "end_time": end_time,
                   "final": [[list(k), v] for k, v in final.items()],
                   "faults": faults.timeline, "links": getattr(observer, "links", []), "events": observer.events,
                   "logs": [[list(k), v] for k, v in logs.items()],
                   "servers": {n.proc.name: str(n.proc.log_path) for n in nodes}}
        await asyncio.to_thread(_write_dump, dump, seed, history)
    if path := os.environ.get("PRESENCE_CHAOS_REPORT"):
        await asyncio.to_thread(_append, path, figures + "\n")
    assert report.grants > 10, figures  # the run did something
    assert all(report.grants_by_lock.get(lock) for lock in LOCKS), figures  # on every lock
    assert sum(faults.count.values()) >= 3, figures
    assert not report.violations, figures


async def test_chaos_soak_short(nodes: list[Node], own_redis: RedisServer, prefix: str) -> None:
    seed = int(os.environ.get("PRESENCE_CHAOS_SEED", random.randrange(1 << 30)))
    await soak(nodes, own_redis, prefix, float(os.environ.get("PRESENCE_CHAOS_SHORT_SECONDS", "25")), seed)


LONG_SECONDS = float(os.environ.get("PRESENCE_CHAOS_SECONDS", "300"))


@pytest.mark.slow
@pytest.mark.timeout(LONG_SECONDS + 240)
async def test_chaos_soak_long(nodes: list[Node], own_redis: RedisServer, prefix: str) -> None:
    seed = int(os.environ.get("PRESENCE_CHAOS_SEED", random.randrange(1 << 30)))
    await soak(nodes, own_redis, prefix, LONG_SECONDS, seed)


@pytest.fixture
def sentinel_nodes(prefix: str) -> Iterator[tuple[SentinelGroup, list[Node]]]:
    group = SentinelGroup(min_replicas_to_write=1).start()
    made: list[Node] = []
    try:
        made += [Node("chaos-a", None, prefix, group), Node("chaos-b", None, prefix, group)]
        yield group, made
    finally:
        for n in made:
            n.close()
        group.close(keep_logs=os.environ.get("PRESENCE_CHAOS_DUMP"))


async def test_chaos_soak_with_sentinel_failovers(
    sentinel_nodes: tuple[SentinelGroup, list[Node]], prefix: str
) -> None:
    group, nodes = sentinel_nodes
    seed = int(os.environ.get("PRESENCE_CHAOS_SEED", random.randrange(1 << 30)))
    seconds = float(os.environ.get("PRESENCE_CHAOS_SHORT_SECONDS", "25"))
    await soak(nodes, group.nodes[group.primary_port()], prefix, seconds, seed, group=group)


@pytest.mark.slow
@pytest.mark.timeout(LONG_SECONDS + 240)
async def test_chaos_soak_with_sentinel_failovers_long(
    sentinel_nodes: tuple[SentinelGroup, list[Node]], prefix: str
) -> None:
    group, nodes = sentinel_nodes
    seed = int(os.environ.get("PRESENCE_CHAOS_SEED", random.randrange(1 << 30)))
    await soak(nodes, group.nodes[group.primary_port()], prefix, LONG_SECONDS, seed, group=group)


def test_redis_key_layout_assumed_by_the_soak(prefix: str) -> None:
    """The soak reads each lock's lease key at the end (docs/architecture.md: ``<prefix>:{ws}:lease``,
    a named lock's ``<prefix>:{ws}:lock:<lock>:lease``)."""
    assert lease_key(prefix, "w0") == f"{prefix}:{{w0}}:lease"
    assert lease_key(prefix, "w0", "cell:B7") == f"{prefix}:{{w0}}:lock:cell:B7:lease"
