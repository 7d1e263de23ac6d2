"""Redis Cluster: the lease scripts and two `presence serve` processes on a real local 3-primary cluster.

Workspaces are picked so that every test covers slots on each of the three primaries. The
session's cluster is shared (tests isolate themselves by key prefix); tests that kill nodes or
move slots get a cluster of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from procs import LocalRedisCluster, spread
from redis.crc import key_slot
from servers import CLUSTER, GRACE_S, RELAXED, TTL_S, Cluster
from wsclient import Tab, open_tab

from presence.core.effects import Replication
from presence.core.events import decode_event
from presence.core.outcomes import Granted
from presence.core.records import TabInfo
from presence.errors import StoreUnavailable
from presence.gateway.gateway import Gateway
from presence.gateway.keys import Keys
from presence.gateway.leases import LeaseScripts
from presence.settings import Settings

pytestmark = pytest.mark.cluster



@pytest.fixture
def cservers(redis_cluster: LocalRedisCluster, prefix: str) -> Iterator[Cluster]:
    """Presence server processes on the session's Redis Cluster."""
    c = Cluster(redis_cluster.url, prefix)
    yield c
    c.close()


async def server(c: Cluster, name: str, **env: str) -> object:
    return await c.server_async(name, **CLUSTER, **env)


# -- the lease scripts, in process ---------------------------------------------------------


@pytest.fixture
async def lease(redis_cluster: LocalRedisCluster) -> AsyncIterator[LeaseScripts]:
    settings = Settings(
        redis_url=redis_cluster.url, redis_cluster=True, heartbeat_ms=300, dead_after_ms=900,
        lease_ttl_ms=60_000, grace_ms=400, key_prefix=f"t{uuid.uuid4().hex[:8]}", dev=True,
    ).validate()
    store = Gateway(settings)
    await store.start()
    yield LeaseScripts(store, settings, Keys(settings.key_prefix))
    await store.close()


