"""Chaos soak: many tabs on two ``presence serve`` processes doing random acquire, takeover,
release, close, crash and reconnect for a bounded time, while faults are injected one after the
other: pub/sub connections killed, a server's link to Redis slowed down, cut or black-holed
(through ``tcpproxy``), a server paused with SIGSTOP for longer than the lease TTL, a server
SIGKILLed and restarted.

Every message each tab receives is recorded with its receipt time, and an observer on a connection
no fault touches records what Redis did. ``chaos_check.check`` then judges the run:

- a tab's **validity window** for a fence opens when it receives ``acquired`` and closes at the
  first of: receiving ``released``; sending ``release`` or closing the tab itself; its local
  deadline (receipt time of the last ``acquired``/``ping`` for it + that message's ``ttl_ms``;
  a late message does not revive a passed deadline). A connection that dies does not close it;
- windows of different users never overlap, except after an explicit act that ends a lease in
  Redis at once (takeover; release by another tab of the same user) where the old holder cannot
  know first - then the newcomer's fence must be higher. In scope ``user`` a user's tabs share
  one grant, so they are never compared with each other;
- fences strictly increase per workspace (in Redis order);
- every holder whose lease Redis ended stopped holding within TTL + 1 s of it (it was told, or its
  deadline passed: nobody keeps a lost lease silently), and windows still open at the end are of
  the fence Redis still holds.

The short run (about 25 s of chaos) is part of the normal suite; ``--runslow`` adds a long one
(``PRESENCE_CHAOS_SECONDS``, default 300). Each run prints its figures.

The Sentinel soak runs the same tabs and checker on servers that reach Redis through three
Sentinels (a primary and a replica), with Redis failovers among the faults: the primary is
SIGKILLed, the Sentinels promote the replica, and the old primary comes back (empty) as a replica
of the new one. Its observer listens on both data nodes (``chaos_check.FailoverObserver``). The
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
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from chaos_check import FailoverObserver, Observer, check
from chaos_client import ChaosClient
from ha_procs import SentinelGroup
from procs import RedisServer, ServerProcess
from tcpproxy import TcpProxy

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
WORKSPACES = ["w0", "w1", "w2"]
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
            env.update(sentinels.env())
        else:
            assert redis_server is not None
            self.proxy = TcpProxy(redis_server.port).start()
            env["PRESENCE_REDIS_URL"] = self.proxy.url
        self.proc = ServerProcess(env, name=name).start()

    def restart(self) -> None:
        """SIGKILL, then start again on the same port."""
        old = self.proc
        old.kill()
        old.close()
        self.proc = ServerProcess(old.env, port=old.port, name=old.name).start()

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


def lease_fences(redis_server: RedisServer, prefix: str) -> dict[str, int | None]:
    r = redis_server.client()
    out: dict[str, int | None] = {}
    for ws in WORKSPACES:
        value = r.get(f"{prefix}:{{{ws}}}:lease")
        out[ws] = int(value) if value is not None else None
    return out


class SentinelFaults(Faults):
    """The faults of the Sentinel soak: Redis failovers (the primary SIGKILLed, the replica
    promoted, the old primary back as a replica), pub/sub connections killed, a server paused or
    SIGKILLed and restarted."""

    def __init__(self, nodes: list[Node], group: SentinelGroup, rng: random.Random) -> None:
        super().__init__(nodes, group.nodes[group.primary_port()], rng)
        self.group = group

    async def failover(self) -> None:
        old = await asyncio.to_thread(self.group.primary_port)
        await self.group.kill_async(old)
        new = await self.group.wait_new_primary_async(old)
        self.redis = self.group.node(new)
        await self.group.restart_as_replica_async(old)

    async def run(self, until: float) -> None:
        rng = self.rng
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            node = rng.choice(self.nodes)
            fault = rng.choice(["failover", "failover", "pubsub", "sigstop", "restart"])
            self.count[fault] += 1
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
    if group is not None:
        observer = await FailoverObserver(list(group.nodes), prefix).start()
    else:
        observer = await Observer(redis_server.url, prefix).start()
    clients = [ChaosClient(u, ws, tab, lambda: [n.proc.ws_url for n in nodes], random.Random(rng.random()))
               for u, ws, tab in CLIENTS]
    faults = (Faults(nodes, redis_server, random.Random(rng.random())) if group is None
              else SentinelFaults(nodes, group, random.Random(rng.random())))
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
    report = check(logs, observer, end_time, notify_bound=TTL_S + 1.0, final_holders=final)
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
    if path := os.environ.get("PRESENCE_CHAOS_REPORT"):
        await asyncio.to_thread(_append, path, figures + "\n")
    assert report.grants > 10, figures  # the run did something
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
        group.close()


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
    """The soak reads each workspace's lease key (docs/architecture.md: ``<prefix>:{ws}:lease``) at the end."""
    from presence.gateway.keys import WorkspaceKeys

    assert WorkspaceKeys.of(prefix, "w0").lease == f"{prefix}:{{w0}}:lease"


