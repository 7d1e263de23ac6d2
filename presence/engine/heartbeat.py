"""Heartbeat: the one loop per process that pings every tab and keeps live tabs' leases and
presence entries alive in Redis.

Each tick: tabs silent for ``dead_after_ms`` are closed (4408); every other tab gets a ``ping``;
then the leases and presence entries of the tabs that answered their previous ping are renewed
in one pipelined batch (a constant number of round trips, whatever the number of tabs). A tick
never waits on Redis for longer than one heartbeat, and lease safety does not depend on ticks:
each workspace's local deadline is a timer of its own. The tick also retries what failed while
Redis was away: loading the scripts, and re-reading stale workspaces.

A tab's silence is only its own when this process was listening. After the process itself was
stalled (a long garbage collection, a paused VM, SIGSTOP), the first tick may run before the
pongs that arrived meanwhile are read, and every tab would look dead: so a tick that wakes up
late by more than :func:`stall_threshold` counts every tab as seen at that moment. Each gets a
fresh ping and a full ``dead_after_ms`` to answer it before it can be closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from ..errors import StoreUnavailable, TimedOut
from ..gateway.gateway import Gateway
from ..gateway.leases import LeaseScripts
from ..settings import Settings
from ..tasks import Service, TaskSet
from ..telemetry import Telemetry
from .workspaces import Workspaces

log = logging.getLogger("presence.heartbeat")


def stall_threshold(settings: Settings) -> float:
    """How late (seconds) a tick may wake before the process counts as having been stalled.

    A live tab answers within a round trip, so it looks dead only when pongs went unread for
    ``dead_after - heartbeat``: half of that is a stall (at least a quarter heartbeat, so that
    ordinary timer jitter never excuses a dead tab).
    """
    heartbeat, dead_after = settings.heartbeat_ms / 1000, settings.dead_after_ms / 1000
    return max(heartbeat / 4, (dead_after - heartbeat) / 2)


class Heartbeat(Service):
    """Lifecycle: ``start()`` spawns the loop, ``stop()`` cancels and awaits it (idempotent).
    ``ticks`` counts completed ticks."""

    name = "heartbeat"
    crash_message = "the heartbeat loop died; leases will not be renewed"

    def __init__(
        self, settings: Settings, workspaces: Workspaces, leases: LeaseScripts, gateway: Gateway,
        tasks: TaskSet, telemetry: Telemetry,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.workspaces = workspaces
        self.leases = leases
        self.gateway = gateway
        self.tasks = tasks
        self.telemetry = telemetry
        self.interval = settings.heartbeat_ms / 1000
        self.ticks = 0
        self.stalls = 0
        self._stall_threshold = stall_threshold(settings)
        self._heard_from = 0.0  # monotonic time: no tab counts as silent before it (after a stall)
        self._redis_ok = True
        self._loading_scripts = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self._woke(loop.time() - next_at)
            next_at += self.interval
            if next_at < loop.time():  # fell behind (paused process): do not burst
                next_at = loop.time() + self.interval
            started = loop.time()
            try:
                await self.tick()
            except Exception:
                log.exception("heartbeat tick failed")
            self.telemetry.tick(loop.time() - started)
            self.ticks += 1

    def _woke(self, late: float) -> None:
        """The loop woke ``late`` seconds after it asked to: past the threshold, this process was
        stalled, and pongs that arrived meanwhile are unread yet. (A tick slowed by Redis is not
        a stall: it ends before the next sleep is measured, and reading went on meanwhile.)"""
        if late <= self._stall_threshold:
            return
        self.stalls += 1
        self._heard_from = time.monotonic()
        log.warning(
            "this process was stalled for %.1fs (garbage collection, a paused VM, SIGSTOP?): every tab gets a "
            "fresh ping and %d ms to answer before it can count as dead", late, self.settings.dead_after_ms,
        )

    async def tick(self) -> None:
        self._load_scripts_soon()
        now = time.monotonic()
        dead_after = self.settings.dead_after_ms / 1000
        leases: dict[tuple[str, str], int] = {}
        touch: dict[str, list[str]] = defaultdict(list)
        loop_now = asyncio.get_running_loop().time()
        for local in self.workspaces:
            core = local.core
            answered = touch[local.workspace]
            for tab in list(local.tabs.values()):
                if tab.closing is not None:
                    continue
                if now - max(tab.last_seen, self._heard_from) > dead_after:
                    log.info("%r: no pong for %.1fs, closing", tab, now - tab.last_seen)
                    tab.close(TimedOut.close_code, "no pong: tab considered dead")
                    continue
                if tab.answered:
                    answered.append(tab.conn)
                tab.ping(*core.ttls(tab.conn, loop_now))
            for lock, fence in core.renewals(answered).items():
                leases[(local.workspace, lock)] = fence
        self.workspaces.resync_stale()
        await self._renew(leases, {ws: conns for ws, conns in touch.items() if conns})

    def _load_scripts_soon(self) -> None:
        """Scripts not loaded yet (Redis down or slow at start-up): load them in the background,
        so /readyz recovers by itself (a balancer sends no tab whose join would load them)."""
        if self.gateway.scripts_loaded or self._loading_scripts:
            return
        self._loading_scripts = True
        self.tasks.spawn(self._load_scripts(), name="load scripts")

    async def _load_scripts(self) -> None:
        try:
            await self.gateway.load_scripts()
            log.info("Redis answers: scripts loaded")
        except StoreUnavailable:
            pass  # the next tick tries again
        finally:
            self._loading_scripts = False

    async def _renew(self, leases: dict[tuple[str, str], int], touch: dict[str, list[str]]) -> None:
        if not leases and not touch:
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        try:
            renewed, touched = await asyncio.wait_for(self.leases.tick(leases, touch), timeout=self.interval)
            self.telemetry.renewed(loop.time() - sent_at)
        except (StoreUnavailable, TimeoutError) as exc:
            if self._redis_ok:
                log.warning("heartbeat: Redis unavailable (%r); leases rely on their local deadlines", exc)
            self._redis_ok = False
            return
        if not self._redis_ok:
            log.info("heartbeat: Redis answers again")
        self._redis_ok = True
        now = loop.time()
        for (ws, lock), ok in renewed.items():
            if ws in self.workspaces:
                core = self.workspaces.core(ws)
                self.workspaces.carry_out(ws, core.renewed(lock, leases[(ws, lock)], ok, sent_at, now))
        for ws, out in touched.items():
            self.workspaces.applied(ws, out)
            for conn in out.reply.missing:
                tab = self.workspaces.tab(ws, conn)
                if tab is not None and tab.closing is None:
                    self.tasks.spawn(self.workspaces.rejoin(tab), name=f"rejoin {conn}")
