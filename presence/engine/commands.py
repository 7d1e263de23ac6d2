"""Commands: what each request of a tab does.

A request asks its workspace's core whether it may be made and what to run (a refusal is the
core's ``RequestError``, answered as an ``error``), runs one Lua script, and hands the script's
outcome to the core, which applies the events it published (pub/sub brings them again later; the
sequence number makes that harmless) and answers the reply for the requesting tab and the
effects, which are carried out here. Redis trouble becomes an ``unavailable`` error for that
request only: the connection stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from ..core.outcomes import Outcome
from ..core.workspace import Answer, CancelRequest, Operation, Workspace
from ..errors import StoreUnavailable, Unavailable
from ..gateway.leases import LeaseScripts
from ..telemetry import Telemetry
from ..wire.messages import RequestId, ServerMessage
from .outbox import TabOutbox
from .workspaces import Workspaces

R = TypeVar("R", bound=msgspec.Struct)


class LeaseCommands:
    def __init__(self, workspaces: Workspaces, leases: LeaseScripts, telemetry: Telemetry) -> None:
        self.workspaces = workspaces
        self.leases = leases
        self.telemetry = telemetry

    async def _run(self, op: str | None, call: Awaitable[Outcome[R]]) -> Outcome[R]:
        """Run a script (timed as ``op`` when given)."""
        try:
            out = await call
        except StoreUnavailable as exc:
            raise Unavailable("Redis unavailable, try again") from exc
        if op is not None:
            seconds = asyncio.get_running_loop().time() - out.sent_at
            self.telemetry.lease_request(op, out.status, seconds)
        return out

    def _answer(self, tab: TabOutbox, answer: Callable[[Workspace, float], Answer]) -> ServerMessage:
        """The core's answer to the request: carry out its effects, return its reply."""
        reply, effects = answer(self.workspaces.core(tab.workspace), asyncio.get_running_loop().time())
        self.workspaces.carry_out(tab.workspace, effects)
        return reply

    async def acquire(self, tab: TabOutbox, request_id: RequestId, wait: bool = False, lock: str = "") -> ServerMessage:
        self.workspaces.core(tab.workspace).admit(tab.conn, Operation.ACQUIRE, lock)
        u = tab.user
        out = await self._run(
            "acquire", self.leases.acquire(tab.workspace, u.id, u.name, tab.tab_id, tab.conn, wait, lock=lock)
        )
        return self._answer(tab, lambda core, now: core.acquired(tab.conn, lock, out, now, request_id))

    async def takeover(self, tab: TabOutbox, request_id: RequestId, lock: str = "") -> ServerMessage:
        self.workspaces.core(tab.workspace).admit(tab.conn, Operation.TAKEOVER, lock)
        u = tab.user
        out = await self._run(
            "takeover", self.leases.takeover(tab.workspace, u.id, u.name, tab.tab_id, tab.conn, lock=lock)
        )
        return self._answer(tab, lambda core, now: core.took_over(tab.conn, lock, out, now, request_id))

    async def release(self, tab: TabOutbox, request_id: RequestId, lock: str = "") -> ServerMessage:
        """Give up what the tab has of ``lock``: the lease (it goes to the next in line), its place
        in the wait queue, or its pending handoff request (answered ``declined{reason: cancelled}``)."""
        target = self.workspaces.core(tab.workspace).release_target(tab.conn, lock)
        if isinstance(target, CancelRequest):
            out = await self._run(None, self.leases.handoff(tab.workspace, "cancel", tab.conn, lock=lock))
            return self._answer(tab, lambda core, now: core.released(tab.conn, lock, target, out, now, request_id))
        given = await self._run(None, self.leases.release(tab.workspace, target.fence, "released", tab.conn, lock=lock))
        return self._answer(tab, lambda core, now: core.released(tab.conn, lock, target, given, now, request_id))

    async def request(self, tab: TabOutbox, request_id: RequestId, message: str, lock: str = "") -> ServerMessage:
        """Politely ask the holder for ``lock``."""
        self.workspaces.core(tab.workspace).admit(tab.conn, Operation.REQUEST, lock)
        u = tab.user
        out = await self._run(
            None, self.leases.request(tab.workspace, u.id, u.name, tab.tab_id, tab.conn, message, lock=lock)
        )
        return self._answer(tab, lambda core, now: core.asked(tab.conn, lock, out, now, request_id))

    async def decline(self, tab: TabOutbox, request_id: RequestId, lock: str = "") -> ServerMessage:
        """The holder keeps ``lock``: the pending request ends."""
        fence = self.workspaces.core(tab.workspace).decline_fence(tab.conn, lock)
        out = await self._run(None, self.leases.handoff(tab.workspace, "decline", fence, by=tab.user, lock=lock))
        return self._answer(tab, lambda core, now: core.declined(tab.conn, lock, out, now, request_id))

    async def status(
        self, tab: TabOutbox, active: bool | None, meta: dict[str, object] | msgspec.UnsetType | None
    ) -> None:
        """New presence of the tab; one that changes nothing costs nothing and tells no one. One
        written at once is awaited (the tab's next request comes after it); one held back for the
        meta interval is written when it ends, the latest winning."""
        core = self.workspaces.core(tab.workspace)
        self.workspaces.carry_out(tab.workspace, core.status(tab.conn, active, meta, asyncio.get_running_loop().time()))
        await self.workspaces.written(tab.workspace, tab.conn)

    def sync(self, tab: TabOutbox) -> None:
        """The tab saw a gap in its updates: send it the whole state."""
        self.workspaces.carry_out(tab.workspace, self.workspaces.core(tab.workspace).sync(tab.conn))
