"""Redis Sentinel and failovers, with real processes: a primary, a replica, three Sentinels
(``<server> --sentinel`` from a generated config, ``down-after-milliseconds`` 1000) and
``presence serve`` processes configured with ``PRESENCE_REDIS_SENTINELS``.

- The primary is killed while a tab holds a lease: the servers follow the promoted replica by
  themselves (``/readyz`` fails while there is no primary), the holder keeps its lease and fence,
  renewals resume, the scripts are loaded on the new primary, and a takeover afterwards gets a
  higher fence.
- A replica that missed the last grants is promoted (paused with SIGSTOP, its link cut with
  ``CLIENT KILL TYPE replica``, the primary killed, then resumed): the next fence is still higher
  than every fence issued before, and the servers push the state of the history that went back.
- ``PRESENCE_REDIS_WAIT_REPLICAS``: a grant is confirmed once the replica has it; with the replica
  paused it is withdrawn and answered ``unavailable``. A lease handed on from the wait queue is
  told to its new holder (on another server) only once the replica has it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from ha_procs import SentinelGroup
from procs import RedisServer, ServerProcess, wait_until
from servers import Cluster, http_status
from waiting import until
from wsclient import Tab, open_tab

from presence.gateway.keys import WorkspaceKeys
from presence.gateway.scripts import load_scripts

# A lease TTL well above a failover (about 2-3 s with down-after 1 s), so a holder keeps its lease.
ENV = {
    "PRESENCE_DEV": "1",  # dev tokens on a real Redis
    "PRESENCE_HEARTBEAT_MS": "500",
    "PRESENCE_DEAD_AFTER_MS": "4000",
    "PRESENCE_LEASE_TTL_MS": "8000",
    "PRESENCE_GRACE_MS": "600",
    "PRESENCE_HELLO_TIMEOUT_MS": "3000",
}
TTL_MS = int(ENV["PRESENCE_LEASE_TTL_MS"])
# A grant is confirmed once the one replica has it.
WAIT_ONE = {"PRESENCE_REDIS_WAIT_REPLICAS": "1", "PRESENCE_REDIS_WAIT_TIMEOUT_MS": "300"}


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    g = SentinelGroup().start()
    yield g
    g.close()


class SentinelServers(Cluster):
    def __init__(self, group: SentinelGroup, prefix: str) -> None:
        super().__init__("", prefix)
        self.group = group

    def server(self, name: str = "server", **env: str) -> ServerProcess:
        full = {**ENV, "PRESENCE_KEY_PREFIX": self.prefix, **self.group.env(), **env}
        proc = ServerProcess(full, name=name)
        self.servers.append(proc)
        return proc.start()


@pytest.fixture
def servers(group: SentinelGroup, prefix: str) -> Iterator[SentinelServers]:
    c = SentinelServers(group, prefix)
    yield c
    c.close()


async def value(server: RedisServer, key: str) -> str | None:
    """GET on a real redis-server, off the test's event loop."""
    got: str | None = await asyncio.to_thread(server.client().get, key)
    return got


def wait_calls(server: RedisServer) -> int:
    return int(server.client().info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def replicated(group: SentinelGroup, port: int, key: str, value: str) -> bool:
    return group.node(port).get(key) == value


async def test_primary_killed_while_a_tab_holds_the_lease(
    group: SentinelGroup, servers: SentinelServers, prefix: str, tabs: list[Tab]
) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    fence = (await alice.request("acquire"))["fence"]
    keys = WorkspaceKeys.of(prefix, "doc")
    old = group.primary_port()
    (replica,) = group.replica_ports()
    await until(lambda: replicated(group, replica, keys.lease, str(fence)), 5, "the grant on the replica")

    mark = len(alice.messages)
    await group.kill_async(old)
    # No primary until the Sentinels agree on one: the servers are not ready meanwhile.
    await until(lambda: http_status(a, "/readyz") == 503, 5, "readyz 503 without a primary")
    new = await group.wait_new_primary_async(old)
    assert new == replica
    await until(lambda: http_status(a, "/readyz") == http_status(b, "/readyz") == 200, 15, "ready on the new primary")
    # The scripts are on the new primary (loaded when the servers saw it named, before any call).
    shas = [s.sha for s in load_scripts().values()]
    assert all(group.node(new).script_exists(*shas))

    # The holder kept its lease and fence, and renewals reach the new primary: its TTL is topped up.
    async def renewed() -> bool:
        pttl = int(await asyncio.to_thread(group.node(new).pttl, keys.lease))
        return pttl > TTL_MS - 1500
    await asyncio.sleep(1.0)
    assert await renewed()
    assert group.node(new).get(keys.lease) == str(fence)
    assert not [m for m in alice.messages[mark:] if m["type"] == "released"], alice.messages[mark:]
    ping = await alice.expect("ping", lambda m: (m.get("ttl_ms") or 0) > 0, after=len(alice.messages))
    assert ping["ttl_ms"] > 0

    # A takeover afterwards: a higher fence, and the old holder is told at once.
    taken = await bob.request("takeover", timeout=10)
    assert taken["type"] == "acquired" and taken["fence"] > fence, taken
    released = await alice.expect("released", after=mark)
    assert released["reason"] == "taken_over"


async def test_a_lagging_replica_promoted_never_hands_out_a_lower_fence(
    group: SentinelGroup, servers: SentinelServers, prefix: str, tabs: list[Tab]
) -> None:
    a = await servers.server_async("a")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob")
    viewer = await open_tab(tabs, a, "vic")
    keys = WorkspaceKeys.of(prefix, "doc")
    first = (await alice.request("acquire"))["fence"]
    old = group.primary_port()
    (replica,) = group.replica_ports()
    await until(lambda: replicated(group, replica, keys.lease, str(first)), 5, "the first grant on the replica")

    # The replica stops (SIGSTOP) and loses its link; grants go on without it.
    group.pause(replica)
    # Raw: redis-py 8.0 knows the type only by its old name, 'slave'; Redis takes both.
    group.node(old).execute_command("CLIENT", "KILL", "TYPE", "replica")
    fences = [first]
    for i in range(4):
        tab = bob if i % 2 == 0 else alice
        got = await tab.request("takeover")
        assert got["type"] == "acquired", got
        fences.append(got["fence"])
    assert fences == sorted(fences)
    await viewer.expect("state", lambda m: m["holder"] is not None and m["holder"]["fence"] == fences[-1])
    seen_seq = viewer.state()["seq"]

    # The primary dies; the replica that missed those grants comes back and is promoted.
    await group.kill_async(old)
    group.resume(replica)
    new = await group.wait_new_primary_async(old, timeout=40)
    assert new == replica
    assert int(group.node(new).get(keys.fence)) < fences[-1]  # its counter went back

    # The server re-reads: the viewer is pushed the promoted replica's state, whose seq is lower.
    back = await viewer.expect("state", lambda m: m["seq"] < seen_seq, timeout=20)
    assert back["holder"] is not None and back["holder"]["fence"] == first

    # And the next grant is above every fence issued before, lost ones included.
    await until(lambda: http_status(a, "/readyz") == 200, 15, "ready on the new primary")
    carol = await open_tab(tabs, a, "carol")
    got = await carol.request("takeover", timeout=10)
    assert got["type"] == "acquired", got
    assert got["fence"] > max(fences), (got, fences)


@pytest.fixture
def replicated_redis() -> Iterator[tuple[RedisServer, RedisServer]]:
    primary = RedisServer()
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(primary.port)])
    try:  # both closed whatever fails, the start or the sync included: no redis-server outlives the test
        primary.start()
        replica.start()
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", 10, "replica in sync")
        yield primary, replica
    finally:
        replica.close()  # sends SIGCONT first, in case a test left it paused
        primary.close()


