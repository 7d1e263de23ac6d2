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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from . import __version__
from .errors import StoreUnavailable
from .metrics import LATENCY_BUCKETS, local_counts
from .tasks import Service

if TYPE_CHECKING:
    from .audit import AuditLog
    from .hub import Hub

log = logging.getLogger("presence.registry")

_json = msgspec.json.Encoder()


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

    def __init__(self, hub: Hub, audit: AuditLog) -> None:
        super().__init__()
        self.hub = hub
        self.audit = audit
        s = hub.settings
        tag = f"{s.key_prefix}:{{#registry}}"
        self.keys = [f"{tag}:servers", f"{tag}:server_info", f"{tag}:workspaces"]
        self.interval = min(1.0, s.heartbeat_ms / 1000)
        self.ttl_ms = 3 * s.heartbeat_ms
        self.started_ms = int(time.time() * 1000)
        self.announced = 0  # completed announcements; tests and readiness checks wait on it
        self._announced = asyncio.Event()

    def info(self) -> dict[str, Any]:
        hub = self.hub
        s = hub.settings
        connections, workspaces, leases = local_counts(hub)
        return {
            "id": hub.server_id, "pid": os.getpid(), "host": s.host, "port": s.port, "version": __version__,
            "started_ms": self.started_ms, "connections": connections, "workspaces": workspaces,
            "leases": leases, "ready": hub.ready, "stopping": hub.stopping, "scope": s.lease_scope,
            "heartbeat_ms": s.heartbeat_ms, "lease_ttl_ms": s.lease_ttl_ms, "audit_buffered": len(self.audit.buffer),
            "audit_dropped": self.audit.dropped, "latency_bounds": LATENCY_BUCKETS,
            **hub.metrics.summary(),
        }

    async def announce(self, withdraw: bool = False) -> None:
        hub = self.hub
        info = "" if withdraw else _json.encode(self.info()).decode()
        workspaces = [] if withdraw else list(hub.rooms)
        await hub.store.call(
            hub.store.scripts["announce"], self.keys, [hub.server_id, info, self.ttl_ms, *workspaces]
        )

    async def census(self, with_workspaces: bool = False) -> Census:
        store = self.hub.store
        now, flat, workspaces = await store.call(store.scripts["census"], self.keys, ["1" if with_workspaces else ""])
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