async def test_every_event_is_spublished_on_the_workspace_slot(
    lease: LeaseScripts, redis_cluster: LocalRedisCluster
) -> None:
    for ws in spread(redis_cluster, 1):
        channel = lease.keys.workspace(ws).channel
        node = lease.gateway.client.get_node_from_key(channel)
        sub = redis_cluster.node(int(node.port)).pubsub()
        sub.ssubscribe(channel)
        assert sub.get_sharded_message(timeout=2)["type"] == "ssubscribe"
        seqs = [e.seq for e in (await lease.join(ws, "c1", TabInfo("alice", "Alice", "t", True, None, "s"))).events]
        for coro in (
            lease.acquire(ws, "alice", "Alice", "t", "c1"),
            lease.takeover(ws, "bob", "Bob", "t2", "c2"),
            lease.leave(ws, "c1", clean=True),
        ):
            seqs += [e.seq for e in (await coro).events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        published = []
        while len(published) < len(seqs):
            m = await asyncio.to_thread(sub.get_sharded_message, timeout=2)
            assert m is not None, f"{ws}: only {len(published)} of {len(seqs)} events were published"
            if m["type"] == "smessage":
                published.append(decode_event(m["data"]).seq)
        assert published == seqs
        sub.close()


async def test_batched_tick_covers_every_node_in_one_pipeline_per_node(
    lease: LeaseScripts, redis_cluster: LocalRedisCluster
) -> None:
    workspaces = spread(redis_cluster, 100, stem="w")
    leases = {
        (ws, lock): (await lease.acquire(ws, "alice", "Alice", "t", "c", lock=lock)).reply.fence
        for ws in workspaces for lock in ("", "title")
    }
    calls = lease.renew_calls(leases)
    slots = {key_slot(f"{{{ws}}}".encode()) for ws in workspaces}
    # One script call per slot, every lock of its workspaces in it: a script touches one slot.
    assert len(calls) == len(slots)
    stats_before = _evalsha_calls(redis_cluster)
    renewed, _ = await lease.tick(leases, {ws: ["c"] for ws in workspaces})
    assert renewed == dict.fromkeys(leases, True)
    per_node = {p: n - stats_before[p] for p, n in _evalsha_calls(redis_cluster).items()}
    assert all(n > 0 for n in per_node.values()), per_node  # every primary got its share
    # A renewal by a stale fence fails on every node alike.
    renewed, _ = await lease.tick({key: f + 1 for key, f in leases.items()}, {})
    assert not any(renewed.values())


def _evalsha_calls(cluster: LocalRedisCluster) -> dict[int, int]:
    out = {}
    for port in cluster.ports:
        stats = cluster.node(port).info("commandstats")
        out[port] = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return out


async def test_scripts_reload_after_a_node_forgot_them(
    lease: LeaseScripts, redis_cluster: LocalRedisCluster
) -> None:
    workspaces = spread(redis_cluster, 1)
    redis_cluster.node(redis_cluster.ports[1]).script_flush()  # as after a restart of one node
    fences = {ws: (await lease.acquire(ws, "alice", "Alice", "t", "c")).reply.fence for ws in workspaces}
    redis_cluster.node(redis_cluster.ports[2]).script_flush()
    renewed, _ = await lease.tick({(ws, ""): f for ws, f in fences.items()}, {})
    assert all(renewed.values())


# -- two server processes --------------------------------------------------------------------


async def test_race_across_two_servers_grants_exactly_one_on_every_node(
    cservers: Cluster, redis_cluster: LocalRedisCluster, tabs: list[Tab]
) -> None:
    a, b = await server(cservers, "a", **RELAXED), await server(cservers, "b", **RELAXED)
    for ws in spread(redis_cluster, 2):
        contenders = await asyncio.gather(
            *(open_tab(tabs, a if i % 2 else b, f"user{i}", ws) for i in range(10))  # type: ignore[arg-type]
        )
        replies = await asyncio.gather(*(t.request("acquire", timeout=20) for t in contenders))
        kinds = [r["type"] for r in replies]
        assert kinds.count("acquired") == 1, (ws, kinds)
        winner = contenders[kinds.index("acquired")]
        for r in replies:
            if r["type"] == "busy":
                assert r["holder"]["user"]["id"] == winner.user  # busy names the holder
        holder = winner.user
        for t in contenders:
            await t.expect(
                "state", lambda m, h=holder: (m.get("holder") or {}).get("user", {}).get("id") == h, timeout=20
            )


async def test_takeover_reaches_old_holder_on_other_server_on_every_node(
    cservers: Cluster, redis_cluster: LocalRedisCluster, tabs: list[Tab]
) -> None:
    a, b = await server(cservers, "a"), await server(cservers, "b")
    for ws in spread(redis_cluster, 1):
        alice = await open_tab(tabs, a, "alice", ws)  # type: ignore[arg-type]
        bob = await open_tab(tabs, b, "bob", ws)  # type: ignore[arg-type]
        got = await alice.request("acquire")
        assert got["type"] == "acquired"
        busy = await bob.request("acquire")
        assert busy["type"] == "busy" and busy["holder"]["user"] == {"id": "alice", "name": "Alice"}
        taken = await bob.request("takeover")
        assert taken["type"] == "acquired" and taken["fence"] > got["fence"]
        lost = await alice.expect("released")
        assert lost["reason"] == "taken_over" and lost["by"] == {"id": "bob", "name": "Bob"}
        for t in (alice, bob):
            st = await t.expect("state", lambda m: (m.get("change") or {}).get("kind") == "taken_over")
            assert st["holder"]["user"]["id"] == "bob" and st["holder"]["fence"] == taken["fence"]


async def test_clean_close_frees_after_grace_and_reload_keeps_fence(
    cservers: Cluster, redis_cluster: LocalRedisCluster, tabs: list[Tab]
) -> None:
    a, b = await server(cservers, "a"), await server(cservers, "b")
    closing, reloading = spread(redis_cluster, 1, stem="close"), spread(redis_cluster, 1, stem="reload")
    for ws, again_ws in zip(closing, reloading, strict=True):
        alice = await open_tab(tabs, a, "alice", ws)  # type: ignore[arg-type]
        bob = await open_tab(tabs, b, "bob", ws)  # type: ignore[arg-type]
        assert (await alice.request("acquire"))["type"] == "acquired"
        await bob.expect("state", lambda m: m.get("holder") is not None)
        mark, closed_at = len(bob.messages), time.monotonic()
        await alice.close(1000)
        freed = await bob.expect("state", lambda m: m.get("holder") is None, after=mark, timeout=GRACE_S + 3)
        assert freed["change"]["kind"] == "expired"
        assert GRACE_S - 0.1 <= freed["_t"] - closed_at <= GRACE_S + 1.0

        carol = await open_tab(tabs, a, "carol", again_ws, tab="carol-tab")  # type: ignore[arg-type]
        got = await carol.request("acquire")
        await carol.close(1001)
        back = await open_tab(tabs, b, "carol", again_ws, tab="carol-tab")  # type: ignore[arg-type]
        rejoin = await back.expect("acquired")
        assert rejoin["rejoined"] is True and rejoin["fence"] == got["fence"]


async def test_sigkill_of_holders_server_frees_leases_on_every_node_within_ttl(
    cservers: Cluster, redis_cluster: LocalRedisCluster, tabs: list[Tab]
) -> None:
    a, b = await server(cservers, "a"), await server(cservers, "b")
    workspaces = spread(redis_cluster, 1)
    watchers = []
    for ws in workspaces:
        alice = await open_tab(tabs, a, "alice", ws)  # type: ignore[arg-type]
        bob = await open_tab(tabs, b, "bob", ws)  # type: ignore[arg-type]
        assert (await alice.request("acquire"))["type"] == "acquired"
        await bob.expect("state", lambda m: m.get("holder") is not None)
        watchers.append((bob, len(bob.messages)))
    killed_at = time.monotonic()
    await a.kill_async()  # type: ignore[attr-defined]
    for bob, mark in watchers:
        freed = await bob.expect("state", lambda m: m.get("holder") is None, after=mark, timeout=TTL_S + 3)
        assert freed["change"]["kind"] == "expired"
        # The spec's bound (TTL + 1 s) is asserted on plain Redis in test_e2e; with three cluster
        # nodes and two servers on a shared 2-core machine the full suite measured up to ~0.8 s
        # more, so here the allowance is one more second.
        assert freed["_t"] - killed_at <= TTL_S + 2.0
        assert (await bob.request("acquire"))["type"] == "acquired"


async def test_dropped_pubsub_connections_on_every_node_are_followed_by_fresh_state(
    cservers: Cluster, redis_cluster: LocalRedisCluster, tabs: list[Tab]
) -> None:
    a, b = await server(cservers, "a"), await server(cservers, "b")
    pairs = []
    for ws in spread(redis_cluster, 1):
        pairs.append((await open_tab(tabs, a, "alice", ws), await open_tab(tabs, b, "bob", ws)))  # type: ignore[arg-type]
    marks = [len(alice.messages) for alice, _ in pairs]
    killed = sum(redis_cluster.node(p).client_kill_filter(_type="pubsub") for p in redis_cluster.ports)
    assert killed >= 4  # per server: a control link and at least one sharded link per node
    for (alice, bob), mark in zip(pairs, marks, strict=True):
        assert (await bob.request("acquire"))["type"] == "acquired"
        st = await alice.expect("state", lambda m: m.get("holder") is not None, after=mark, timeout=5)
        assert st["holder"]["user"]["id"] == "bob"
        await bob.request("release")
        await alice.expect(
            "state", lambda m: m.get("holder") is None and (m.get("change") or {}).get("kind") == "released",
            after=mark, timeout=5,
        )


# -- a cluster of the test's own: slots move, nodes restart -----------------------------------


@pytest.fixture
def own_cservers(own_redis_cluster: LocalRedisCluster, prefix: str) -> Iterator[Cluster]:
    c = Cluster(own_redis_cluster.url, prefix)
    yield c
    c.close()


async def test_watched_workspace_follows_its_slot_to_another_node(
    own_cservers: Cluster, own_redis_cluster: LocalRedisCluster, tabs: list[Tab]
) -> None:
    cluster = own_redis_cluster
    a, b = await server(own_cservers, "a"), await server(own_cservers, "b")
    ws = spread(cluster, 1)[0]
    alice = await open_tab(tabs, a, "alice", ws)  # type: ignore[arg-type]
    bob = await open_tab(tabs, b, "bob", ws)  # type: ignore[arg-type]
    got = await alice.request("acquire")
    await bob.expect("state", lambda m: m.get("holder") is not None)
    slot = key_slot(f"{{{ws}}}".encode())
    await asyncio.to_thread(cluster.migrate_slot, slot, cluster.ports[1])
    # The lease moved with its keys and stays Alice's; changes still reach both servers.
    taken = await bob.request("takeover", timeout=10)
    assert taken["type"] == "acquired" and taken["fence"] > got["fence"]
    lost = await alice.expect("released", timeout=5)
    assert lost["reason"] == "taken_over"
    mark = len(bob.messages)
    await alice.request("takeover")
    await bob.expect("released", after=mark, timeout=5)
    await bob.expect("state", lambda m: (m.get("holder") or {}).get("user", {}).get("id") == "alice",
                     after=mark, timeout=5)


async def test_servers_recover_after_a_primary_restarts_empty(
    own_cservers: Cluster, own_redis_cluster: LocalRedisCluster, tabs: list[Tab]
) -> None:
    cluster = own_redis_cluster
    a, b = await server(own_cservers, "a"), await server(own_cservers, "b")
    ws = spread(cluster, 1)[1]  # on the second primary
    alice = await open_tab(tabs, a, "alice", ws)  # type: ignore[arg-type]
    bob = await open_tab(tabs, b, "bob", ws)  # type: ignore[arg-type]
    got = await alice.request("acquire")
    assert got["type"] == "acquired"
    port = cluster.ports[1]
    await asyncio.to_thread(cluster.kill_node, port)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(cluster.start_node, port)  # rejoins with its slots, no data, no scripts
    await asyncio.to_thread(cluster.wait_ok)
    # The lease was lost with the node's data: Alice is told, and the lease can be taken again
    # with a higher fence (re-seeded from Redis TIME); both servers see it.
    lost = await alice.expect("released", timeout=TTL_S + 10)
    assert lost["reason"] in ("lost", "expired")
    again = None
    for _ in range(40):
        with contextlib.suppress(AssertionError):
            again = await bob.request("acquire", timeout=2)
            if again["type"] == "acquired":
                break
        await asyncio.sleep(0.25)
    assert again is not None and again["type"] == "acquired", again
    assert again["fence"] > got["fence"]
    await alice.expect("state", lambda m: (m.get("holder") or {}).get("user", {}).get("id") == "bob", timeout=10)


async def test_a_primary_killed_during_takeovers_fails_over_to_its_replica(prefix: str, tabs: list[Tab]) -> None:
    """cluster-replicas 1: a primary dies while two users take a workspace on it from each other.
    Its replica is promoted, takeovers resume on it, and every fence is above the one before."""
    cluster = await asyncio.to_thread(LocalRedisCluster(replicas=1).start)
    c = Cluster(cluster.url, prefix)
    try:
        env = {"PRESENCE_HEARTBEAT_MS": "500", "PRESENCE_DEAD_AFTER_MS": "4000", "PRESENCE_LEASE_TTL_MS": "8000"}
        a, b = await server(c, "a", **env), await server(c, "b", **env)
        ws = next(w for i in range(1000) if cluster.owner(key_slot(f"{{{(w := f'doc-{i}')}}}".encode()))
                  != cluster.ports[0])
        slot = key_slot(f"{{{ws}}}".encode())
        primary = cluster.owner(slot)
        alice = await open_tab(tabs, a, "alice", ws)  # type: ignore[arg-type]
        bob = await open_tab(tabs, b, "bob", ws)  # type: ignore[arg-type]
        fences: list[int] = []
        killed_at: float | None = None
        after_kill = 0
        deadline = time.monotonic() + 60
        i = 0
        while after_kill < 4:
            assert time.monotonic() < deadline, f"takeovers did not resume after the failover: {fences}"
            tab = (alice, bob)[i % 2]
            i += 1
            with contextlib.suppress(AssertionError):  # no reply while the cluster fails over
                got = await tab.request("takeover", timeout=3)
                if got["type"] == "acquired" and not got.get("rejoined"):  # a rejoin keeps its fence
                    fences.append(got["fence"])
                    after_kill += killed_at is not None
            if killed_at is None and len(fences) >= 3:
                await asyncio.to_thread(cluster.kill_node, primary)
                killed_at = time.monotonic()
            await asyncio.sleep(0.2)
        assert fences == sorted(fences) and len(set(fences)) == len(fences), fences
        assert await asyncio.to_thread(cluster.owner, slot) != primary  # its replica serves it now
    finally:
        c.close()
        await asyncio.to_thread(cluster.close)


async def test_wait_replicas_on_cluster_waits_for_the_slots_replica() -> None:
    """PRESENCE_REDIS_WAIT_REPLICAS on Cluster: the WAIT goes to the primary of the workspace's
    slot, on the connection that ran the script, so a grant is answered once that primary's
    replica has it; with the replica paused it is withdrawn, and a handoff stays unconfirmed."""
    cluster = await asyncio.to_thread(LocalRedisCluster(replicas=1).start)
    settings = Settings(
        redis_url=cluster.url, redis_cluster=True, heartbeat_ms=500, dead_after_ms=4000, lease_ttl_ms=8000,
        key_prefix=f"t{uuid.uuid4().hex[:8]}", redis_wait_replicas=1, redis_wait_timeout_ms=300, dev=True,
    ).validate()
    store = Gateway(settings)
    try:
        await store.start()
        lease = LeaseScripts(store, settings, Keys(settings.key_prefix))
        keys = lease.keys.workspace("doc")
        replica_port = await asyncio.to_thread(cluster.replica_of, key_slot(keys.lease.encode()))
        replica = redis.Redis(port=replica_port, decode_responses=True, socket_timeout=5, single_connection_client=True)
        await asyncio.to_thread(replica.execute_command, "READONLY")  # a replica then answers reads of its slots
        await lease.join("doc", "c1", TabInfo("alice", "Alice", "t1", True, None, "s"))
        got = await lease.acquire("doc", "alice", "Alice", "t1", "c1")
        assert isinstance(got.reply, Granted)
        fence = got.reply.fence
        assert await asyncio.to_thread(replica.get, keys.lease) == str(fence)  # there before the answer
        assert await lease.replicate("doc", fence) is Replication.CONFIRMED
        await lease.release("doc", fence)

        cluster.nodes[replica_port].signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable, match="reached 0 of 1 replicas"):
                await lease.acquire("doc", "alice", "Alice", "t1", "c1")
            assert await store.client.get(keys.lease) is None  # withdrawn
            plain = LeaseScripts(store, dataclasses.replace(settings, redis_wait_replicas=0), lease.keys)
            again = await plain.acquire("doc", "alice", "Alice", "t1", "c1")
            assert isinstance(again.reply, Granted)
            assert await lease.replicate("doc", again.reply.fence) is Replication.UNCONFIRMED
            assert await lease.replicate("doc", again.reply.fence + 1) is Replication.MOVED_ON
        finally:
            cluster.nodes[replica_port].signal(signal.SIGCONT)
        await asyncio.to_thread(replica.close)
    finally:
        await store.close()
        await asyncio.to_thread(cluster.close)
