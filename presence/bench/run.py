"""One run of ``presence bench``: start the processes, measure the figures asked for, report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import secrets
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from . import locks, metas, peer, peertable, report
from .durability import wait_cost
from .harness import Bench, Plan, timings
from .locks import LockPlan, named_locks
from .metas import MetaPlan, meta_fanout
from .procs import RedisServer, fd_limit, raise_fd_limit
from .restart import restart_under_load
from .rooms import big_rooms, status_storms
from .scenarios import acquire_latency, free_detection, idle_and_storm, renewal, takeover_latency
from .watching import WatchPlan, watch_fanout


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, only: set[str]) -> dict[str, Any]:
    quick = bool(args.quick)
    tabs = args.tabs or (200 if quick else 5000)
    heartbeat = args.heartbeat_ms or (500 if quick else 5000)
    plan = Plan.quick(tabs, heartbeat) if quick else Plan.full(tabs, heartbeat)
    raise_fd_limit()
    # The farm holds one socket per tab, the server as many plus its own: both must fit.
    if fd_limit() < plan.tabs + 200:
        raise SystemExit(f"presence bench: {plan.tabs} tabs need more open files than the limit "
                         f"({fd_limit()}); raise it (ulimit -Hn) or pass --tabs")
    timeout = args.timeout or (300.0 if quick else 900.0)
    own_redis = None
    redis_url = args.redis_url
    if redis_url is None:
        own_redis = await RedisServer().start_async()
        redis_url = own_redis.url
    prefix = f"bench{secrets.token_hex(3)}"
    bench = Bench(plan, redis_url, prefix, _log)
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    load_before = _loadavg()
    deadline = asyncio.timeout(timeout)
    failed = True
    try:
        async with deadline:
            await bench.farm.start()
            sizes = ((WatchPlan.quick(), MetaPlan.quick(), LockPlan.quick()) if quick
                     else (WatchPlan.full(), MetaPlan.full(), LockPlan.full()))
            await measure(bench, only, figures, *sizes)
            if args.peer:
                _log(f"the peer comparison: presence and {args.peer} on one workload")
                figures["peer"] = await peer.from_args(args, plan, _log)
        failed = False
    except TimeoutError:
        if not deadline.expired():
            raise
        _log(f"gave up after {timeout:.0f} s (--timeout); reporting what was measured")
    finally:
        await bench.close(keep_logs=failed)
        redis_version = await _redis_version(redis_url)
        if own_redis is not None:
            own_redis.close()
        else:
            await _forget(redis_url, prefix)

    return {"mode": "quick" if quick else "full", "seconds": time.perf_counter() - started,
            # Whatever else ran on the machine meanwhile shows here (1-minute load averages).
            "load_average": {"before": load_before, "after": _loadavg()},
            "plan": dataclasses.asdict(plan), "machine": report.machine(redis_version), "figures": figures}


def output(result: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [*report.rows(result["figures"]), *metas.rows(result["figures"]), *locks.rows(result["figures"])]
    result["rows"] = [r.as_dict() for r in rows]
    load = result["load_average"]
    print(f"\npresence bench ({result['mode']}), {result['seconds']:.0f} s, load average "
          f"{load['before']:.2f} before, {load['after']:.2f} after\n")
    if rows:
        print(report.table(rows))
    if (p := result["figures"].get("peer")) is not None:
        if "skipped" in p:
            print(f"\npeer comparison skipped: {p['skipped']}")
        else:
            prows = peertable.rows(p)
            result["peer_rows"] = [r.as_dict() for r in prows]
            versions = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
            print(f"\npresence and {p['peer']} side by side ({versions})\n")
            print(peertable.table(p, prows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.chart:
        report.chart(rows, args.chart)


async def measure(b: Bench, only: set[str], figures: dict[str, Any], watch: WatchPlan | None = None,
                  meta: MetaPlan | None = None, lock: LockPlan | None = None) -> None:
    plan = b.plan
    if only & {"acquire", "takeover"}:
        _log("starting two servers and the bare server")
        a = await b.server("a", keys="ab", **timings(5000))
        other = await b.server("b", keys="ab", **timings(5000))
        bare = await b.bare(plan.heartbeat_ms)
        if "acquire" in only:
            _log(f"1. acquire round trip, {plan.samples} samples")
            figures["acquire"] = await acquire_latency(b, a, bare)
        if "takeover" in only:
            _log(f"4. takeover notice across processes, {plan.takeovers} samples")
            figures["takeover"] = await takeover_latency(b, a, other)
        for proc in (a, other, bare):
            proc.close()
    if "renewal" in only:
        _log(f"3. renewing {plan.leases} leases: batched tick vs Lock.extend")
        figures["renewal"] = await renewal(b)
    if "idle" in only:
        _log(f"2. idle cost of {plan.tabs} tabs, and 6. reconnect storm")
        figures["idle"], figures["storm"] = await idle_and_storm(b)
    if "restart" in only:
        _log(f"11. rolling restart under load: {plan.tabs} tabs on two workers, busy loops on every core, "
             "SIGTERM to one worker")
        figures["restart"] = await restart_under_load(b)
    if "free" in only:
        _log(f"5. free detection after SIGKILL, {plan.kills} times")
        figures["free"] = await free_detection(b)
    if "room" in only:
        _log(f"7. big room: {' and '.join(map(str, plan.rooms))} tabs joining one workspace on two servers")
        figures["room"] = await big_rooms(b, plan.rooms)
    if "status" in only:
        _log(f"8. status storm in workspaces of {' and '.join(map(str, plan.status_rooms))} tabs")
        figures["status"] = await status_storms(b, plan.status_rooms, plan.status_rounds)
    if "wait" in only:
        _log(f"9. acquire round trip with WAIT for one replica, {plan.samples} samples")
        figures["wait"] = await wait_cost(b)
    if "watch" in only:
        w = watch or WatchPlan.full()
        _log(f"10. {w.watchers} watchers of {w.per_watcher} workspaces each on two servers, "
             f"{w.rate:g} lease changes/s")
        figures["watch"] = await watch_fanout(b, w)
    if "metas" in only:
        m = meta or MetaPlan.full()
        _log(f"12. meta fan-out: {m.tabs} tabs in one workspace on two servers, {m.senders} sending metas at "
             f"{m.hz:g} Hz for {m.seconds:g} s")
        figures["metas"] = await meta_fanout(b, m)
    if "locks" in only:
        k = lock or LockPlan.full()
        _log(f"13. {k.locks} named locks in one workspace: Redis round trips per tick, acquire round trip "
             f"vs the lease, {k.samples} samples each")
        figures["locks"] = await named_locks(b, k)


def _loadavg() -> float:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


async def _redis_version(url: str) -> str:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return str((await client.info("server"))["redis_version"])
    except Exception:
        return "?"
    finally:
        await client.aclose()


async def _forget(url: str, prefix: str) -> None:
    """Delete this run's keys from a Redis the bench did not start."""
    client = aioredis.Redis.from_url(url)
    with contextlib.suppress(Exception):
        batch = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    await client.aclose()
