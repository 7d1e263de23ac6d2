"""A join storm into a workspace the server has no copy of: one join reads the whole workspace,
the others wait for it, and every tab still ends up seeing everyone."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from procs import RedisServer
from servers import Cluster
from wsclient import Tab, open_tab

TABS = 30


async def _hgetall_calls(r: aioredis.Redis) -> int:
    # The whole-workspace read is the only script step that reads the presence hash whole.
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


async def test_a_join_storm_reads_the_whole_workspace_once(
    servers: Cluster, tabs: list[Tab], redis_server: RedisServer
) -> None:
    server = await servers.server_async("a")
    # Users already in the room on Redis, written by another server, so the read has work to do.
    other = await servers.server_async("b")
    for i in range(5):
        await open_tab(tabs, other, f"early-{i}", "storm-1")
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        before = await _hgetall_calls(r)
        joined = await asyncio.gather(*(open_tab(tabs, server, f"user-{i}", "storm-1") for i in range(TABS)))
        reads = await _hgetall_calls(r) - before
    finally:
        await r.aclose()
    assert reads == 1, f"{reads} whole-workspace reads for {TABS} joins into one workspace"
    everyone = {f"early-{i}" for i in range(5)} | {f"user-{i}" for i in range(TABS)}
    for tab in joined:
        def sees_everyone(_: object, tab: Tab = tab) -> bool:
            return {v["user"]["id"] for v in (tab.view or {}).get("viewers", [])} == everyone

        if not sees_everyone(None):
            await tab.expect("update", sees_everyone, timeout=10)
