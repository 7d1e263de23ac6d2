"""Requests: what each lease request of a tab does, and the policy timers that act for a tab.

Every request runs one Lua script, applies the events it published to the tab's room at once
(pub/sub brings them again later; the sequence number makes that harmless) and returns the one
reply for the requesting tab. Redis trouble becomes an ``unavailable`` error for that request
only: the connection stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from .errors import (
    NoRequest,
    NotHolder,
    RequestPending,
    StoreUnavailable,
    TakeoverCooldown,
    TakeoverForbidden,
    Unavailable,
)
from .lease import Outcome
from .protocol import Acquired, Asked, Busy, Declined, HolderView, Queued, Released, RequestId
from .replica import HolderRecord
from .room import Room
from .tab import Tab

if TYPE_CHECKING:
    from .hub import Hub


class Requests:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def _script(self, coro: Awaitable[Outcome]) -> Outcome:
        try:
            return await coro
        except StoreUnavailable as exc:
            raise Unavailable("Redis unavailable, try again") from exc

    async def acquire(self, tab: Tab, request_id: RequestId, wait: bool = False) -> Acquired | Busy | Queued:
        room = self.hub.rooms[tab.workspace]
        sent_at = asyncio.get_running_loop().time()
        out = await self._script(
            self.hub.lease.acquire(tab.workspace, tab.user.id, tab.user.name, tab.tab_id, tab.conn, wait)
        )
        self.hub.metrics.lease_request("acquire", out.status, asyncio.get_running_loop().time() - sent_at)
        room.apply(out.events)
        if out.status == "busy":
            return Busy(holder=self._holder_view(room, out.detail.get("holder")), id=request_id)  # type: ignore[arg-type]
        if out.status == "queued":
            tab.queue_position = out.int("position")
            return Queued(position=tab.queue_position, id=request_id)
        return self._granted(room, tab, out, sent_at, request_id)

    async def takeover(self, tab: Tab, request_id: RequestId) -> Acquired:
        if not tab.may_take_over:
            raise TakeoverForbidden("your token does not allow taking over a lease")
        room = self.hub.rooms[tab.workspace]
        sent_at = asyncio.get_running_loop().time()
        out = await self._script(
            self.hub.lease.takeover(tab.workspace, tab.user.id, tab.user.name, tab.tab_id, tab.conn)
        )
        self.hub.metrics.lease_request("takeover", out.status, asyncio.get_running_loop().time() - sent_at)
        room.apply(out.events)
        if out.status == "cooldown":
            raise TakeoverCooldown(
                f"the lease was taken over moments ago; try again in {out.int('retry_ms')} ms"
            )
        return self._granted(room, tab, out, sent_at, request_id)

    def _granted(self, room: Room, tab: Tab, out: Outcome, sent_at: float, request_id: RequestId) -> Acquired:
        fence = out.int("fence")
        tab.fence = fence
        tab.queue_position = 0
        room.confirm(fence, sent_at, out.int("ttl_ms"))
        return Acquired(fence=fence, ttl_ms=room.ttl_left_ms(), id=request_id, rejoined=out.status == "rejoined")

    async def release(self, tab: Tab, request_id: RequestId) -> Released | Declined:
        """Give up what the tab has: the lease (it goes to the next in line), its place in the
        wait queue, or its pending handoff request (answered ``declined{reason: cancelled}``)."""
        room = self.hub.rooms[tab.workspace]
        request = room.replica.request
        if tab.fence is None and not tab.queue_position and request is not None and request.conn == tab.conn:
            out = await self._script(self.hub.lease.handoff(tab.workspace, "cancel", tab.conn))
            room.apply(out.events)
            return Declined(reason="cancelled", id=request_id)
        if tab.fence is None and not tab.queue_position:
            raise NotHolder("you neither hold the lease nor wait or ask for it")
        # A waiter passes fence 0, which matches no grant: None would mean "whoever holds it".
        fence = tab.fence if tab.fence is not None else 0
        out = await self._script(self.hub.lease.release(tab.workspace, fence, "released", tab.conn))
        room.apply(out.events)
        if out.status == "not_holder":
            tab.fence = None
            raise NotHolder("you no longer hold the lease")
        tab.fence = None
        tab.queue_position = 0
        return Released(reason="released", id=request_id)

    async def request(self, tab: Tab, request_id: RequestId, message: str) -> Acquired | Asked:
        """Politely ask the holder for the lease."""
        room = self.hub.rooms[tab.workspace]
        sent_at = asyncio.get_running_loop().time()
        out = await self._script(
            self.hub.lease.request(tab.workspace, tab.user.id, tab.user.name, tab.tab_id, tab.conn, message)
        )
        room.apply(out.events)
        if out.status == "pending":
            raise RequestPending("someone else's request is waiting for the holder's answer")
        if out.status == "requested":
            holder = self._holder_view(room, out.detail.get("holder"))
            assert holder is not None
            return Asked(holder=holder, deadline_ms=out.int("deadline_ms"), id=request_id)
        return self._granted(room, tab, out, sent_at, request_id)

    async def decline(self, tab: Tab, request_id: RequestId) -> Declined:
        """The holder keeps the lease: the pending request ends."""
        room = self.hub.rooms[tab.workspace]
        if tab.fence is None:
            raise NotHolder("only the holder can decline a request")
        out = await self._script(self.hub.lease.handoff(tab.workspace, "decline", tab.fence, by=tab.user))
        room.apply(out.events)
        if out.status != "ended":
            raise NoRequest("there is no pending request to decline")
        return Declined(reason="declined", id=request_id)

    def request_due(self, room: Room, conn: str) -> None:
        """A local requester's deadline passed: take over (if allowed) or end the request."""
        tab = room.tabs.get(conn)
        may_take = self.hub.settings.handoff_takeover and tab is not None and tab.may_take_over
        self.hub.tasks.spawn(self._request_due(room, conn, may_take), name=f"request deadline {conn}")

    async def _request_due(self, room: Room, conn: str, may_take: bool) -> None:
        try:
            out = await self.hub.lease.handoff(room.workspace, "timeout", conn, may_take_over=may_take)
        except StoreUnavailable:
            room.retry_request(conn, self.hub.settings.heartbeat_ms)
            return
        if out.status == "early":
            room.retry_request(conn, out.int("left_ms"))
        room.apply(out.events)

    def idle_due(self, room: Room, fence: int) -> None:
        """The holder's tabs were all inactive for PRESENCE_IDLE_RELEASE_MS: release with reason idle."""
        self.hub.tasks.spawn(self._idle_release(room, fence), name=f"idle release {room.workspace}")

    async def _idle_release(self, room: Room, fence: int) -> None:
        try:
            out = await self.hub.lease.release(room.workspace, fence, "idle")
        except StoreUnavailable:
            return  # the next status change re-arms the timer
        room.apply(out.events)

    async def status(self, tab: Tab) -> None:
        room = self.hub.rooms[tab.workspace]
        out = await self._script(self.hub.lease.status(tab.workspace, tab.conn, self.hub.info(tab)))
        room.apply(out.events)

    def _holder_view(self, room: Room, raw: object) -> HolderView | None:
        if not isinstance(raw, dict):
            return room.replica.holder_view(with_fence=False)
        h = HolderRecord(int(raw["fence"]), raw["user"], raw["name"], raw["tab"], int(raw["since"]))
        return HolderView(user=h.person, since_ms=h.since, tabs=room.replica.tabs_of(h.user))
