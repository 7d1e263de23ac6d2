"""``presence bench --peer hocuspocus``: presence and a peer server measured on one workload, side by
side in the same run, on loopback, against a redis-server of the comparison's own.

For each N of ``PeerPlan.sizes``, each server in turn (a fresh process): N clients of N users join
one workspace (presence: their ``hello``, whose viewer entry carries the user; Hocuspocus: one
document, each client setting its Yjs awareness state ``{user, active}``). Measured: the time until
every client sees all N, the server's CPU per join (``/proc``), the bench Redis' CPU per join
(``INFO cpu``), the server's memory (RSS growth) per client, the payload bytes per client. Then,
at the first N only, with every client still connected: one client changes its presence (its
``active`` flag) ``changes`` times, each ``gap_ms`` after every other client saw the previous change
(so no change is merged with another: each meets a quiet server), and for each change the time
until the last other client saw it (p50, p99) and the server's CPU per change; then ``idle_s`` of
nothing: the server's CPU and the bytes each client receives per second.

The clients run in two processes of their own: presence's tab farm (:mod:`.peerfarm`) and the
peer's (``hocuspocus-clients.mjs``); timings of the fan-out are taken in those processes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis

from . import hocuspocus
from .harness import HOST, Bench, Farm, Plan, summary, timings
from .procs import RedisProc, cpu_seconds

PEERS = ("hocuspocus",)
SETTLE_S = 0.5  # after the last client saw everything: the writes and broadcasts behind it
WAIT_S = 10.0  # for every client to see a change of the fan-out; later, the change counts as missed


@dataclass(frozen=True, slots=True)
class PeerPlan:
    sizes: tuple[int, ...]  # clients in the one workspace; the fan-out and the idle window at the first
    changes: int  # presence changes of the fan-out
    gap_ms: int
    idle_s: float
    parallel: int  # clients connecting at once, on both sides

    @classmethod
    def full(cls) -> PeerPlan:
        return cls(sizes=(400, 1000), changes=50, gap_ms=50, idle_s=30.0, parallel=500)

    @classmethod
    def quick(cls) -> PeerPlan:
        return cls(sizes=(100, 200), changes=20, gap_ms=50, idle_s=5.0, parallel=100)


class Server(Protocol):
    """A server under test: ``presence serve`` or the peer's (both :class:`Proc`)."""

    port: int

    def cpu_seconds(self) -> float: ...
    def rss_bytes(self) -> int: ...
    def close(self, keep_log: bool = False) -> None: ...


@dataclass(slots=True)
class Side:
    """One server under test: how to start it and its clients' process (both speak the farm's ops)."""

    name: str
    clients: Farm
    start: Callable[[], Awaitable[Server]]
    open_args: Callable[[int, str, int], dict[str, Any]]  # (port, room, n): the clients' ``open``


