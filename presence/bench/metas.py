"""Figure 12: presence meta fan-out. N tabs of N users in one workspace, alternately on two server
processes (the tabs in a farm process of their own, :mod:`.metafarm`); some of them send a meta
(``status{meta: {cursor: n}}``) at a steady rate, as a moving cursor does. Measured: the servers'
CPU per meta sent (``/proc``), the frames each tab receives per second (the update window merges
what happens within 50 ms: at most 20 a second, whatever the senders do), the time from a meta's
send until the last other tab shows it or a later one (p50, p99), the Redis commands per meta
(``INFO commandstats``), and whether every tab ends with exactly each sender's last meta (a
correctness check: the figure fails without it). The baseline: the same tabs idle for as long.

The servers run with the production rate limits (statuses are free; a tab may send 100 frames a
second), so the figure also checks that no sender is answered with an error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from ..settings import Settings
from .harness import HOST, Bench, Farm, summary, timings
from .procs import ServerProcess
from .report import Row, _ms
from .wsclient import WsClient, hello

FRAMES_GOAL = 20.0  # frames per second each tab receives
LATENCY_GOAL_MS = 100.0  # p99, send to the last tab


@dataclasses.dataclass(frozen=True, slots=True)
class MetaPlan:
    tabs: int  # in the one workspace, half on each server
    senders: int  # of them, sending metas
    hz: float  # metas per second per sender
    seconds: float  # of sending; the idle baseline lasts as long
    settle_s: float = 5.0  # after the last meta, for every tab to show every sender's last one

    @classmethod
    def full(cls) -> MetaPlan:
        return cls(tabs=100, senders=10, hz=60.0, seconds=10.0)

    @classmethod
    def quick(cls) -> MetaPlan:
        return cls(tabs=20, senders=4, hz=60.0, seconds=2.0)


def _production_limits() -> dict[str, str]:
    """The default rate limits, which the bench's servers otherwise raise for its latency loops."""
    d = {f.name: f.default for f in dataclasses.fields(Settings)}
    return {f"PRESENCE_{name.upper()}": str(d[name])
            for name in ("rate_limit", "rate_burst", "user_rate_limit", "user_rate_burst")}


async def meta_fanout(b: Bench, plan: MetaPlan) -> dict[str, Any]:
    settings = timings(5000, **_production_limits())
    servers = [await b.server(f"metas-{n}", keys="metas", **settings) for n in ("a", "b")]
    tabs = Farm([sys.executable, "-m", "presence.bench.metafarm"])
    redis = aioredis.Redis.from_url(b.redis_url, decode_responses=True)
    try:
        await tabs.start()
        return await _measure(b, plan, servers, tabs, redis)
    finally:
        await tabs.close()
        await redis.aclose()
        for s in servers:
            s.close()


async def _measure(b: Bench, plan: MetaPlan, servers: list[ServerProcess], tabs: Farm, redis: Any) -> dict[str, Any]:
    ws = "bench-metas"
    opened = await tabs.call("open", host=HOST, port=servers[0].port, ports=[s.port for s in servers],
                             tabs=[[f"metas-{i}", ws, f"metas-tab-{i}"] for i in range(plan.tabs)],
                             parallel=b.plan.parallel, timeout=120)
    if opened["connected"] != plan.tabs:
        raise RuntimeError(f"only {opened['connected']} of {plan.tabs} tabs joined: {opened['errors']}")
    await tabs.call("wait_viewers", viewers=plan.tabs, timeout=60)
    await asyncio.sleep(0.2)  # the joins' last updates

    def cpu() -> float:
        return sum(s.cpu_seconds() for s in servers)

    # The baseline: the same tabs, idle, for as long as the metas will be sent.
    f0, r0, c0, t0 = await tabs.call("frames"), await b.redis_info(redis), cpu(), time.perf_counter()
    await asyncio.sleep(plan.seconds)
    f1, r1, c1, t1 = await tabs.call("frames"), await b.redis_info(redis), cpu(), time.perf_counter()
    idle = {"seconds": t1 - t0, "cpu_s": c1 - c0, "cpu_pct": (c1 - c0) * 100 / (t1 - t0),
            "redis_commands": r1["commands"] - r0["commands"],
            "frames_per_s": _rates([b1 - b0 for b0, b1 in zip(f0["frames"], f1["frames"], strict=True)], t1 - t0)}

    # The first tabs: on both servers in turn, as the farm opened them.
    senders = list(range(plan.senders))
    r0, c0, t0 = await b.redis_info(redis), cpu(), time.perf_counter()
    out = await tabs.call("metas", senders=senders, hz=plan.hz, seconds=plan.seconds, settle_s=plan.settle_s,
                          timeout=plan.seconds + plan.settle_s + 60)
    r1, c1, t1 = await b.redis_info(redis), cpu(), time.perf_counter()
    # Metas sent ``settle_s`` ago may still be on their way: what a new tab's snapshot says.
    late = [await _new_tab_metas(b, s, f"metas-new-{n}", ws, [f"metas-{i}" for i in senders])
            for n, s in enumerate(servers)]
    await tabs.call("close_all")
    sent, window, rates = out["sent"], out["window_s"], out["update_rates"] or [0.0]
    lat = summary(out["latencies"])
    last = {"cursor": int(plan.hz * plan.seconds)}
    late_exact = sum(1 for metas in late for m in metas.values() if m == last)
    return {
        "plan": dataclasses.asdict(plan), "sent": sent, "window_s": window, "busy_s": t1 - t0,
        "cpu_s": c1 - c0, "cpu_pct": (c1 - c0) * 100 / (t1 - t0), "cpu_us_per_meta": (c1 - c0) * 1e6 / sent,
        "redis_commands": r1["commands"] - r0["commands"],
        "redis_commands_per_meta": (r1["commands"] - r0["commands"]) / sent,
        "evalsha_per_meta": (r1["evalsha"] - r0["evalsha"]) / sent,
        "frames_per_s": _rates(out["frames"], window), "updates_per_s": _rates(out["updates"], window),
        "update_rate": {"mean": statistics.fmean(rates), "max": max(rates)},
        "latency": lat, "missed": out["missed"], "sender_errors": out["sender_errors"],
        "final_exact": out["final_exact"], "final_pairs": out["final_pairs"], "settle_s": out["settle_s"],
        "new_tab_exact": late_exact, "new_tab_pairs": len(late) * len(senders),
        "correct": out["final_exact"] == out["final_pairs"] and late_exact == len(late) * len(senders)
        and out["missed"] == 0 and out["sender_errors"] == 0,
        "idle": idle,
    }