# -- the checker itself: it must flag what it is there to catch --------------------------------


class _FakeObserver(Observer):
    def __init__(self, events: dict[str, list[tuple[float, dict[str, object]]]]) -> None:
        self.events = events  # type: ignore[assignment]
        self.error = None


def _grant(seq: int, fence: int, user: str, kind: str = "acquired", prev: int | None = None) -> dict[str, object]:
    e: dict[str, object] = {"seq": seq, "kind": kind, "lease": True,
                            "holder": {"fence": fence, "user": user, "name": user, "tab": "t", "since": 0}}
    if prev is not None:
        e["prev"] = {"fence": prev, "user": "x", "name": "x", "tab": "t", "since": 0}
    return e


def _end(seq: int, fence: int, kind: str) -> dict[str, object]:
    return {"seq": seq, "kind": kind, "lease": True, "holder": None,
            "prev": {"fence": fence, "user": "x", "name": "x", "tab": "t", "since": 0}}


def _judge(logs: dict[tuple[str, str, str], list[dict[str, object]]], events: list[tuple[float, dict[str, object]]],
           end: float = 100.0, final: int | None = None) -> list[str]:
    report = check(logs, _FakeObserver({"w": events}), end, notify_bound=3.0, final_holders={"w": final})
    return report.violations


def test_checker_accepts_a_clean_handover() -> None:
    logs = {
        ("w", "ann", "a"): [{"type": "acquired", "fence": 1, "ttl_ms": 1500, "_t": 1.0},
                            {"type": "ping", "n": 1, "ttl_ms": 1500, "_t": 2.0},
                            {"type": "released", "reason": "lost", "_t": 3.4}],
        ("w", "bob", "b"): [{"type": "acquired", "fence": 2, "ttl_ms": 1500, "_t": 3.6},
                            {"type": "_release_sent", "_t": 4.0}],
    }
    events = [(1.0, _grant(1, 1, "ann")), (3.5, _end(2, 1, "expired")), (3.55, _grant(3, 2, "bob")),
              (4.1, _end(4, 2, "released"))]
    assert _judge(logs, events) == []


def test_checker_flags_overlap_after_expiry_and_a_late_deadline() -> None:
    logs = {  # ann's last ping promised 1.5 s from 2.0: beyond the moment bob was granted it
        ("w", "ann", "a"): [{"type": "acquired", "fence": 1, "ttl_ms": 1500, "_t": 1.0},
                            {"type": "ping", "n": 1, "ttl_ms": 1500, "_t": 2.0}],
        ("w", "bob", "b"): [{"type": "acquired", "fence": 2, "ttl_ms": 1500, "_t": 3.2}],
    }
    events = [(1.0, _grant(1, 1, "ann")), (3.1, _end(2, 1, "expired")), (3.15, _grant(3, 2, "bob"))]
    assert any("overlap" in v for v in _judge(logs, events, end=4.0, final=2))