async def test_wait_replicas_confirms_only_acknowledged_grants(
    replicated_redis: tuple[RedisServer, RedisServer], prefix: str, tabs: list[Tab]
) -> None:
    primary, replica = replicated_redis
    c = Cluster(primary.url, prefix)
    try:
        a = await c.server_async("a", **ENV, **WAIT_ONE)
        alice = await open_tab(tabs, a, "alice")
        bob = await open_tab(tabs, a, "bob")
        keys = WorkspaceKeys.of(prefix, "doc")
        got = await alice.request("acquire")
        assert got["type"] == "acquired"
        # Confirmed means on the replica already.
        assert await value(replica, keys.lease) == str(got["fence"])
        await alice.request("release")

        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            refused = await bob.request("acquire", timeout=5)
            assert refused["type"] == "error" and refused["code"] == "unavailable", refused
            # Withdrawn: nobody holds it, and bob was never told he did.
            assert await value(primary, keys.lease) is None
            assert not bob.of("acquired")
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        got = await bob.request("acquire", timeout=5)
        assert got["type"] == "acquired", got
        assert await value(replica, keys.lease) == str(got["fence"])
    finally:
        c.close()


async def test_wait_replicas_holds_back_a_handoff_until_the_replica_has_it(
    replicated_redis: tuple[RedisServer, RedisServer], prefix: str, tabs: list[Tab]
) -> None:
    primary, replica = replicated_redis
    c = Cluster(primary.url, prefix)
    try:
        a, b = await c.server_async("a", **ENV, **WAIT_ONE), await c.server_async("b", **ENV, **WAIT_ONE)
        alice = await open_tab(tabs, a, "alice")
        bob = await open_tab(tabs, b, "bob")
        keys = WorkspaceKeys.of(prefix, "doc")
        held = await alice.request("acquire")
        assert held["type"] == "acquired"
        assert (await bob.request("acquire", wait=True))["type"] == "queued"

        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            # The release hands the lease to bob inside the script, on the primary alone.
            assert (await alice.request("release"))["type"] == "released"
            await bob.expect("state", lambda m: m["holder"] is not None and m["holder"]["user"]["id"] == "bob")
            handed = int(await value(primary, keys.lease) or 0)
            assert handed > held["fence"]
            # Bob's server renews the lease and WAITs for the replica every heartbeat: several
            # WAITs time out meanwhile, and bob is not told he holds it.
            mark = await asyncio.to_thread(wait_calls, primary)
            await until(lambda: wait_calls(primary) >= mark + 3, 10, "WAITs of the handoff's confirmation")
            assert not bob.of("acquired")
            assert int(await value(primary, keys.lease) or 0) == handed  # still his, kept alive
            # Asking for it meanwhile is no way around the replicas either.
            refused = await bob.request("acquire", timeout=5)
            assert refused["type"] == "error" and refused["code"] == "unavailable", refused
            assert not bob.of("acquired")
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        got = await bob.expect("acquired", timeout=10)
        assert got["fence"] == handed
        assert await value(replica, keys.lease) == str(handed)
        # Now he holds it like any holder: he can release it.
        assert (await bob.request("release"))["type"] == "released"
    finally:
        c.close()
