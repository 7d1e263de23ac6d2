"""TLS to Redis (``rediss://``): two `presence serve` processes on a TLS-only redis-server, and on a
TLS-only Redis Cluster. Skipped when openssl is missing or redis-server was built without TLS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from procs import LocalRedisCluster, ServerProcess, TlsFiles, TlsRedisServer, spread
from servers import Cluster
from wsclient import Tab, open_tab


async def takeover_across_servers(a: ServerProcess, b: ServerProcess, tabs: list[Tab], ws: str) -> None:
    alice = await open_tab(tabs, a, "alice", ws)
    bob = await open_tab(tabs, b, "bob", ws)
    got = await alice.request("acquire")
    assert got["type"] == "acquired"
    busy = await bob.request("acquire")
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "alice"
    taken = await bob.request("takeover")
    assert taken["type"] == "acquired" and taken["fence"] > got["fence"]
    assert (await alice.expect("released"))["reason"] == "taken_over"
    await alice.expect("state", lambda m: (m.get("holder") or {}).get("user", {}).get("id") == "bob")


async def test_two_servers_on_a_tls_redis(tls_redis: TlsRedisServer, prefix: str, tabs: list[Tab]) -> None:
    assert tls_redis.url.startswith("rediss://")
    c = Cluster(tls_redis.url, prefix)
    try:
        await takeover_across_servers(await c.server_async("a"), await c.server_async("b"), tabs, "doc-tls")
    finally:
        c.close()


@pytest.fixture
def tls_cluster(tls_redis: TlsRedisServer, tls_files: TlsFiles) -> Iterator[LocalRedisCluster]:
    # tls_redis first: it skips when this redis-server has no TLS.
    cluster = LocalRedisCluster(tls=tls_files).start()
    yield cluster
    cluster.close()


@pytest.mark.cluster
async def test_two_servers_on_a_tls_cluster(tls_cluster: LocalRedisCluster, prefix: str, tabs: list[Tab]) -> None:
    c = Cluster(tls_cluster.url, prefix)
    try:
        a = await c.server_async("a", PRESENCE_REDIS_CLUSTER="true")
        b = await c.server_async("b", PRESENCE_REDIS_CLUSTER="true")
        for ws in spread(tls_cluster, 1):
            await takeover_across_servers(a, b, tabs, ws)
    finally:
        c.close()