def _rates(counts: list[int], seconds: float) -> dict[str, float]:
    per_s = [c / seconds for c in counts]
    return {"mean": statistics.fmean(per_s), "max": max(per_s), "min": min(per_s)}


async def _new_tab_metas(b: Bench, server: ServerProcess, user: str, ws: str, senders: list[str]) -> dict[str, Any]:
    """A new tab's ``welcome`` snapshot: each sender's meta in it."""
    client = await WsClient.connect(HOST, server.port)
    try:
        welcome = client.next(lambda m: m.get("type") == "welcome")
        client.send(hello(b.token(user), ws, f"{user}-tab"))
        viewers = (await asyncio.wait_for(welcome, 10))["state"]["viewers"]
    finally:
        client.close()
    return {v["user"]["id"]: (v.get("presence") or [{}])[0].get("meta") for v in viewers if v["user"]["id"] in senders}


def rows(figures: dict[str, Any]) -> list[Row]:
    if (f := figures.get("metas")) is None:
        return []
    p, ok = f["plan"], f["correct"]
    what = f"{p['tabs']} tabs, {p['senders']} sending at {p['hz']:g} Hz"
    rate, frames, lat, idle = f["update_rate"], f["frames_per_s"], f["latency"], f["idle"]
    out = [
        Row("12", f"meta fan-out, server CPU per meta ({what})",
            f"{f['cpu_us_per_meta']:.0f} us ({f['cpu_pct']:.1f}% of a core)",
            f"{idle['cpu_pct']:.1f}% (the same tabs idle)", None, "none", None),
        Row("12", "meta fan-out, frames per second each tab receives (most)",
            f"{rate['max']:.2f} updates (mean {rate['mean']:.2f}); {frames['max']:.2f} frames in the window",
            f"{idle['frames_per_s']['max']:.2f} frames idle", None, f"<= {FRAMES_GOAL:g}",
            ok and rate["max"] <= FRAMES_GOAL),
    ]
    if lat.get("n"):
        out += [Row("12", f"meta fan-out, send to the last tab, {q}", _ms(lat[q]), f"{LATENCY_GOAL_MS:g} ms (the goal)",
                    lat[q] / LATENCY_GOAL_MS, goal, met)
                for q, goal, met in (("p50", "none", None),
                                     ("p99", f"<= {LATENCY_GOAL_MS:g} ms", ok and lat["p99"] <= LATENCY_GOAL_MS))]
    out += [
        Row("12", "meta fan-out, Redis commands per meta",
            f"{f['redis_commands_per_meta']:.2f} ({f['evalsha_per_meta']:.2f} scripts)",
            f"{idle['redis_commands']:.0f} commands in {idle['seconds']:.0f} s idle", None, "none", None),
        Row("12", "meta fan-out, final metas exact",
            f"{f['final_exact']} of {f['final_pairs']} (tab, sender), {f['new_tab_exact']} of {f['new_tab_pairs']} "
            f"in new tabs", f"{f['missed']} metas missed, {f['sender_errors']} errors", None,
            "every one", ok),
    ]
    return out

