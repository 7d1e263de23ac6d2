"""Figure 9: list views. Many watchers, each watching many workspaces over one connection (spread
over two server processes), while leases change at a steady rate somewhere else (a backend's
script calls): how long each change takes to reach every watcher of that workspace (p50/p99, from
the acquire's script call to the ``lease`` frame's arrival), and what the servers' CPU costs,
against the same watchers idle (pings only) for as long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from .harness import HOST, Bench, summary, timings
from .wsclient import Message, WsClient

HEARTBEAT_MS = 1000


@dataclass(frozen=True, slots=True)
class WatchPlan:
    watchers: int
    per_watcher: int  # workspaces each watcher watches
    workspaces: int  # the pool they are drawn from (windows spread evenly)
    rate: float  # lease changes a second (an acquire, then a release, per workspace in turn)
    seconds: float

    @classmethod
    def full(cls) -> WatchPlan:
        return cls(watchers=1000, per_watcher=100, workspaces=200, rate=20.0, seconds=10.0)

    @classmethod
    def quick(cls) -> WatchPlan:
        return cls(watchers=100, per_watcher=20, workspaces=40, rate=10.0, seconds=3.0)


async def watch_fanout(b: Bench, plan: WatchPlan) -> dict[str, Any]:
    servers = [await b.server(f"watch-{n}", keys="watch", **timings(HEARTBEAT_MS)) for n in ("a", "b")]
    leases = b.lease_scripts("watch")
    ids = [f"bench-watch-{i}" for i in range(plan.workspaces)]
    sent: dict[str, float] = {}  # the acquiring job's user id -> when its acquire was called
    arrived: list[float] = []
    watched_by: dict[str, int] = dict.fromkeys(ids, 0)
    target = [0]  # deliveries to wait for, known once every change was made
    all_in = asyncio.Event()

    def on_message(client: WsClient, msg: Message) -> None:
        if msg.get("type") == "lease" and (holder := msg.get("holder")) is not None:
            t0 = sent.get(holder["user"]["id"])
            if t0 is not None:
                arrived.append(time.perf_counter() - t0)
                if target[0] and len(arrived) >= target[0]:
                    all_in.set()

    clients: list[WsClient] = []
    gate = asyncio.Semaphore(100)

    async def connect(i: int) -> None:
        start = i * plan.workspaces // plan.watchers
        mine = [ids[(start + k) % plan.workspaces] for k in range(plan.per_watcher)]
        async with gate:
            client = await WsClient.connect(HOST, servers[i % 2].port, on_message=on_message)
            answer = client.next(lambda m: m.get("type") == "leases")
            client.send({"type": "watch", "token": b.token(f"watcher-{i}"), "workspaces": mine})
            await asyncio.wait_for(answer, 30)
        clients.append(client)
        for ws in mine:
            watched_by[ws] += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(connect(i) for i in range(plan.watchers)))
        connect_s = time.perf_counter() - started

        # The same watchers, idle, for as long as the changes will last: the baseline.
        cpu0 = sum(s.cpu_seconds() for s in servers)
        await asyncio.sleep(plan.seconds)
        idle_cpu = sum(s.cpu_seconds() for s in servers) - cpu0

        changes = int(plan.rate * plan.seconds)
        expected = 0
        cpu0 = sum(s.cpu_seconds() for s in servers)
        t_start = time.perf_counter()
        for j in range(changes):
            await asyncio.sleep(max(0.0, t_start + j / plan.rate - time.perf_counter()))
            ws = ids[(j // 2) % plan.workspaces]
            if j % 2 == 0:
                job = f"job-{j}"
                sent[job] = time.perf_counter()
                await leases.acquire(ws, job, job, job, "")
                expected += watched_by[ws]
            else:
                await leases.release(ws, None)
        target[0] = expected
        if len(arrived) < expected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), 5)
        busy_s = time.perf_counter() - t_start
        busy_cpu = sum(s.cpu_seconds() for s in servers) - cpu0
    finally:
        for client in clients:
            client.close()
        await leases.gateway.close()
        for s in servers:
            s.close()
    return {
        "watchers": plan.watchers, "per_watcher": plan.per_watcher, "workspaces": plan.workspaces,
        "rate": plan.rate, "seconds": plan.seconds, "connect_s": connect_s,
        "deliveries": len(arrived), "expected": expected,
        "latency": summary(arrived),
        "cpu_pct": busy_cpu * 100 / busy_s, "idle_cpu_pct": idle_cpu * 100 / plan.seconds,
        "cpu_ms_per_delivery": busy_cpu * 1000 / max(1, len(arrived)),
    }
