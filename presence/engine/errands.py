"""Errands: the scripts the workspace cores' effects ask for, run in the background, each
outcome handed back to its core (which decides what it means).

A re-read, an expiry check, a requester's deadline, a confirmation on the replicas, an idle
release, a tab's presence write. Re-reads and expiry checks are de-duplicated (at most one of
each per workspace, and lock, in flight); a tab's presence writes run one after the other, so
the latest lands last. Whatever goes wrong is handed back too (``None``, or
``Replication.FAILED``): the core tries again, so no errand is ever silently dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from ..core.effects import Effect, Replication
from ..core.outcomes import Outcome
from ..core.records import TabInfo
from ..core.workspace import Workspace
from ..errors import StoreUnavailable
from ..gateway.leases import LeaseScripts
from ..tasks import TaskSet
from .local import Local

log = logging.getLogger("presence.workspaces")

Answer = Callable[[Workspace, float], list[Effect]]
"""What to ask a core once an errand is done: its effects, given the core and the loop time."""


class Errands:
    """``deliver(local, answer)`` hands an outcome to ``local``'s core (if it is still this
    process's) and carries out its effects. ``stopping`` set: no new errand starts."""

    def __init__(self, leases: LeaseScripts, tasks: TaskSet, deliver: Callable[[Local, Answer], None]) -> None:
        self.leases = leases
        self.tasks = tasks
        self.deliver = deliver
        self.stopping = False
        self._rereading: set[str] = set()
        self._checking: set[tuple[str, str]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[Any] | None:
        if self.stopping:
            coro.close()
            return None
        return self.tasks.spawn(coro, name=name)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def applied(self, local: Local, out: Outcome[msgspec.Struct]) -> None:
        if out.events:
            self.deliver(local, lambda core, now: core.applied(out, now))

    def reread(self, local: Local) -> None:
        """Re-read the workspace from Redis and push a fresh state (at most one at a time)."""
        if local.workspace in self._rereading or self.stopping:
            return
        self._rereading.add(local.workspace)
        self._spawn(self._reread(local), f"resync {local.workspace}")

    async def _reread(self, local: Local) -> None:
        try:
            out = await self.leases.snapshot(local.workspace)  # its events are in the snapshot
        except StoreUnavailable:
            return  # stays stale; the heartbeat retries
        finally:
            self._rereading.discard(local.workspace)
        self.deliver(local, lambda core, now: core.reread(out, now))

    def check_expiry(self, local: Local, lock: str) -> None:
        key = (local.workspace, lock)
        if key in self._checking or self.stopping:
            return
        self._checking.add(key)
        self._spawn(self._expiry(local, lock), f"expiry {local.workspace}")

    async def _expiry(self, local: Local, lock: str) -> None:
        try:
            out = await self.leases.check_expiry(local.workspace, lock)
        except Exception as exc:
            # Whatever went wrong, the watch must go on: a dropped check would leave an expired
            # lease unannounced until the next change.
            if not isinstance(exc, StoreUnavailable):
                log.exception("expiry check of %s failed; trying again", local.workspace)
            out = None
        finally:
            self._checking.discard((local.workspace, lock))
        self.deliver(local, lambda core, now: core.expiry_checked(lock, out, now))

    def request_due(self, local: Local, lock: str, conn: str, may_take_over: bool) -> None:
        self._spawn(self._request_due(local, lock, conn, may_take_over), f"request deadline {conn}")

    async def _request_due(self, local: Local, lock: str, conn: str, may_take_over: bool) -> None:
        """A local requester's deadline passed: take over (if allowed) or end the request."""
        try:
            out = await self.leases.handoff(local.workspace, "timeout", conn, may_take_over=may_take_over, lock=lock)
        except StoreUnavailable:
            out = None
        self.deliver(local, lambda core, now: core.request_checked(lock, conn, out, now))

    def replicate(self, local: Local, lock: str, fence: int) -> None:
        self._spawn(self._replicate(local, lock, fence), f"replicate {local.workspace}")

    async def _replicate(self, local: Local, lock: str, fence: int) -> None:
        """Renew lease ``fence``, handed to a local tab, and WAIT for the replicas to have it."""
        sent_at = self._now()
        try:
            outcome = await self.leases.replicate(local.workspace, fence, lock=lock)
        except Exception as exc:
            # Whatever went wrong, the core tries again after a heartbeat: a dropped confirmation
            # would leave the grantee never told.
            if not isinstance(exc, StoreUnavailable):
                log.exception("confirming lease %d of %s on the replicas failed; trying again", fence, local.workspace)
            outcome = Replication.FAILED
        self.deliver(local, lambda core, now: core.replicated(lock, fence, outcome, sent_at, now))

    def idle_release(self, local: Local, lock: str, fence: int) -> None:
        self._spawn(self._idle_release(local, lock, fence), f"idle release {local.workspace}")

    async def _idle_release(self, local: Local, lock: str, fence: int) -> None:
        """The holder's tabs were all inactive for PRESENCE_IDLE_RELEASE_MS: release with reason idle."""
        try:
            out = await self.leases.release(local.workspace, fence, "idle", lock=lock)
        except StoreUnavailable:
            return  # the next status change re-arms the timer
        self.applied(local, out)

    def write_status(self, local: Local, conn: str, info: TabInfo) -> None:
        """Write a tab's presence entry, after the write before it (so the latest lands last)."""
        before = local.writes.get(conn)
        task = self._spawn(self._status(local, conn, info, before), f"status {conn}")
        if task is not None:
            local.writes[conn] = task

            def done(t: asyncio.Task[Any]) -> None:
                if local.writes.get(conn) is t:
                    del local.writes[conn]

            task.add_done_callback(done)

    async def _status(self, local: Local, conn: str, info: TabInfo, before: asyncio.Task[Any] | None) -> None:
        if before is not None:
            await asyncio.wait([before])
        try:
            out = await self.leases.status(local.workspace, conn, info)
        except StoreUnavailable:
            self.deliver(local, lambda core, now: core.write_failed(conn, now))
            return
        self.applied(local, out)