def test_checker_excuses_a_takeover_but_not_silence_or_lower_fences() -> None:
    takeover = {
        ("w", "ann", "a"): [{"type": "acquired", "fence": 5, "ttl_ms": 1500, "_t": 1.0},
                            {"type": "released", "reason": "taken_over", "_t": 2.3}],
        ("w", "bob", "b"): [{"type": "acquired", "fence": 6, "ttl_ms": 1500, "_t": 2.0}],
    }
    events = [(1.0, _grant(1, 5, "ann")), (1.99, _grant(2, 6, "bob", "taken_over", prev=5))]
    assert _judge(takeover, events, end=3.0, final=6) == []
    # Ann keeps being told she holds it (pings with a TTL) long after the takeover: silent keep.
    silent = {**takeover, ("w", "ann", "a"): [{"type": "acquired", "fence": 5, "ttl_ms": 1500, "_t": 1.0}] + [
        {"type": "ping", "n": i, "ttl_ms": 1500, "_t": 1.0 + i} for i in range(1, 8)]}
    assert any("kept fence 5" in v for v in _judge(silent, events, end=20.0, final=6))
    # A grant with a lower fence than an earlier one.
    assert any("granted after" in v for v in _judge({}, [(1.0, _grant(1, 9, "ann")), (2.0, _end(2, 9, "released")),
                                                          (3.0, _grant(3, 8, "bob"))]))
    # A window still open at the end, for a fence Redis no longer has.
    assert any("still holds" in v for v in _judge(
        {("w", "ann", "a"): [{"type": "acquired", "fence": 1, "ttl_ms": 5000, "_t": 99.0}]},
        [(99.0, _grant(1, 1, "ann"))], end=100.0, final=None))


def test_checker_excuses_news_a_paused_server_tells_late_in_order_but_not_kept() -> None:
    # Bob took over at 2.0 while ann's server was paused; at 5.0 it tells ann, in order, that she
    # had been granted fence 5 and that it was taken over: one window, opened and closed at once.
    events = [(1.0, _grant(1, 4, "ann")), (1.5, _grant(2, 5, "ann", "taken_over", prev=4)),
              (2.0, _grant(3, 6, "bob", "taken_over", prev=5))]
    late = {
        ("w", "ann", "a"): [{"type": "acquired", "fence": 5, "ttl_ms": 1500, "_t": 5.0},
                            {"type": "released", "reason": "taken_over", "_t": 5.001}],
        ("w", "bob", "b"): [{"type": "acquired", "fence": 6, "ttl_ms": 1500, "_t": 2.0}],
    }
    assert _judge(late, events, end=6.0, final=6) == []
    # Told late and then kept: the end never follows.
    kept = {**late, ("w", "ann", "a"): [{"type": "acquired", "fence": 5, "ttl_ms": 1500, "_t": 5.0}] + [
        {"type": "ping", "n": i, "ttl_ms": 1500, "_t": 5.0 + i} for i in range(1, 8)]}
    assert any("kept fence 5" in v for v in _judge(kept, events, end=20.0, final=6))


class _FakeFailoverObserver(_FakeObserver):
    failover = True

    def ordered(self, events: list[tuple[float, dict[str, object]]]) -> list[tuple[float, dict[str, object]]]:
        return FailoverObserver.ordered(self, events)  # type: ignore[arg-type]


