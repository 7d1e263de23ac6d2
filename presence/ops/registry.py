"""Registry: which server processes are alive and which workspaces are active, without SCAN/KEYS.

Every process announces itself (id, pid, address, version, counts, cumulative counters for the
dashboard's plots) and the workspaces it has tabs in, from a small loop of its own, once per
``min(1 s, heartbeat)``. Each entry carries an expiry in Redis time, ``3 * heartbeat`` ahead, and
is pruned by score when anyone writes or reads: a crashed process disappears by itself.

Keys (global, never touched by a workspace script; one hash tag, so one slot on Cluster):
``<prefix>:{#registry}:servers`` (zset id → expiry), ``<prefix>:{#registry}:server_info``
(hash id → JSON), ``<prefix>:{#registry}:workspaces`` (zset workspace → expiry). The scripts are
``presence/gateway/lua/announce.lua`` and ``census.lua``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from .. import __version__
from ..engine.workspaces import Counts
from ..errors import StoreUnavailable
from ..gateway.gateway import Gateway
from ..gateway.keys import RegistryKeys
from ..settings import Settings
from ..tasks import Service
from .metrics import LATENCY_BUCKETS

log = logging.getLogger("presence.registry")

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Vitals:
    """What a process announces of itself besides its settings, read at each announcement."""

    counts: Counts
    workspaces: list[str]  # ids of the workspaces it has tabs in
    ready: bool
    stopping: bool
    audit_buffered: int
    audit_dropped: int
    summary: dict[str, object]  # cumulative counters for the dashboard's plots


@dataclass(frozen=True, slots=True)
class Census:
    now: int  # Redis time, ms
    servers: list[dict[str, Any]]
    workspaces: list[str]


class Registry(Service):
    """Lifecycle: ``start()`` spawns the announce loop; ``stop()`` ends it and withdraws this
    server's entry (best effort). Idempotent."""

    name = "registry"
    crash_message = "the registry loop died; this server will vanish from the dashboard"

    def __init__(
        self, settings: Settings, server_id: str, gateway: Gateway, keys: RegistryKeys, vitals: Callable[[], Vitals]
    ) -> None:
        super().__init__()
        self.settings = settings
        self.server_id = server_id
        self.gateway = gateway
        self.keys = keys.by_name
        self.vitals = vitals
        s = settings
        self.interval = min(1.0, s.heartbeat_ms / 1000)
        self.ttl_ms = 3 * s.heartbeat_ms
        self.started_ms = int(time.time() * 1000)
        self.announced = 0  # completed announcements; tests and readiness checks wait on it
        self._announced = asyncio.Event()

    def info(self, v: Vitals) -> dict[str, Any]:
        s = self.settings
        return {
            "id": self.server_id, "pid": os.getpid(), "host": s.host, "port": s.port, "version": __version__,
            "started_ms": self.started_ms, "connections": v.counts.connections, "workspaces": v.counts.workspaces,
            "leases": v.counts.leases, "ready": v.ready, "stopping": v.stopping, "scope": s.lease_scope,
            "heartbeat_ms": s.heartbeat_ms, "lease_ttl_ms": s.lease_ttl_ms, "audit_buffered": v.audit_buffered,
            "audit_dropped": v.audit_dropped, "latency_bounds": LATENCY_BUCKETS, **v.summary,
        }

    async def announce(self, withdraw: bool = False) -> None:
        if withdraw:
            info, workspaces = "", []
        else:
            v = self.vitals()
            info, workspaces = _json.encode(self.info(v)).decode(), v.workspaces
        script = self.gateway.scripts["announce"]
        args = script.argv(server=self.server_id, info=info, ttl_ms=self.ttl_ms, workspaces=workspaces)
        await self.gateway.call(script, script.keys(**self.keys), args)

    async def census(self, with_workspaces: bool = False) -> Census:
        script = self.gateway.scripts["census"]
        args = script.argv(with_workspaces="1" if with_workspaces else "")
        now, flat, workspaces = await self.gateway.call(script, script.keys(**self.keys), args)
        now = int(now)
        servers = []
        for i in range(0, len(flat), 3):
            try:
                entry = msgspec.json.decode(flat[i + 2])
            except msgspec.DecodeError:
                continue  # a foreign or corrupt entry must not hide the others
            if isinstance(entry, dict):
                entry["expires_in_ms"] = int(float(flat[i + 1])) - now
                servers.append(entry)
        servers.sort(key=lambda e: (str(e.get("host")), str(e.get("port")), str(e.get("id"))))
        return Census(now, servers, sorted(workspaces))

    async def wait_announced(self) -> None:
        await self._announced.wait()

    # -- loop -------------------------------------------------------------------------------

    async def stop(self) -> None:
        if self._task is None:
            return
        await super().stop()
        try:
            await asyncio.wait_for(self.announce(withdraw=True), 1.0)
        except Exception as exc:  # it expires by itself within its TTL anyway
            log.info("could not withdraw the registry entry (%r); it expires by itself", exc)

    async def run(self) -> None:
        failing = False
        while True:
            try:
                await asyncio.wait_for(self.announce(), max(self.interval, 0.5))
            except Exception as exc:
                # Redis down is reported by the heartbeat and /readyz; one line per outage here.
                if not failing:
                    log.warning("registry: announcing failed (%r); retrying every %.1fs", exc, self.interval,
                                exc_info=not isinstance(exc, (StoreUnavailable, TimeoutError)))
                failing = True
            else:
                if failing:
                    log.info("registry: announcing again")
                failing = False
                self.announced += 1
                self._announced.set()
            await asyncio.sleep(self.interval)
