"""Figures 7 and 8: big workspaces, where presence deltas matter.

7. *Big room*: N tabs of N different users join one workspace, alternately on two server processes:
   server CPU per join, payload bytes received per tab, and the time until every tab sees all N
   users. Measured for a small and a big N in the same run; the small room is the baseline.
8. *Status storm*: every tab of a workspace toggles its ``active`` flag, paced; server CPU per
   ``status`` message, in a small and a big workspace.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import redis.asyncio as aioredis

from .harness import HOST, Bench, timings
from .procs import ServerProcess

# Long enough that few pings (a cost per tab per tick: figure 2's) fall into a join storm, short
# enough that the idle window that measures Redis per tick stays short.
HEARTBEAT_MS = 10_000


async def big_rooms(b: Bench, sizes: tuple[int, ...]) -> dict[str, Any]:
    # The farm opens hundreds of connections at once: a hello may wait for a busy loop longer than
    # the default 5 s, which would measure admission under overload, not the cost of a join.
    settings = timings(HEARTBEAT_MS, PRESENCE_HELLO_TIMEOUT_MS="30000")
    a = await b.server("room-a", keys="room", **settings)
    other = await b.server("room-b", keys="room", **settings)
    redis = aioredis.Redis.from_url(b.redis_url, decode_responses=True)
    try:
        rooms = [await _room(b, (a, other), n, redis) for n in sizes]
    finally:
        a.close()
        other.close()
        await redis.aclose()
    small, big = rooms[0], rooms[-1]
    return {
        "rooms": rooms,
        "cpu_ratio": big["cpu_ms_per_join"] / small["cpu_ms_per_join"],
        # Bytes per tab may grow with N (each tab hears of every join once), not faster.
        "bytes_growth": (big["bytes_per_tab"] / small["bytes_per_tab"]) / (big["tabs"] / small["tabs"]),
    }


async def _room(b: Bench, servers: tuple[ServerProcess, ServerProcess], n: int, redis: Any) -> dict[str, Any]:
    ws = f"bench-room-{n}"
    tabs = [[f"room{n}-{i}", ws, f"room{n}-tab-{i}"] for i in range(n)]
    cpu0 = sum(s.cpu_seconds() for s in servers)
    started = time.perf_counter()
    opened = await b.farm.call("open", host=HOST, port=servers[0].port, ports=[s.port for s in servers],
                               tabs=tabs, parallel=b.plan.parallel, timeout=600)
    if opened["connected"] != n:
        raise RuntimeError(f"only {opened['connected']} of {n} tabs joined the room: {opened['errors']}")
    await b.farm.call("wait_viewers", viewers=n, timeout=300)
    seen_s = time.perf_counter() - started
    await asyncio.sleep(0.2)  # the last updates' writes
    cpu = sum(s.cpu_seconds() for s in servers) - cpu0
    received = (await b.farm.call("received"))["bytes"]
    messages = (await b.farm.call("counts"))["counts"]
    # What the room costs Redis while nothing changes: the heartbeats' batched refresh of every
    # tab's presence entry (one pipeline a tick per server).
    ticks = 1
    r0 = await b.redis_info(redis)
    await asyncio.sleep(ticks * HEARTBEAT_MS / 1000)
    r1 = await b.redis_info(redis)
    await b.farm.call("close_all")
    return {"tabs": n, "cpu_ms_per_join": cpu * 1000 / n, "bytes_per_tab": statistics.fmean(received),
            "all_seen_s": seen_s, "join_s": opened["seconds"], "messages": messages,
            "redis_per_tick": {"scripts": (r1["evalsha"] - r0["evalsha"]) / ticks,
                               "script_ms": (r1["evalsha_usec"] - r0["evalsha_usec"]) / 1000 / ticks,
                               "cpu_ms": (r1["cpu"] - r0["cpu"]) * 1000 / ticks}}


async def status_storms(b: Bench, sizes: tuple[int, ...], rounds: int) -> dict[str, Any]:
    # No heartbeat tick within the storm: its pings (a cost per tab) are figure 2's, not this one's.
    server = await b.server("status", **timings(60_000))
    try:
        storms = [await _storm(b, server, n, rounds) for n in sizes]
    finally:
        server.close()
    return {"storms": storms, "ratio": storms[-1]["cpu_ms_per_status"] / storms[0]["cpu_ms_per_status"]}


async def _storm(b: Bench, server: ServerProcess, n: int, rounds: int) -> dict[str, Any]:
    ws = f"bench-status-{n}"
    tabs = [[f"status{n}-{i}", ws, f"status{n}-tab-{i}"] for i in range(n)]
    opened = await b.farm.call("open", host=HOST, port=server.port, tabs=tabs, parallel=b.plan.parallel, timeout=600)
    if opened["connected"] != n:
        raise RuntimeError(f"only {opened['connected']} of {n} tabs joined: {opened['errors']}")
    await b.farm.call("wait_viewers", viewers=n, timeout=120)
    # The same number of messages in both workspaces, at the same pace: only the audience differs.
    per_round = max(1, 200 // n)
    indices = list(range(n)) * per_round
    cpu0 = server.cpu_seconds()
    sent = (await b.farm.call("status", indices=indices, rounds=rounds, gap_ms=2, timeout=600))["sent"]
    await asyncio.sleep(0.5)  # the last updates
    cpu = server.cpu_seconds() - cpu0
    await b.farm.call("close_all")
    return {"tabs": n, "messages": sent, "cpu_ms_per_status": cpu * 1000 / sent}
