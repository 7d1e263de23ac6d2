"""Sweeper: announces the expiry of leases that no workspace core on this process watches any more.

A workspace's core arms an expiry watch only while it has local tabs. When a holder's last tab closes, the
lease lives on for the grace period, and with no local tab left anywhere nobody would announce its end
until the workspace is next read, so the audit log would miss the expiry (and its hold duration).
The sweeper remembers workspaces whose last local tab this process lost (or that a script of this
process changed while it had no tab there, e.g. a tab that came and went between two sweeps) and,
for at most one lease TTL after that, reads them (the snapshot script announces every expiry it
finds, of the workspace's lease and of its named locks) when a lease can have run out. Whichever
process announces an expiry first records it; the others find nothing to announce.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from ..core.events import Event
from ..errors import StoreUnavailable
from ..gateway.leases import LeaseScripts
from ..tasks import Service

log = logging.getLogger("presence.sweeper")

MAX_WATCHED = 10_000  # bounded: past this, the oldest are forgotten (their expiry is announced late)
CONCURRENCY = 16


class Sweeper(Service):
    """Lifecycle: ``start()`` spawns the loop, ``stop()`` cancels and awaits it (idempotent)."""

    name = "expiry sweeper"
    crash_message = "the expiry sweeper died; unwatched expiries are announced late"

    def __init__(
        self, heartbeat_ms: int, lease_ttl_ms: int, leases: LeaseScripts, local: Callable[[], list[str]]
    ) -> None:
        super().__init__()
        self.leases = leases
        self.local = local  # the workspaces this process has tabs in (and so watches itself)
        self.interval = min(0.5, heartbeat_ms / 1000)
        self.horizon = (lease_ttl_ms + 1000) / 1000
        self.seen: set[str] = set()
        self.touched: set[str] = set()  # changed by this process's scripts since the last sweep
        self.watch: dict[str, tuple[float, float]] = {}  # workspace -> (next check, give up at)

    def on_events(self, workspace: str, events: Sequence[Event]) -> None:
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

    def note_local(self, now: float) -> None:
        current = set(self.local())
        for ws in (self.seen | self.touched) - current:
            self.watch[ws] = (now, now + self.horizon)
        for ws in current:
            self.watch.pop(ws, None)  # its core watches it again
        self.seen = current
        self.touched.clear()
        while len(self.watch) > MAX_WATCHED:
            del self.watch[next(iter(self.watch))]

    async def sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        self.note_local(now)
        due = [ws for ws, (at, _) in self.watch.items() if at <= now]
        for i in range(0, len(due), CONCURRENCY):
            chunk = due[i : i + CONCURRENCY]
            # A read settles every lock of the workspace (announces each expiry it finds).
            results = await asyncio.gather(*(self.leases.read(ws) for ws in chunk))
            now = asyncio.get_running_loop().time()
            for ws, snapshot in zip(chunk, results, strict=True):
                entry = self.watch.get(ws)
                if entry is None:
                    continue  # a tab came back meanwhile: its core watches it
                left = [record.ttl_ms for lock in ("", *(snapshot.locks or {}))
                        if (record := snapshot.lock(lock)).holder is not None and record.ttl_ms >= 0]
                if not left or now >= entry[1]:
                    del self.watch[ws]  # ended (announced now or before), or someone else renews it
                else:
                    self.watch[ws] = (now + min(left) / 1000 + 0.02, entry[1])
