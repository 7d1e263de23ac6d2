"""Commands: what each lease request of a tab does.

Every request runs one Lua script, applies the events it published to the tab's workspace at once
(pub/sub brings them again later; the sequence number makes that harmless) and returns the one
reply for the requesting tab. Redis trouble becomes an ``unavailable`` error for that request
only: the connection stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from ..core import outcomes as r
from ..core.records import HolderRecord
from ..errors import (
    NoRequest,
    NotHolder,
    RequestPending,
    StoreUnavailable,
    TakeoverCooldown,
    TakeoverForbidden,
    Unavailable,
)
from ..gateway.leases import LeaseScripts
from ..telemetry import Telemetry
from ..wire.messages import Acquired, Asked, Busy, Declined, HolderView, Queued, Released, RequestId
from .outbox import TabOutbox
from .workspaces import Workspaces

R = TypeVar("R", bound=r.Reply)


class LeaseCommands:
    def __init__(self, workspaces: Workspaces, leases: LeaseScripts, telemetry: Telemetry) -> None:
        self.workspaces = workspaces
        self.leases = leases
        self.telemetry = telemetry

    async def _script(self, tab: TabOutbox, call: Awaitable[r.Outcome[R]]) -> r.Outcome[R]:
        """Run the script and apply its events to the tab's workspace."""
        try:
            out = await call
        except StoreUnavailable as exc:
            raise Unavailable("Redis unavailable, try again") from exc
        self.workspaces.apply(tab.workspace, out.events, out.sent_at)
        return out

    def _timed(self, op: str, out: r.Outcome[R]) -> None:
        seconds = asyncio.get_running_loop().time() - out.sent_at
        self.telemetry.lease_request(op, out.status, seconds)

    async def acquire(self, tab: TabOutbox, request_id: RequestId, wait: bool = False) -> Acquired | Busy | Queued:
        u = tab.user
        out = await self._script(tab, self.leases.acquire(tab.workspace, u.id, u.name, tab.tab_id, tab.conn, wait))
        self._timed("acquire", out)
        match out.reply:
            case r.Busy(holder=holder):
                return Busy(holder=self._view(tab, holder), id=request_id)
            case r.Waiting(position=position):
                self.workspaces.core(tab.workspace).holding.queued(tab.conn, position)
                return Queued(position=position, id=request_id)
            case r.Granted() | r.Rejoined() as granted:
                return self._granted(tab, granted, out.sent_at, request_id)

    async def takeover(self, tab: TabOutbox, request_id: RequestId) -> Acquired:
        if not tab.may_take_over:
            raise TakeoverForbidden("your token does not allow taking over a lease")
        u = tab.user
        out = await self._script(tab, self.leases.takeover(tab.workspace, u.id, u.name, tab.tab_id, tab.conn))
        self._timed("takeover", out)
        if isinstance(out.reply, r.Cooldown):
            raise TakeoverCooldown(f"the lease was taken over moments ago; try again in {out.reply.retry_ms} ms")
        return self._granted(tab, out.reply, out.sent_at, request_id)

    def _granted(
        self, tab: TabOutbox, reply: r.Granted | r.Rejoined | r.TakenOver, sent_at: float, request_id: RequestId
    ) -> Acquired:
        core = self.workspaces.core(tab.workspace)
        now = asyncio.get_running_loop().time()
        acquired, effects = core.granted(
            tab.conn, reply.fence, reply.ttl_ms, sent_at, now, request_id, isinstance(reply, r.Rejoined)
        )
        self.workspaces.carry_out(tab.workspace, effects)
        return acquired

    async def release(self, tab: TabOutbox, request_id: RequestId) -> Released | Declined:
        """Give up what the tab has: the lease (it goes to the next in line), its place in the
        wait queue, or its pending handoff request (answered ``declined{reason: cancelled}``)."""
        core = self.workspaces.core(tab.workspace)
        member = core.members[tab.conn]
        request = core.replica.request
        if member.fence is None and not member.queue_position:
            if request is not None and request.conn == tab.conn:
                await self._script(tab, self.leases.handoff(tab.workspace, "cancel", tab.conn))
                return Declined(reason="cancelled", id=request_id)
            raise NotHolder("you neither hold the lease nor wait or ask for it")
        # A waiter passes fence 0, which matches no grant: None would mean "whoever holds it".
        fence = member.fence if member.fence is not None else 0
        out = await self._script(tab, self.leases.release(tab.workspace, fence, "released", tab.conn))
        if isinstance(out.reply, r.NotHolder):
            core.holding.let_go(tab.conn, left_queue=False)
            raise NotHolder("you no longer hold the lease")
        core.holding.let_go(tab.conn, left_queue=True)
        return Released(reason="released", id=request_id)

    async def request(self, tab: TabOutbox, request_id: RequestId, message: str) -> Acquired | Asked:
        """Politely ask the holder for the lease."""
        u = tab.user
        out = await self._script(
            tab, self.leases.request(tab.workspace, u.id, u.name, tab.tab_id, tab.conn, message)
        )
        match out.reply:
            case r.Pending():
                raise RequestPending("someone else's request is waiting for the holder's answer")
            case r.Asked(holder=holder, deadline_ms=deadline_ms):
                return Asked(holder=self._view(tab, holder), deadline_ms=deadline_ms, id=request_id)
            case r.Granted() | r.Rejoined() as granted:
                return self._granted(tab, granted, out.sent_at, request_id)

    async def decline(self, tab: TabOutbox, request_id: RequestId) -> Declined:
        """The holder keeps the lease: the pending request ends."""
        fence = self.workspaces.member(tab).fence
        if fence is None:
            raise NotHolder("only the holder can decline a request")
        out = await self._script(tab, self.leases.handoff(tab.workspace, "decline", fence, by=tab.user))
        if not isinstance(out.reply, r.Ended):
            raise NoRequest("there is no pending request to decline")
        return Declined(reason="declined", id=request_id)

    async def status(self, tab: TabOutbox, active: bool | None, meta: dict[str, object] | None) -> None:
        """New presence info of the tab; one that changes nothing costs nothing and tells no one."""
        m = self.workspaces.member(tab)
        if (active is None or active == m.active) and (meta is None or meta == m.meta):
            return
        if active is not None:
            m.active = active
        if meta is not None:
            m.meta = meta
        await self._script(tab, self.leases.status(tab.workspace, tab.conn, self.workspaces.info(tab)))

    def sync(self, tab: TabOutbox) -> None:
        """The tab saw a gap in its updates: send it the whole state."""
        self.workspaces.carry_out(tab.workspace, self.workspaces.core(tab.workspace).sync(tab.conn))

    def _view(self, tab: TabOutbox, holder: HolderRecord | None) -> HolderView:
        """The holder as another user sees it (no fence), tabs counted in this replica."""
        replica = self.workspaces.core(tab.workspace).replica
        view = replica.holder_view(holder, with_fence=False)
        if view is None:  # freed between the script and now: the replica's is the newest we know
            view = replica.holder_view(with_fence=False)
        assert view is not None, "a busy or asked reply names a holder"
        return view
