"""Heartbeat: the one loop per process that pings every tab and keeps live tabs' leases and
presence entries alive in Redis.

Each tick: tabs silent for ``dead_after_ms`` are closed (4408); every other tab gets a ``ping``;
then the leases and presence entries of the tabs that answered their previous ping are renewed
in one pipelined batch (a constant number of round trips, whatever the number of tabs). A tick
never waits on Redis for longer than one heartbeat, and lease safety does not depend on ticks:
each room's local deadline is a timer of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from .errors import StoreUnavailable, TimedOut
from .protocol import Ping
from .tasks import Service

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("presence.heartbeat")


class Heartbeat(Service):
    """Lifecycle: ``start()`` spawns the loop, ``stop()`` cancels and awaits it (idempotent).
    ``ticks`` counts completed ticks."""

    name = "heartbeat"
    crash_message = "the heartbeat loop died; leases will not be renewed"

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.interval = hub.settings.heartbeat_ms / 1000
        self.ticks = 0
        self._redis_ok = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.interval
            if next_at < loop.time():  # fell behind (paused process): do not burst
                next_at = loop.time() + self.interval
            started = loop.time()
            try:
                await self.tick()
            except Exception:
                log.exception("heartbeat tick failed")
            self.hub.metrics.tick_seconds.observe(loop.time() - started)
            self.ticks += 1

    async def tick(self) -> None:
        hub = self.hub
        hub.load_scripts_soon()
        now = time.monotonic()
        dead_after = hub.settings.dead_after_ms / 1000
        leases: dict[str, int] = {}
        touch: dict[str, list[str]] = defaultdict(list)
        for room in list(hub.rooms.values()):
            holder = room.replica.holder
            for tab in list(room.tabs.values()):
                if tab.closing is not None:
                    continue
                if now - tab.last_seen > dead_after:
                    log.info("%r: no pong for %.1fs, closing", tab, now - tab.last_seen)
                    tab.close(TimedOut.close_code, "no pong: tab considered dead")
                    continue
                if tab.answered:
                    touch[room.workspace].append(tab.conn)
                    if holder is not None and tab.fence == holder.fence and room.holds(tab):
                        leases[room.workspace] = holder.fence
                tab.ping_n += 1
                ttl = room.ttl_left_ms() if tab.fence is not None else None
                tab.send(Ping(n=tab.ping_n, ttl_ms=ttl))
            if room.stale:
                hub.resync(room)
        await self._renew(leases, touch)

    async def _renew(self, leases: dict[str, int], touch: dict[str, list[str]]) -> None:
        hub = self.hub
        if not leases and not touch:
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        try:
            renewed, touched = await asyncio.wait_for(hub.lease.tick(leases, touch), timeout=self.interval)
            hub.metrics.renew_seconds.observe(loop.time() - sent_at)
        except (StoreUnavailable, TimeoutError) as exc:
            if self._redis_ok:
                log.warning("heartbeat: Redis unavailable (%r); leases rely on their local deadlines", exc)
            self._redis_ok = False
            return
        if not self._redis_ok:
            log.info("heartbeat: Redis answers again")
        self._redis_ok = True
        for ws, ok in renewed.items():
            room = hub.rooms.get(ws)
            if room is None:
                continue
            if ok:
                room.confirm(leases[ws], sent_at)
            else:
                hub.resync(room)  # expired or replaced: Redis says who holds it now
        for result in touched:
            room = hub.rooms.get(result.workspace)
            if room is None:
                continue
            room.apply(result.events)
            for conn in result.missing:
                tab = room.tabs.get(conn)
                if tab is not None and tab.closing is None:
                    hub.tasks.spawn(hub.rejoin(tab), name=f"rejoin {conn}")