def test_checker_across_failovers_excuses_a_lost_grant_but_not_a_fence_that_went_back() -> None:
    def at(e: dict[str, object], ms: int) -> dict[str, object]:
        return {**e, "at": ms}

    # Old history: ann holds 10, bob takes over with 20 (lost: the replica missed it). The promoted
    # replica has ann at seq 1; its next event (seq 2 again) ends ann's lease, and cat gets 30.
    events = [(1.0, at(_grant(1, 10, "ann"), 1000)), (2.0, at(_grant(2, 20, "bob", "taken_over", prev=10), 2000)),
              (5.0, at(_end(2, 10, "released"), 5000)), (5.1, at(_grant(3, 30, "cat"), 5100))]
    logs = {
        ("w", "ann", "a"): [{"type": "acquired", "fence": 10, "ttl_ms": 1500, "_t": 1.0},
                            {"type": "released", "reason": "taken_over", "_t": 2.01}],
        ("w", "bob", "b"): [{"type": "acquired", "fence": 20, "ttl_ms": 1500, "_t": 2.0},
                            {"type": "ping", "n": 1, "ttl_ms": 1500, "_t": 3.0},
                            {"type": "released", "reason": "lost", "_t": 5.3}],
        ("w", "cat", "c"): [{"type": "acquired", "fence": 30, "ttl_ms": 1500, "_t": 5.2}],
    }
    report = check(logs, _FakeFailoverObserver({"w": events}), 6.0, notify_bound=3.0, final_holders={"w": 30})
    assert report.violations == []
    # The same, but the promoted replica hands out a fence below the lost one: flagged.
    low = [*events[:3], (5.1, at(_grant(3, 15, "cat"), 5100))]
    logs[("w", "cat", "c")] = [{"type": "acquired", "fence": 15, "ttl_ms": 1500, "_t": 5.2}]
    report = check(logs, _FakeFailoverObserver({"w": low}), 6.0, notify_bound=3.0, final_holders={"w": 15})
    assert any("granted after 20" in v for v in report.violations), report.violations


def test_checker_across_failovers_judges_an_overlap_by_the_end_before_the_later_grant() -> None:
    def at(e: dict[str, object], ms: int) -> dict[str, object]:
        return {**e, "at": ms}

    # Bob holds 10; Dan takes it over with 20 and releases it. A failover then promotes a replica
    # that still had Bob at seq 1: in that history Bob's lease expires later (seq 2 again).
    events = [(1.0, at(_grant(1, 10, "bob"), 1000)), (2.0, at(_grant(2, 20, "dan", "taken_over", prev=10), 2000)),
              (2.5, at(_end(3, 20, "released"), 2500)), (5.0, at(_end(2, 10, "expired"), 5000))]
    logs = {  # Bob hears of the takeover a moment after Dan hears of his grant
        ("w", "bob", "b"): [{"type": "acquired", "fence": 10, "ttl_ms": 1500, "_t": 1.0},
                            {"type": "released", "reason": "taken_over", "_t": 2.0005}],
        ("w", "dan", "d"): [{"type": "acquired", "fence": 20, "ttl_ms": 1500, "_t": 2.0},
                            {"type": "_release_sent", "_t": 2.5}],
    }
    report = check(logs, _FakeFailoverObserver({"w": events}), 6.0, notify_bound=3.0, final_holders={"w": None})
    assert report.violations == []
    # Bob's lease expired before Dan's grant, and Bob went on past it: no excuse, even though the
    # history that went back ends Bob's lease explicitly (released) later.
    events = [(1.0, at(_grant(1, 10, "bob"), 1000)), (1.9, at(_end(2, 10, "expired"), 1900)),
              (2.0, at(_grant(3, 20, "dan"), 2000)), (2.5, at(_end(4, 20, "released"), 2500)),
              (5.0, at(_end(2, 10, "released"), 5000))]
    logs[("w", "bob", "b")] = [{"type": "acquired", "fence": 10, "ttl_ms": 1500, "_t": 1.0}]
    report = check(logs, _FakeFailoverObserver({"w": events}), 6.0, notify_bound=3.0, final_holders={"w": None})
    assert any(v.startswith("w: overlap") and "b fence 10" in v for v in report.violations), report.violations
