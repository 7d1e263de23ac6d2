"""Overview: what operators see of the workspaces and servers, read from Redis (never from this
process's rooms, which only know the workspaces it has tabs in).

The active-workspace index (:mod:`presence.registry`) names the workspaces; each one is read
with the ``snapshot`` script, a few at a time so a long list never opens many connections.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

import msgspec

from .replica import Snapshot, TabInfo

if TYPE_CHECKING:
    from .hub import Hub

CONCURRENCY = 16  # snapshot scripts in flight at once

_info = msgspec.json.Decoder(TabInfo)


async def snapshots(hub: Hub, workspaces: list[str]) -> list[Snapshot]:
    out: list[Snapshot] = []
    for i in range(0, len(workspaces), CONCURRENCY):
        chunk = workspaces[i : i + CONCURRENCY]
        results = await asyncio.gather(*(hub.lease.snapshot(ws) for ws in chunk))
        out += [snap for snap, _ in results]
    return out


def describe(workspace: str, snap: Snapshot, now: int, detail: bool = False) -> dict[str, Any]:
    """One workspace as JSON: holder (with how long it has held it), TTL, viewers and counts."""
    tabs: list[dict[str, Any]] = []
    for conn, raw in sorted((snap.tabs or {}).items()):
        try:
            t = _info.decode(raw)
        except msgspec.DecodeError:
            continue
        tabs.append({"conn": conn, "user": {"id": t.user, "name": t.name}, "tab": t.tab, "active": t.active,
                     "meta": t.meta, "server": t.server})
    users: dict[str, dict[str, Any]] = {}
    for tab in tabs:
        u = users.setdefault(tab["user"]["id"], {"user": tab["user"], "tabs": 0, "active": False})
        u["tabs"] += 1
        u["active"] = u["active"] or tab["active"]
    h = snap.holder
    holder = None
    if h is not None:
        holder = {"user": {"id": h.user, "name": h.name}, "fence": h.fence, "tab": h.tab, "since_ms": h.since,
                  "held_ms": max(0, now - h.since),
                  "tabs": sum(1 for tab in tabs if tab["user"]["id"] == h.user)}
    out: dict[str, Any] = {
        "workspace": workspace, "seq": snap.seq, "holder": holder,
        "ttl_ms": snap.ttl_ms if h is not None and snap.ttl_ms >= 0 else None,
        "viewers": sorted(users.values(), key=lambda u: (u["user"]["name"], u["user"]["id"])),
        "tabs": len(tabs), "servers": sorted({tab["server"] for tab in tabs}),
    }
    if detail:
        out["tab_list"] = tabs
    return out


def totals(servers: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums over the live servers; the dashboard plots differences between two of these."""
    events: Counter[str] = Counter()
    buckets: list[int] = []
    for s in servers:
        events.update({k: int(v) for k, v in (s.get("events") or {}).items()})
        b = s.get("acquire_buckets") or []
        if len(buckets) < len(b):
            buckets += [0] * (len(b) - len(buckets))
        for i, n in enumerate(b):
            buckets[i] += int(n)
    return {
        "connections": sum(int(s.get("connections", 0)) for s in servers),
        "leases": sum(int(s.get("leases", 0)) for s in servers),
        "events": dict(events), "acquire_buckets": buckets,
        "latency_bounds": next((s["latency_bounds"] for s in servers if s.get("latency_bounds")), []),
    }


async def overview(hub: Hub, q: str, limit: int) -> dict[str, Any]:
    """Active workspaces whose id contains ``q`` (case-insensitive; the first ``limit`` by id),
    the live servers and their totals."""
    census = await hub.ops.registry.census(with_workspaces=True)
    needle = q.lower()
    names = [w for w in census.workspaces if needle in w.lower()]
    snaps = await snapshots(hub, names[:limit])
    return {
        "now": census.now, "total": len(census.workspaces), "matching": len(names),
        "workspaces": [describe(w, s, census.now) for w, s in zip(names, snaps, strict=False)],
        "servers": census.servers, "totals": totals(census.servers),
    }
