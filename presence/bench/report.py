"""The bench's report: one row per figure (ours, baseline, ratio, goal, met), printed as a table,
written as JSON, optionally drawn as a PNG (matplotlib, the optional extra ``chart``)."""

from __future__ import annotations

import importlib
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Row:
    figure: str
    name: str
    ours: str
    baseline: str
    ratio: float | None  # ours / baseline, or baseline / ours where "times less" is the goal
    goal: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {"figure": self.figure, "name": self.name, "ours": self.ours, "baseline": self.baseline,
                "ratio": self.ratio, "goal": self.goal, "met": self.met}


def _ms(v: float) -> str:
    return f"{v:.3f} ms" if v < 10 else f"{v:.1f} ms"


def rows(figures: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    if (f := figures.get("acquire")) is not None:
        for p, limit in (("p50", 1.5), ("p99", 2.0)):
            ratio = f[f"ratio_{p}"]
            out.append(Row("1", f"acquire round trip {p}", _ms(f["ours"][p]),
                           f"{_ms(f['floor'][p])} (WS echo {_ms(f['echo'][p])} + EVALSHA 'return 1' "
                           f"{_ms(f['lua'][p])})", ratio, f"<= {limit}x", ratio <= limit))
        if "script_floor" in f:
            # Context: the floor with our own acquire script in place of the minimal one, so the
            # rows above split into Redis' share of the script and the server's own time.
            for p in ("p50", "p99"):
                out.append(Row("1", f"acquire round trip vs echo + our script, {p}", _ms(f["ours"][p]),
                               f"{_ms(f['script_floor'][p])} (WS echo + acquire script {_ms(f['script'][p])})",
                               f[f"script_ratio_{p}"], "none", None))
    if (f := figures.get("idle")) is not None:
        o, b = f["ours"], f["bare"]
        out.append(Row("2", f"idle CPU, {f['tabs']} tabs, heartbeat {f['heartbeat_ms']} ms",
                       f"{o['cpu_pct']:.2f}% of a core", f"{b['cpu_pct']:.2f}% (bare pings)", f["cpu_ratio"],
                       "<= 1.5x", f["cpu_ratio"] <= 1.5))
        out.append(Row("2", "memory per tab", f"{o['kib_per_tab']:.1f} KiB", f"{b['kib_per_tab']:.1f} KiB (bare)",
                       None, "<= 40 KiB", o["kib_per_tab"] <= 40))
        rt, small = o.get("round_trips_per_tick"), f["tenth"].get("round_trips_per_tick")
        if rt is not None and small is not None:
            out.append(Row("2", "Redis round trips per tick", f"{rt:.2f} with {f['tabs']} tabs "
                           f"({o['scripts_per_tick']:.0f} script calls)", f"{small:.2f} with {f['tenth']['tabs']} "
                           f"tabs ({f['tenth']['scripts_per_tick']:.0f})", rt / small, "constant",
                           rt <= small + 0.5))
    if (f := figures.get("renewal")) is not None:
        out.append(Row("3", f"renew {f['leases']} leases, per tick", _ms(f["ours"]["p50"]),
                       f"{_ms(f['lock_extend']['p50'])} (Lock.extend each)", f["ratio"], ">= 20x less time",
                       f["ratio"] >= 20))
    if (f := figures.get("takeover")) is not None:
        limits: tuple[tuple[str, float | None], ...] = (("p50", None), ("p99", 2.0))
        for p, most in limits:
            ratio = f[f"ratio_{p}"]
            out.append(Row("4", f"takeover notice, other process, {p}", _ms(f["ours"][p]),
                           f"{_ms(f['pubsub_hop'][p])} (PUBLISH to subscriber)", ratio,
                           f"<= {most}x" if most else "none", ratio <= most if most else None))
        if (a := figures.get("acquire")) is not None:
            # The path's own floor: the request's WS round trip and a minimal script call (figure
            # 1's floor) plus the hop to the other process. Context for the goal above (the hop).
            for p in ("p50", "p99"):
                floor = a["floor"][p] + f["pubsub_hop"][p]
                out.append(Row("4", f"takeover notice vs its path's floor, {p}", _ms(f["ours"][p]),
                               f"{_ms(floor)} (WS echo + EVALSHA + hop)", f["ours"][p] / floor, "none", None))
    if (f := figures.get("free")) is not None:
        d = f["detect"]
        out.append(Row("5", "free after SIGKILL of the holder's process", f"max {d['max'] / 1000:.2f} s "
                       f"(mean {d['mean'] / 1000:.2f} s, n={d['n']})", f"lease TTL {f['ttl_ms'] / 1000:.1f} s",
                       f["ratio_max"], "<= TTL + 1 s", d["max"] <= f["ttl_ms"] + 1000))
    if (f := figures.get("room")) is not None:
        small, big = f["rooms"][0], f["rooms"][-1]
        out.append(Row("7", f"CPU per join, {big['tabs']} users in one workspace", f"{big['cpu_ms_per_join']:.2f} ms",
                       f"{small['cpu_ms_per_join']:.2f} ms with {small['tabs']}", f["cpu_ratio"], "<= 1.5x",
                       f["cpu_ratio"] <= 1.5))
        out.append(Row("7", f"bytes per tab, {big['tabs']} users (growth / N's)",
                       f"{big['bytes_per_tab'] / 1024:.1f} KiB", f"{small['bytes_per_tab'] / 1024:.1f} KiB with "
                       f"{small['tabs']}", f["bytes_growth"], "<= 1x (linear)", f["bytes_growth"] <= 1.0))
        out.append(Row("7", f"every tab sees all {big['tabs']} users", f"{big['all_seen_s']:.2f} s",
                       f"{small['all_seen_s']:.2f} s with {small['tabs']}", None, "none", None))
        rb, rs = big["redis_per_tick"], small["redis_per_tick"]
        out.append(Row("7", f"Redis per tick, {big['tabs']} idle tabs in one workspace",
                       f"{rb['scripts']:.1f} scripts, {rb['script_ms']:.2f} ms",
                       f"{rs['scripts']:.1f} scripts, {rs['script_ms']:.2f} ms with {small['tabs']}", None,
                       "constant round trips", rb["scripts"] <= rs["scripts"] + 0.5))
    if (f := figures.get("status")) is not None:
        small, big = f["storms"][0], f["storms"][-1]
        out.append(Row("8", f"CPU per status, {big['tabs']}-tab workspace", f"{big['cpu_ms_per_status']:.3f} ms",
                       f"{small['cpu_ms_per_status']:.3f} ms with {small['tabs']} tabs", f["ratio"], "<= 2x",
                       f["ratio"] <= 2.0))
    if (f := figures.get("watch")) is not None and f["latency"].get("n"):
        lat = f["latency"]
        what = f"{f['watchers']} watchers x {f['per_watcher']} workspaces, {f['rate']:g} changes/s"
        for p in ("p50", "p99"):
            out.append(Row("10", f"lease delivery to watchers, {p} ({what})", _ms(lat[p]),
                           "1000 ms (the promise)", lat[p] / 1000, "<= 1 s", lat[p] <= 1000))
        out.append(Row("10", f"server CPU, {f['deliveries']} of {f['expected']} deliveries",
                       f"{f['cpu_pct']:.1f}% of a core ({f['cpu_ms_per_delivery'] * 1000:.0f} us each)",
                       f"{f['idle_cpu_pct']:.1f}% (same watchers idle)", None, "every delivery made",
                       f["deliveries"] >= f["expected"]))
    if (f := figures.get("storm")) is not None:
        out.append(Row("6", f"reconnect storm, {f['tabs']} tabs", f"{f['ours_s']:.2f} s, "
                       f"{f['leases_lost']} of {f['holders']} leases lost", f"{f['bare_s']:.2f} s (bare handshakes)",
                       f["ratio"], "no lease lost", f["leases_lost"] == 0 and f["ours_connected"] == f["tabs"]))
    if (f := figures.get("restart")) is not None:
        out.append(Row("11", f"rolling restart under load, {f['tabs_closed']} of {f['tabs']} tabs closed",
                       f"{f['sigterm_to_all_back_s']:.2f} s, {f['leases_lost']} of {f['holders']} leases lost, "
                       f"{f['survivor_cpu_ms_per_rejoin']:.2f} ms CPU per rejoin",
                       f"lease TTL {f['lease_ttl_ms'] / 1000:.1f} s, {f['busy_loops']} busy loops", None,
                       "no lease lost", f["leases_lost"] == 0 and f["tabs_back"] == f["tabs_closed"]))
    if (f := figures.get("wait")) is not None:
        for p in ("p50", "p99"):
            out.append(Row("9", f"acquire with WAIT 1 replica, {p}",
                           f"{_ms(f['ours'][p])} ({f['cost_' + p]:+.3f} ms)", f"{_ms(f['without'][p])} (no WAIT)",
                           f["ours"][p] / f["without"][p], "none", None))
    return out


def table(rs: list[Row]) -> str:
    head = ("#", "figure", "ours", "baseline", "ratio", "goal", "met")
    body = [(r.figure, r.name, r.ours, r.baseline, f"{r.ratio:.2f}x" if r.ratio is not None else "", r.goal,
             {True: "yes", False: "NO", None: ""}[r.met]) for r in rs]
    return grid(head, body)


def grid(head: tuple[str, ...], body: Sequence[tuple[str, ...]]) -> str:
    """Columns aligned, a rule under the head."""
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine(redis_version: str) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(next(li for li in Path("/proc/meminfo").read_text().splitlines()
                           if li.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kib = 0

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 2**20, 1),
            "platform": platform.platform(), "python": sys.version.split()[0], "redis": redis_version,
            "redis_py": version("redis"), "hiredis": version("hiredis"), "uvicorn": version("uvicorn"),
            "starlette": version("starlette"), "websockets": version("websockets"), "uvloop": version("uvloop")}


def chart(rs: list[Row], path: str) -> None:
    try:  # an optional extra: imported by name, so type checking does not need it installed
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:
        raise RuntimeError("--chart needs matplotlib: pip install 'presence[chart]'") from exc
    shown = [r for r in rs if r.ratio is not None]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(shown) + 1.5))
    names = [f"{r.figure}. {r.name}" for r in shown]
    colors = ["#3a7d44" if r.met else "#c0392b" if r.met is False else "#7f8c8d" for r in shown]
    ax.barh(names, [r.ratio or 0 for r in shown], color=colors)
    for i, r in enumerate(shown):
        ax.text((r.ratio or 0) * 1.02, i, f"{r.ratio:.2f}x   goal {r.goal}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(r.ratio or 1 for r in shown) * 8)  # room for the labels
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the baseline measured in the same run (log scale)")
    ax.set_title("presence bench")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
