"""The six measurements of ``presence bench``, each with its baseline measured in the same run.

Every figure is a dict of plain numbers (milliseconds, seconds, KiB, ratios) that the report turns
into the table and the JSON file. Timings use ``time.perf_counter`` in this process; the tabs of
figures 1, 4 and 5 are :class:`WsClient` connections in this process, the thousands of tabs of
figures 2 and 6 live in the tab farm (a child process, so its CPU is not the server's).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock

from ..core.outcomes import AcquireReply, Granted, Outcome, Rejoined
from .harness import GAP_S, HOST, Bench, Plan, acquire_once, summary, timings
from .procs import BareProc, Proc, ServerProcess
from .wsclient import Message, WsClient

# -- 1. acquire round trip -----------------------------------------------------------------------


# The floor's Lua part: the least a script call through redis-py can be (Redis runs no command).
_MINIMAL_SCRIPT = "return 1"
_CHUNK = 100  # samples of each kind in a row; the kinds take turns, so a burst of load hits all of them


async def acquire_latency(b: Bench, server: ServerProcess, bare: BareProc) -> dict[str, Any]:
    """The acquire round trip against its floor: a WebSocket echo on the same uvicorn + Starlette
    stack plus ``EVALSHA`` of a script that only returns, from redis-py with the server's client
    options. Also our own acquire script from redis-py (``script``), the floor this figure used to
    have. The four kinds of sample take turns in chunks, so each meets the machine's load alike."""
    n = b.plan.samples
    warm = max(20, n // 20)
    tab = await b.tab(server, "lat", "bench-latency")
    echo_client = await WsClient.connect(HOST, bare.port, "/echo")
    lease = b.lease_scripts("floor")
    took: dict[str, list[float]] = {"ours": [], "echo": [], "lua": [], "script": []}
    try:
        await lease.gateway.start()
        client = lease.gateway.client  # a redis-py client built as the server builds its own
        sha = await client.script_load(_MINIMAL_SCRIPT)
        seq = 0

        async def ours() -> float:
            return await acquire_once(tab, seq)

        async def echo() -> float:
            started = time.perf_counter()
            await echo_client.request({"type": "acquire", "id": seq})
            return time.perf_counter() - started

        async def lua() -> float:
            started = time.perf_counter()
            if await client.evalsha(sha, 0) != 1:
                raise RuntimeError("the minimal script did not return 1")
            return time.perf_counter() - started

        async def script() -> float:
            started = time.perf_counter()
            out = await lease.acquire("bench-floor", "lat", "Lat", "t", "c")
            elapsed = time.perf_counter() - started
            await lease.release("bench-floor", _fence(out))
            return elapsed

        kinds = {"ours": ours, "echo": echo, "lua": lua, "script": script}
        order = list(kinds)
        for start in range(0, warm + n, _CHUNK):
            order = order[1:] + order[:1]  # which kind goes first rotates
            for kind in order:
                for i in range(start, min(warm + n, start + _CHUNK)):
                    seq += 1
                    elapsed = await kinds[kind]()
                    if i >= warm:
                        took[kind].append(elapsed)
                    await asyncio.sleep(GAP_S)
    finally:
        tab.close()
        echo_client.close()
        await lease.gateway.close()

    def paired(parts: list[float]) -> list[float]:
        # A floor's distribution: an echo and a script call of the same run, paired at random.
        shuffled = random.sample(parts, len(parts))
        return [e + s for e, s in zip(took["echo"], shuffled, strict=True)]

    o, f, sf = summary(took["ours"]), summary(paired(took["lua"])), summary(paired(took["script"]))
    return {"ours": o, "floor": f, "echo": summary(took["echo"]), "lua": summary(took["lua"]),
            "script": summary(took["script"]), "script_floor": sf,
            "ratio_p50": o["p50"] / f["p50"], "ratio_p99": o["p99"] / f["p99"],
            "script_ratio_p50": o["p50"] / sf["p50"], "script_ratio_p99": o["p99"] / sf["p99"]}


# -- 2. idle cost, and 6. reconnect storm --------------------------------------------------------


def farm_tabs(plan: Plan, stem: str) -> list[list[str]]:
    per = plan.tabs_per_workspace
    return [[f"{stem}{i}", f"{stem}-ws-{i // per}", f"{stem}-tab-{i}"] for i in range(plan.tabs)]


async def _idle_window(b: Bench, proc: Proc, server: ServerProcess | None, redis: Any,
                       heartbeats: int) -> dict[str, Any]:
    window = b.plan.heartbeat_ms * heartbeats / 1000
    m0 = await server.metrics() if server is not None else {}
    r0 = await b.redis_info(redis)
    cpu0, t0 = proc.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(window)
    cpu1, t1 = proc.cpu_seconds(), time.perf_counter()
    r1 = await b.redis_info(redis)
    m1 = await server.metrics() if server is not None else {}
    out: dict[str, Any] = {"window_s": t1 - t0, "cpu_s": cpu1 - cpu0, "cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
                           "redis_cpu_pct": (r1["cpu"] - r0["cpu"]) / (t1 - t0) * 100}
    if server is not None:
        def delta(name: str) -> float:
            return m1.get(name, 0.0) - m0.get(name, 0.0)

        ticks = delta("presence_heartbeat_tick_seconds_count")
        if ticks:
            # Every Redis call of the server (scripts, pipelines, registry, audit) is one observation.
            out.update(ticks=ticks, round_trips_per_tick=delta("presence_redis_seconds_count") / ticks,
                       batches_per_tick=delta("presence_renew_seconds_count") / ticks,
                       scripts_per_tick=(r1["evalsha"] - r0["evalsha"]) / ticks,
                       # commandstats also counts the commands that scripts run
                       redis_commands_per_tick=(r1["commands"] - r0["commands"]) / ticks)
    return out


async def _open(b: Bench, port: int, tabs: list[list[str]]) -> None:
    opened = await b.farm.call("open", host=HOST, port=port, tabs=tabs, parallel=b.plan.parallel, timeout=600)
    if opened["connected"] != len(tabs):
        raise RuntimeError(f"only {opened['connected']} of {len(tabs)} tabs connected: {opened['errors']}")


async def _hold(b: Bench, indices: list[int]) -> None:
    acquired = await b.farm.call("acquire", indices=indices)
    if acquired["replies"].get("acquired") != len(indices):
        raise RuntimeError(f"not every holder got its lease: {acquired['replies']}")


async def idle_and_storm(b: Bench) -> tuple[dict[str, Any], dict[str, Any]]:
    plan = b.plan
    hb, n, per = plan.heartbeat_ms, plan.tabs, plan.tabs_per_workspace
    redis = aioredis.Redis.from_url(b.redis_url, decode_responses=True)
    try:
        # The bare server first, so the farm holds one set of sockets at a time.
        bare = await b.bare(hb)
        rss0 = bare.rss_bytes()
        await _open(b, bare.port, farm_tabs(plan, "bare"))
        await asyncio.sleep(hb / 1000)
        bare_idle = await _idle_window(b, bare, None, redis, plan.idle_heartbeats)
        bare_idle["kib_per_tab"] = (bare.rss_bytes() - rss0) / n / 1024
        await b.farm.call("close_all")
        bare.close()

        # A lease TTL that outlives a restart, for the storm that follows on the same server.
        server = await b.server("idle", **timings(hb, PRESENCE_LEASE_TTL_MS=str(max(3 * hb, 15_000))))
        rss0 = server.rss_bytes()
        tabs = farm_tabs(plan, "idle")
        # A tenth of the tabs first: the Redis round trips per tick must not grow with the tabs.
        tenth = max(per, n // 10 // per * per)
        await _open(b, server.port, tabs[:tenth])
        await _hold(b, list(range(0, tenth, per)))
        await asyncio.sleep(hb * 1.5 / 1000)
        small = await _idle_window(b, server, server, redis, 2)
        await _open(b, server.port, tabs[tenth:])
        await _hold(b, list(range(tenth, n, per)))
        await asyncio.sleep(hb * 1.5 / 1000)  # every tab answered a ping: every lease is renewed
        ours_idle = await _idle_window(b, server, server, redis, plan.idle_heartbeats)
        ours_idle["kib_per_tab"] = (server.rss_bytes() - rss0) / n / 1024
        ours_idle["workspaces"], ours_idle["leases"] = -(-n // per), -(-n // per)
        idle = {"tabs": n, "heartbeat_ms": hb, "ours": ours_idle, "bare": bare_idle,
                "cpu_ratio": ours_idle["cpu_s"] / max(bare_idle["cpu_s"], 1e-9),
                "tenth": {"tabs": tenth, "round_trips_per_tick": small.get("round_trips_per_tick"),
                          "scripts_per_tick": small.get("scripts_per_tick")}}

        # 6. Restart the server under the tabs: SIGTERM closes them with 1012 and keeps the leases.
        sigterm = time.perf_counter()
        server.signal(signal.SIGTERM)
        closed = await b.farm.call("wait_closed", timeout=60)
        closed_s = time.perf_counter() - sigterm
        code = await server.wait(30)
        exit_s = time.perf_counter() - sigterm
        restart_started = time.perf_counter()
        await server.start_async()
        restart_s = time.perf_counter() - restart_started
        cpu0 = server.cpu_seconds()
        storm = await b.farm.call("reconnect", host=HOST, port=server.port, parallel=plan.parallel, timeout=600)
        storm_cpu = server.cpu_seconds() - cpu0
        all_back_s = time.perf_counter() - sigterm
        await b.farm.call("close_all")
        server.close()
        fresh = await b.bare(hb)
        cpu0 = fresh.cpu_seconds()
        baseline = await b.farm.call("open", host=HOST, port=fresh.port, tabs=farm_tabs(plan, "storm"),
                                     parallel=plan.parallel, timeout=600)
        bare_cpu = fresh.cpu_seconds() - cpu0
        await b.farm.call("close_all")
        fresh.close()
        storm_out = {
            "tabs": n, "lease_ttl_ms": max(3 * hb, 15_000), "closes": closed["closes"], "exit_code": code,
            "sigterm_to_all_closed_s": closed_s, "sigterm_to_exit_s": exit_s, "restart_s": restart_s,
            "sigterm_to_all_rejoined_s": all_back_s,
            "ours_cpu_ms_per_tab": storm_cpu / n * 1000, "bare_cpu_ms_per_tab": bare_cpu / n * 1000,
            "ours_s": storm["seconds"], "ours_connected": storm["connected"], "errors": storm["errors"],
            "retried_1013": storm["retried_1013"],
            "holders": storm["holders"], "rejoined_same_fence": storm["rejoined_same_fence"],
            "released": storm["released"], "leases_lost": storm["holders"] - storm["rejoined_same_fence"],
            "bare_s": baseline["seconds"], "bare_connected": baseline["connected"],
            "ratio": storm["seconds"] / max(baseline["seconds"], 1e-9),
        }
        return idle, storm_out
    finally:
        await redis.aclose()


# -- 3. lease renewal ------------------------------------------------------------------------------


def _fence(out: Outcome[AcquireReply]) -> int:
    if not isinstance(out.reply, Granted | Rejoined):
        raise RuntimeError(f"the bench's own acquire was refused: {out.reply!r}")
    return out.reply.fence


async def renewal(b: Bench) -> dict[str, Any]:
    n, rounds = b.plan.leases, b.plan.renew_rounds
    ttl_ms = 120_000  # nothing expires while the baseline takes its time
    lease = b.lease_scripts("renew", lease_ttl_ms=ttl_ms)
    client = aioredis.Redis.from_url(b.redis_url, decode_responses=True, max_connections=64)
    try:
        await lease.gateway.start()
        fences: dict[tuple[str, str], int] = {}
        for start in range(0, n, 50):  # redis-py's pool holds 100 connections at most
            outs = await asyncio.gather(
                *(lease.acquire(f"r{i}", "renew", "Renew", "t", "c") for i in range(start, min(n, start + 50)))
            )
            fences.update({(f"r{start + j}", ""): _fence(out) for j, out in enumerate(outs)})
        ours: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            renewed, _ = await lease.tick(fences, {})
            ours.append(time.perf_counter() - started)
            if not all(renewed.values()):
                raise RuntimeError("a batched renewal failed")

        locks = [Lock(client, f"{b.prefix}lock:{i}", timeout=ttl_ms / 1000) for i in range(n)]
        for start in range(0, n, 50):
            await asyncio.gather(*(lk.acquire(blocking=False) for lk in locks[start : start + 50]))
        theirs: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            for lk in locks:  # each holder extends its own lock: one round trip per lease
                await lk.extend(ttl_ms / 1000, replace_ttl=True)
            theirs.append(time.perf_counter() - started)
        o, t = summary(ours), summary(theirs)
        # Ours: that many script calls in one pipeline (one round trip); theirs: one round trip each.
        return {"leases": n, "rounds": rounds, "ours": o, "lock_extend": t,
                "script_calls_ours": len(lease.renew_calls(fences)),
                "ratio": t["p50"] / o["p50"]}
    finally:
        await lease.gateway.close()
        await client.aclose()


# -- 4. takeover notification across processes -------------------------------------------------


async def takeover_latency(b: Bench, a: ServerProcess, bserver: ServerProcess) -> dict[str, Any]:
    n = b.plan.takeovers
    ws = "bench-takeover"
    left = await b.tab(a, "left", ws)
    right = await b.tab(bserver, "right", ws)
    if (await left.request({"type": "acquire", "id": 0}))["type"] != "acquired":
        raise RuntimeError("no initial lease")
    holder, taker = left, right
    ours: list[float] = []
    for i in range(1, n + 1):
        lost = holder.next(lambda m: m.get("type") == "released")
        reply = taker.next(lambda m, i=i: m.get("id") == i)  # type: ignore[misc]
        started = time.perf_counter()
        taker.send({"type": "takeover", "id": i})
        await asyncio.wait_for(lost, 10)
        ours.append(time.perf_counter() - started)
        if (await asyncio.wait_for(reply, 10))["type"] != "acquired":
            raise RuntimeError("takeover refused")
        await asyncio.sleep(GAP_S)
        holder, taker = taker, holder  # every sample crosses processes, both ways in turn
    left.close()
    right.close()

    # The raw hop: redis-py PUBLISH on one connection, a subscriber on another, in this process.
    pub = aioredis.Redis.from_url(b.redis_url)
    sub: Any = aioredis.Redis.from_url(b.redis_url).pubsub()
    channel = f"{b.prefix}hop"
    hop: list[float] = []
    try:
        await sub.subscribe(channel)
        await sub.get_message(timeout=2)  # the confirmation
        for i in range(n + 20):
            started = time.perf_counter()
            await pub.publish(channel, str(i))
            msg = None
            while msg is None or msg["type"] != "message":
                msg = await sub.get_message(timeout=5)
                if msg is None:
                    raise RuntimeError("a published message did not arrive")
            if i >= 20:
                hop.append(time.perf_counter() - started)
            await asyncio.sleep(GAP_S)
    finally:
        await sub.aclose()
        await pub.aclose()
    o, h = summary(ours), summary(hop)
    return {"ours": o, "pubsub_hop": h, "ratio_p50": o["p50"] / h["p50"], "ratio_p99": o["p99"] / h["p99"]}


# -- 5. free detection after SIGKILL ---------------------------------------------------------------


async def free_detection(b: Bench) -> dict[str, Any]:
    plan = b.plan
    settings = timings(plan.kill_heartbeat_ms, PRESENCE_LEASE_TTL_MS=str(plan.kill_ttl_ms))
    watcher_server = await b.server("watch", keys="kill", **settings)
    holder_server = await b.server("hold", keys="kill", **settings)
    detected: list[float] = []
    for r in range(plan.kills):
        ws = f"bench-kill-{r}"
        watcher = await b.tab(watcher_server, "watcher", ws)
        holder = await b.tab(holder_server, "holder", ws)
        seen = watcher.next(lambda m: m.get("type") == "update" and m.get("holder") is not None)
        if (await holder.request({"type": "acquire", "id": 1}))["type"] != "acquired":
            raise RuntimeError("no lease to lose")
        await asyncio.wait_for(seen, 5)
        # A random phase of the renewal cycle: the lease has between TTL - heartbeat and TTL left.
        await asyncio.sleep(random.uniform(1, 2) * plan.kill_heartbeat_ms / 1000)
        freed = watcher.next(_freed)
        started = time.perf_counter()
        holder_server.kill()
        await asyncio.wait_for(freed, plan.kill_ttl_ms / 1000 + 10)
        detected.append(time.perf_counter() - started)
        watcher.close()
        holder.abort()
        if r + 1 < plan.kills:
            await holder_server.start_async()
    s = summary(detected)
    return {"ttl_ms": plan.kill_ttl_ms, "heartbeat_ms": plan.kill_heartbeat_ms, "detect": s,
            "ratio_max": s["max"] / plan.kill_ttl_ms}


def _freed(m: Message) -> bool:
    # An update with the holder gone (``holder`` present and null) that names the expiry.
    return (m.get("type") == "update" and "holder" in m and m["holder"] is None
            and (m.get("change") or {}).get("kind") == "expired")
