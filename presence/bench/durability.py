"""Figure 7 of ``presence bench``: what ``PRESENCE_REDIS_WAIT_REPLICAS=1`` costs per acquire.

A replica of the bench's Redis is started on loopback, and the acquire round trip (acquire, then
release, one tab) is measured on two servers sharing that primary: one that answers a grant at
once, one that first waits for the replica to acknowledge it (``WAIT 1`` pipelined after the
script on the same connection). The replica is on the same machine, so this is the floor of the
cost: across a network, add the round trip from the primary to its replica.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis

from .harness import Bench, acquire_round_trips, summary, timings
from .procs import RedisServer


async def _in_sync(replica: RedisServer) -> None:
    client = aioredis.Redis(port=replica.port, decode_responses=True)
    try:
        for _ in range(200):
            if (await client.info("replication")).get("master_link_status") == "up":
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the bench's replica did not catch up with the primary")
    finally:
        await client.aclose()


async def wait_cost(b: Bench) -> dict[str, Any]:
    primary = urlparse(b.redis_url)
    replica = RedisServer(extra=["--replicaof", primary.hostname or "127.0.0.1", str(primary.port or 6379)],
                          name="redis-replica")
    b.procs.append(replica)
    await replica.start_async()
    await _in_sync(replica)
    plain = await b.server("dur0", keys="dur", **timings(5000))
    durable = await b.server("dur1", keys="dur", **timings(5000), PRESENCE_REDIS_WAIT_REPLICAS="1")
    n = b.plan.samples
    ours = summary(await acquire_round_trips(b, durable, "dur", "bench-durability", n))
    without = summary(await acquire_round_trips(b, plain, "dur", "bench-durability", n))
    for proc in (plain, durable, replica):
        proc.close()
    return {"replicas": 1, "ours": ours, "without": without,
            "cost_p50": ours["p50"] - without["p50"], "cost_p99": ours["p99"] - without["p99"],
            "ratio_p50": ours["p50"] / without["p50"]}
