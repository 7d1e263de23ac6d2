"""Sweeper: announces the expiry of leases that nobody on this process watches any more.

A room arms an expiry watch only while it has local tabs. When a holder's last tab closes, the
lease lives on for the grace period, and with no room left anywhere nobody would announce its end
until the workspace is next read, so the audit log would miss the expiry (and its hold duration).
The sweeper remembers workspaces whose room this process dropped (or that a script of this
process changed while no room was open, e.g. a tab that came and went between two sweeps) and,
for at most one lease TTL after that, runs the ``expire`` script when their lease can have run out. Whichever process
announces the expiry first records it; the others find nothing to announce.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .errors import StoreUnavailable
from .replica import Event
from .tasks import Service

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("presence.sweeper")

MAX_WATCHED = 10_000  # bounded: past this, the oldest are forgotten (their expiry is announced late)
CONCURRENCY = 16


class Sweeper(Service):
    """Lifecycle: ``start()`` spawns the loop, ``stop()`` cancels and awaits it (idempotent)."""

    name = "expiry sweeper"
    crash_message = "the expiry sweeper died; unwatched expiries are announced late"

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.interval = min(0.5, hub.settings.heartbeat_ms / 1000)
        self.horizon = (hub.settings.lease_ttl_ms + 1000) / 1000
        self.seen: set[str] = set()
        self.touched: set[str] = set()  # changed by this process's scripts since the last sweep
        self.watch: dict[str, tuple[float, float]] = {}  # workspace -> (next check, give up at)

    def on_events(self, workspace: str, events: list[Event]) -> None:
        if len(self.touched) < MAX_WATCHED:
            self.touched.add(workspace)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except StoreUnavailable:
                pass  # Redis down is reported elsewhere; the next sweep tries again
            except Exception:
                log.exception("expiry sweep failed")

    def note_rooms(self, now: float) -> None:
        current = set(self.hub.rooms)
        for ws in (self.seen | self.touched) - current:
            self.watch[ws] = (now, now + self.horizon)
        for ws in current:
            self.watch.pop(ws, None)  # its room watches it again
        self.seen = current
        self.touched.clear()
        while len(self.watch) > MAX_WATCHED:
            del self.watch[next(iter(self.watch))]

    async def sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        self.note_rooms(now)
        due = [ws for ws, (at, _) in self.watch.items() if at <= now]
        for i in range(0, len(due), CONCURRENCY):
            chunk = due[i : i + CONCURRENCY]
            results = await asyncio.gather(*(self.hub.lease.check_expiry(ws) for ws in chunk))
            now = asyncio.get_running_loop().time()
            for ws, (ttl_ms, _) in zip(chunk, results, strict=True):
                entry = self.watch.get(ws)
                if entry is None:
                    continue  # a room came back meanwhile
                if ttl_ms is None or now >= entry[1]:
                    del self.watch[ws]  # ended (announced now or before), or someone else renews it
                else:
                    self.watch[ws] = (now + ttl_ms / 1000 + 0.02, entry[1])
