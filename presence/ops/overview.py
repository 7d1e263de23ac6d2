"""Overview: what operators see of the workspaces and servers, read from Redis (never from this
process's cores, which only know the workspaces it has tabs in).

The active-workspace index (:mod:`presence.ops.registry`) names the workspaces; each one is read
with the ``snapshot`` script, a few at a time so a long list never opens many connections. A
workspace is shown through the pure lease view (:mod:`~presence.core.lease_view`), so viewers,
tab counts and holders are the same as tabs see them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec

from ..core.lease_view import lease_view, tab_infos, viewers
from ..core.records import Snapshot
from ..gateway.gateway import Gateway
from ..gateway.leases import LeaseScripts
from .registry import Registry

CONCURRENCY = 16  # snapshot scripts in flight at once

_plain = msgspec.to_builtins


async def snapshots(leases: LeaseScripts, workspaces: list[str]) -> list[Snapshot]:
    out: list[Snapshot] = []
    for i in range(0, len(workspaces), CONCURRENCY):
        chunk = workspaces[i : i + CONCURRENCY]
        out += await asyncio.gather(*(leases.read(ws) for ws in chunk))
    return out


def describe(workspace: str, snap: Snapshot, now: int, detail: bool = False) -> dict[str, Any]:
    """One workspace as JSON: holder (with how long it has held it), TTL, viewers and counts, and
    its named locks that are held."""
    infos = tab_infos(snap)
    tabs = [
        {"conn": conn, "user": {"id": t.user, "name": t.name}, "tab": t.tab, "active": t.active,
         "meta": t.meta, "server": t.server}
        for conn, t in sorted(infos.items())
    ]
    locks = {}
    for lock in sorted(snap.locks or {}):
        held = _held(snap, lock, now)
        if held is not None:
            locks[lock] = held
    own = _held(snap, "", now)
    out: dict[str, Any] = {
        "workspace": workspace, "seq": snap.seq, "holder": None if own is None else own["holder"],
        "ttl_ms": None if own is None else own["ttl_ms"],
        "viewers": _plain(viewers(snap)),
        "tabs": len({(t.user, t.tab) for t in infos.values()}),
        "servers": sorted({t.server for t in infos.values()}),
        "locks": locks,
    }
    if detail:
        out["tab_list"] = tabs
    return out


def _held(snap: Snapshot, lock: str, now: int) -> dict[str, Any] | None:
    """A lock's holder as operators see it: the holder view, its tab id, how long it has held
    it, and the TTL left (None when the lease key is already gone)."""
    view = lease_view(snap, lock)
    h = snap.lock(lock).holder
    if view.holder is None or h is None:
        return None
    ttl = snap.lock(lock).ttl_ms
    holder = {**_plain(view.holder), "tab": h.tab, "held_ms": max(0, now - h.since)}
    return {"holder": holder, "ttl_ms": ttl if ttl >= 0 else None}


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


class Overview:
    def __init__(self, gateway: Gateway, leases: LeaseScripts, registry: Registry) -> None:
        self.gateway = gateway
        self.leases = leases
        self.registry = registry

    async def workspace(self, workspace: str) -> dict[str, Any]:
        """One workspace with every tab."""
        snap, now = await asyncio.gather(self.leases.read(workspace), self.gateway.redis_time_ms())
        return {"now": now, "workspace": describe(workspace, snap, now, detail=True)}

    async def page(self, q: str, limit: int) -> dict[str, Any]:
        """Active workspaces whose id contains ``q`` (case-insensitive; the first ``limit`` by id),
        the live servers and their totals."""
        census = await self.registry.census(with_workspaces=True)
        needle = q.lower()
        names = [w for w in census.workspaces if needle in w.lower()]
        snaps = await snapshots(self.leases, names[:limit])
        return {
            "now": census.now, "total": len(census.workspaces), "matching": len(names),
            "workspaces": [describe(w, s, census.now) for w, s in zip(names, snaps, strict=False)],
            "servers": census.servers, "totals": totals(census.servers),
        }
