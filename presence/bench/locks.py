"""Figure 13: named locks. Many named locks held in one workspace (a holder tab holds at most 20:
several holders), on one server process.

- *Redis round trips per renewal tick*: every Redis call of the server (``presence_redis_seconds``)
  and every script call (``INFO commandstats``) per heartbeat tick, over a few idle ticks with one
  named lock held, then with all of them: the heartbeat renews every lock of every tab in one
  pipelined batch, so the count must not grow. Every lock must still be held afterwards, with the
  fence it was granted (a correctness check: the figure fails without it).
- *Acquire round trip*: one tab acquires and releases a named lock of that workspace (while the
  others stay held), and the workspace's own lease, in turn, sample by sample: the named lock's
  p50 against the lease's, measured in the same workspace at the same moments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import redis.asyncio as aioredis

from .harness import GAP_S, Bench, summary, timings
from .procs import ServerProcess
from .report import Row, _ms
from .wsclient import WsClient

PER_TAB = 20  # the most named locks one tab may hold
RATIO_GOAL = 1.1  # acquire p50, named lock over the workspace's lease
WS = "bench-locks"


@dataclasses.dataclass(frozen=True, slots=True)
class LockPlan:
    locks: int  # named locks held in the one workspace at the end (at most PRESENCE_MAX_LOCKS)
    heartbeat_ms: int
    ticks: int  # of each idle window (one lock held, then every one)
    samples: int  # acquire round trips of each (named lock, lease)

    @classmethod
    def full(cls) -> LockPlan:
        return cls(locks=100, heartbeat_ms=1000, ticks=10, samples=1000)

    @classmethod
    def quick(cls) -> LockPlan:
        return cls(locks=100, heartbeat_ms=500, ticks=4, samples=100)


def _lock(i: int) -> str:
    return f"lock-{i}"


async def named_locks(b: Bench, plan: LockPlan) -> dict[str, Any]:
    server = await b.server("locks", **timings(plan.heartbeat_ms))
    redis = aioredis.Redis.from_url(b.redis_url, decode_responses=True)
    others = -(-(plan.locks - 1) // PER_TAB)
    tabs: list[WsClient] = []
    try:
        sampler = await b.tab(server, "locks-s", WS)
        tabs.append(sampler)
        holders = [await b.tab(server, f"locks-h{k}", WS) for k in range(others)]
        tabs += holders
        fences = {_lock(0): await _acquire(sampler, 0, _lock(0))}
        one = await _window(b, server, redis, plan)
        for i in range(1, plan.locks):
            fences[_lock(i)] = await _acquire(holders[(i - 1) // PER_TAB], i, _lock(i))
        many = await _window(b, server, redis, plan)
        kept = await _kept(sampler, fences)
        await sampler.request({"type": "release", "id": "r0", "lock": _lock(0)})
        lock, lease = await _round_trips(sampler, plan.samples)
    finally:
        for tab in tabs:
            tab.close()
        await redis.aclose()
        server.close()
    o, t = summary(lock), summary(lease)
    return {"plan": dataclasses.asdict(plan), "holder_tabs": others + 1, "one": one, "many": many, "kept": kept,
            "lock": o, "lease": t, "ratio_p50": o["p50"] / t["p50"], "ratio_p99": o["p99"] / t["p99"]}


async def _acquire(tab: WsClient, rid: int, lock: str) -> int:
    reply = await tab.request({"type": "acquire", "id": rid, "lock": lock})
    if reply["type"] != "acquired" or reply.get("lock") != lock:
        raise RuntimeError(f"acquire of {lock} answered {reply}")
    return int(reply["fence"])


async def _window(b: Bench, server: ServerProcess, redis: Any, plan: LockPlan) -> dict[str, float]:
    """Redis calls per heartbeat tick, over ``plan.ticks`` ticks after every lock was renewed once."""
    await asyncio.sleep(plan.heartbeat_ms * 1.5 / 1000)
    m0, r0 = await server.metrics(), await b.redis_info(redis)
    await asyncio.sleep(plan.heartbeat_ms * plan.ticks / 1000)
    m1, r1 = await server.metrics(), await b.redis_info(redis)

    def delta(name: str) -> float:
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    ticks = delta("presence_heartbeat_tick_seconds_count")
    if not ticks:
        raise RuntimeError("no heartbeat tick in the window")
    return {"ticks": ticks, "round_trips_per_tick": delta("presence_redis_seconds_count") / ticks,
            "batches_per_tick": delta("presence_renew_seconds_count") / ticks,
            "batch_ms": delta("presence_renew_seconds_sum") * 1000 / max(1.0, delta("presence_renew_seconds_count")),
            "scripts_per_tick": (r1["evalsha"] - r0["evalsha"]) / ticks,
            "redis_commands_per_tick": (r1["commands"] - r0["commands"]) / ticks}


async def _kept(tab: WsClient, fences: dict[str, int]) -> dict[str, int]:
    """How many of the locks granted are still held with their fence (by the workspace's state)."""
    state = tab.next(lambda m: m.get("type") == "state")
    tab.send({"type": "sync"})
    locks = (await asyncio.wait_for(state, 10)).get("locks") or {}
    same = sum(1 for lock, fence in fences.items() if (locks.get(lock) or {}).get("fence") == fence)
    return {"held": len(locks), "granted": len(fences), "same_fence": same}


async def _round_trips(tab: WsClient, samples: int) -> tuple[list[float], list[float]]:
    """Seconds from ``acquire`` to ``acquired``, of named lock 0 and of the lease in turn (which goes
    first alternates), each released again; after a warm-up."""
    warm = max(20, samples // 20)
    took: dict[str, list[float]] = {"lock": [], "lease": []}
    for i in range(warm + samples):
        for which in ("lock", "lease") if i % 2 else ("lease", "lock"):
            extra = {"lock": _lock(0)} if which == "lock" else {}
            started = time.perf_counter()
            reply = await tab.request({"type": "acquire", "id": f"{which}{i}", **extra})
            elapsed = time.perf_counter() - started
            if reply["type"] != "acquired":
                raise RuntimeError(f"acquire answered {reply}")
            await tab.request({"type": "release", "id": f"r{which}{i}", **extra})
            if i >= warm:
                took[which].append(elapsed)
            await asyncio.sleep(GAP_S)
    return took["lock"], took["lease"]


def rows(figures: dict[str, Any]) -> list[Row]:
    if (f := figures.get("locks")) is None:
        return []
    n, one, many, kept = f["plan"]["locks"], f["one"], f["many"], f["kept"]
    ok = kept["same_fence"] == kept["granted"] == n
    rt, rt1 = many["round_trips_per_tick"], one["round_trips_per_tick"]
    return [
        Row("13", f"Redis round trips per tick, {n} named locks held in one workspace",
            f"{rt:.2f} ({many['scripts_per_tick']:.1f} script calls)",
            f"{rt1:.2f} with 1 held ({one['scripts_per_tick']:.1f})", rt / rt1, "constant", ok and rt <= rt1 + 0.5),
        Row("13", f"named locks still held after {many['ticks']:.0f} more ticks, with their fences",
            f"{kept['same_fence']} of {kept['granted']}", f"{n} granted", None, "every one", ok),
        Row("13", "acquire round trip p50, a named lock", _ms(f["lock"]["p50"]),
            f"{_ms(f['lease']['p50'])} (the workspace's lease)", f["ratio_p50"], f"<= {RATIO_GOAL}x",
            f["ratio_p50"] <= RATIO_GOAL),
        Row("13", "acquire round trip p99, a named lock", _ms(f["lock"]["p99"]),
            f"{_ms(f['lease']['p99'])} (the workspace's lease)", f["ratio_p99"], "none", None),
    ]