async def from_args(args: argparse.Namespace, bench_plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    plan = PeerPlan.quick() if args.quick else PeerPlan.full()
    if args.peer_clients:
        plan = dataclasses.replace(plan, sizes=tuple(args.peer_clients))
    cache = Path(args.peer_cache) if args.peer_cache else hocuspocus.default_cache()
    return await compare(args.peer, plan, cache, bench_plan, log)


async def compare(peer: str, plan: PeerPlan, cache: Path, bench_plan: Plan,
                  log: Callable[[str], None]) -> dict[str, Any]:
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    try:
        inst = await asyncio.to_thread(hocuspocus.install, cache, log)
    except hocuspocus.PeerUnavailable as exc:
        log(f"peer comparison skipped: {exc}")
        return {"peer": peer, "skipped": str(exc)}
    log(f"peer: {', '.join(f'{k} {v}' for k, v in inst.versions.items())}")
    redis_proc = RedisProc()
    redis_proc.start()
    bench = Bench(bench_plan, redis_proc.url, f"peer{secrets.token_hex(3)}", log)
    ours = Farm([sys.executable, "-m", "presence.bench.peerfarm"])
    theirs = Farm(inst.clients_cmd())
    redis: Any = None
    failed = True
    try:
        await redis_proc.ready()
        redis = aioredis.Redis.from_url(redis_proc.url, decode_responses=True)
        await ours.start()
        await theirs.start()
        sides = _sides(peer, plan, bench, inst, redis_proc.port, ours, theirs)
        result = {"peer": peer, "versions": inst.versions, "plan": dataclasses.asdict(plan),
                  **await _measure(plan, bench, sides, redis, log)}
        failed = False
        return result
    finally:
        await ours.close()
        await theirs.close()
        await bench.close(keep_logs=failed)
        if redis is not None:
            await redis.aclose()
        redis_proc.close()


def _sides(peer: str, plan: PeerPlan, bench: Bench, inst: hocuspocus.Installation, redis_port: int,
           ours: Farm, theirs: Farm) -> tuple[Side, Side]:
    async def start_ours() -> Server:
        # The defaults (heartbeat 5 s, update window 50 ms); no rate limits (Bench.server), and a
        # hello may wait for a busy loop longer than the default 5 s in a storm of hundreds.
        return await bench.server("peer-presence", **timings(5000, PRESENCE_HELLO_TIMEOUT_MS="30000"))

    async def start_theirs() -> Server:
        proc = inst.server(redis_port)
        bench.procs.append(proc)  # ended by bench.close()
        proc.start()
        return await proc.ready()

    def ours_open(port: int, room: str, n: int) -> dict[str, Any]:
        return {"host": HOST, "port": port, "parallel": plan.parallel,
                "tabs": [[f"{room}-u{i}", room, f"{room}-tab-{i}"] for i in range(n)]}

    def theirs_open(port: int, room: str, n: int) -> dict[str, Any]:
        return {"url": f"ws://{HOST}:{port}", "doc": room, "parallel": plan.parallel,
                "users": [f"{room}-u{i}" for i in range(n)]}

    return Side("presence", ours, start_ours, ours_open), Side(peer, theirs, start_theirs, theirs_open)


async def _measure(plan: PeerPlan, b: Bench, sides: tuple[Side, Side], redis: Any,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """Each N, each side in turn on a fresh server; the fan-out and the idle window at the first N."""
    sizes: list[dict[str, Any]] = []
    fanout: dict[str, Any] = {"clients": plan.sizes[0]}
    idle: dict[str, Any] = {"clients": plan.sizes[0]}
    for i, n in enumerate(plan.sizes):
        size: dict[str, Any] = {"clients": n}
        for side in sides:
            log(f"peer: {n} clients of {side.name} join one workspace")
            server = await side.start()
            try:
                size[side.name] = await _join(b, side, server, n, redis)
                if i == 0:
                    log(f"peer: {side.name} fan-out, {plan.changes} changes, each {plan.gap_ms} ms after the "
                        f"previous one was seen; then {plan.idle_s:g} s idle")
                    fanout[side.name] = await _fanout(side, server, plan)
                    idle[side.name] = await _idle(b, side, server, redis, plan.idle_s)
            finally:
                await side.clients.call("close_all")
                server.close()
        sizes.append(size)
    return {"sizes": sizes, "fanout": fanout, "idle": idle}


async def _join(b: Bench, side: Side, server: Server, n: int, redis: Any) -> dict[str, Any]:
    rss0, cpu0, r0 = server.rss_bytes(), server.cpu_seconds(), (await b.redis_info(redis))["cpu"]
    clients0 = _clients_cpu(side)
    started = time.perf_counter()
    opened = await side.clients.call("open", timeout=600, **side.open_args(server.port, f"peer-{n}", n))
    if opened["connected"] != n:
        raise RuntimeError(f"only {opened['connected']} of {n} {side.name} clients connected: {opened['errors']}")
    await side.clients.call("wait_viewers", viewers=n)
    seen_s = time.perf_counter() - started
    await asyncio.sleep(SETTLE_S)
    cpu, rss = server.cpu_seconds() - cpu0, server.rss_bytes() - rss0
    clients_cpu = _clients_cpu(side) - clients0
    redis_cpu = (await b.redis_info(redis))["cpu"] - r0
    received = (await side.clients.call("received"))["bytes"]
    return {"clients": n, "all_seen_s": seen_s, "connect_s": opened["seconds"], "cpu_ms_per_join": cpu * 1000 / n,
            "redis_cpu_ms_per_join": redis_cpu * 1000 / n, "kib_per_client": rss / n / 1024,
            "bytes_per_client": statistics.fmean(received),
            # Context, not compared: the clients' process shares the cores with the server.
            "clients_cpu_ms_per_join": clients_cpu * 1000 / n}


def _clients_cpu(side: Side) -> float:
    assert side.clients.proc is not None
    return cpu_seconds(side.clients.proc.pid)


async def _fanout(side: Side, server: Server, plan: PeerPlan) -> dict[str, Any]:
    cpu0 = server.cpu_seconds()
    out = await side.clients.call("fanout", changer=0, changes=plan.changes, gap_ms=plan.gap_ms, wait_s=WAIT_S)
    cpu = server.cpu_seconds() - cpu0
    latencies, missed = last_seen(out["sent"], out["seen"])
    return {"changes": plan.changes, "gap_ms": plan.gap_ms, "last_seen": summary(latencies), "missed": missed,
            "cpu_ms_per_change": cpu * 1000 / plan.changes}


def last_seen(sent: list[float], seen: list[list[tuple[float, bool]]]) -> tuple[list[float], int]:
    """Seconds from each change to the moment the last of the other clients showed it, and how many
    changes some client did not show. Change k set ``active`` to ``k % 2 == 1`` at ``sent[k]``; a
    client shows it with the first value it saw at or after ``sent[k]`` that equals it."""
    latencies: list[float] = []
    missed = 0
    for k, at in enumerate(sent):
        value = k % 2 == 1
        firsts = [next((t for t, v in events if t >= at and v == value), None) for events in seen]
        if not firsts or any(t is None for t in firsts):
            missed += 1
            continue
        latencies.append(max(t for t in firsts if t is not None) - at)
    return latencies, missed


async def _idle(b: Bench, side: Side, server: Server, redis: Any, seconds: float) -> dict[str, Any]:
    bytes0 = (await side.clients.call("received"))["bytes"]
    cpu0, r0, t0 = server.cpu_seconds(), (await b.redis_info(redis))["cpu"], time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, window = server.cpu_seconds() - cpu0, time.perf_counter() - t0
    redis_cpu = (await b.redis_info(redis))["cpu"] - r0
    bytes1 = (await side.clients.call("received"))["bytes"]
    return {"seconds": window, "cpu_pct": cpu / window * 100, "redis_cpu_pct": redis_cpu / window * 100,
            "bytes_per_client_per_s": statistics.fmean(b - a for a, b in zip(bytes0, bytes1, strict=True)) / window}
