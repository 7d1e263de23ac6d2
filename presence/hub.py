"""Hub: one per server process. Owns the rooms, the store, the pub/sub bridge and the heartbeat,
and carries out each tab's requests.

Requests run one Lua script each and apply the events it returns straight away; the same events
arrive again through pub/sub and are recognised by their sequence number. No asyncio lock is
ever held across Redis I/O: rooms are plain dictionaries changed between awaits.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Callable

from .bridge import Bridge
from .errors import (
    NoRequest,
    NotHolder,
    Overloaded,
    RequestPending,
    Restarting,
    StoreUnavailable,
    TakeoverCooldown,
    TakeoverForbidden,
    TooMany,
    Unavailable,
)
from .lease import LeaseStore, Outcome
from .metrics import Metrics
from .ops import Ops
from .protocol import (
    Acquired,
    Asked,
    Busy,
    Declined,
    HolderView,
    Person,
    Queued,
    Released,
    RequestId,
    Welcome,
)
from .replica import HolderRecord, TabInfo, decode_event
from .room import Room
from .settings import Settings
from .store import Store
from .tab import Tab
from .tasks import TaskSet

log = logging.getLogger("presence.hub")


class Hub:
    """Lifecycle: ``await start()`` (never fails because Redis is down: it recovers by itself),
    serve tabs through :meth:`join` / requests / :meth:`leave`, ``await stop()`` (idempotent)."""

    def __init__(self, settings: Settings, store: Store | None = None, server_id: str | None = None) -> None:
        self.settings = settings
        self.server_id = server_id or secrets.token_hex(4)
        self.store = store or Store(settings)
        self.lease = LeaseStore(self.store, settings)
        self.metrics = Metrics(self)
        self.control_handlers: list[Callable[[str], None]] = []  # messages on <prefix>:control
        self.rooms: dict[str, Room] = {}
        self._rooms_by_channel: dict[str, Room] = {}
        self.tasks = TaskSet()
        self.tabs_per_user: Counter[str] = Counter()
        self.bridge = Bridge(
            self.store, f"{settings.key_prefix}:control", self._on_pubsub, self._on_resubscribed
        )
        self._conn_seq = 0
        self._resyncing: set[str] = set()
        self._checking: set[str] = set()
        self.stopping = False
        self._stopped = False
        from .heartbeat import Heartbeat  # cycle: the heartbeat drives the hub

        self.heartbeat = Heartbeat(self)
        self.ops = Ops(self)  # audit log, server registry, control commands

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.start()
        except StoreUnavailable as exc:
            log.error("Redis unavailable at start-up (%s); serving 1013 until it answers", exc)
        self.bridge.start()
        self.heartbeat.start()
        self.ops.start()

    async def stop(self) -> None:
        """Close every tab with 1012 (their leases stay: clients reconnect elsewhere within the
        TTL and keep them), stop background work and wait for it. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping = True
        for room in list(self.rooms.values()):
            for tab in list(room.tabs.values()):
                tab.close(Restarting.close_code, "server restarting, reconnect")
        await self.heartbeat.stop()
        await self.bridge.close()
        await self.tasks.close()
        for room in self.rooms.values():
            room.close()
        await self.ops.stop()  # flushes the audit log: needs the store
        await self.store.close()

    @property
    def ready(self) -> bool:
        return self.store.scripts_loaded and self.bridge.connected

    def next_conn(self) -> str:
        self._conn_seq += 1
        return f"{self.server_id}-{self._conn_seq}"

    # -- joining and leaving --------------------------------------------------------------

    def info(self, tab: Tab) -> TabInfo:
        return TabInfo(tab.user.id, tab.user.name, tab.tab_id, tab.active, tab.meta, self.server_id)

    def admit(self, user: Person) -> None:
        """Count a new tab of ``user`` or refuse it (4429)."""
        if self.stopping:
            raise Restarting("server restarting, reconnect")
        if self.tabs_per_user[user.id] >= self.settings.max_tabs_per_user:
            raise TooMany(f"more than {self.settings.max_tabs_per_user} tabs for this user")
        self.tabs_per_user[user.id] += 1

    def dismiss(self, user: Person) -> None:
        self.tabs_per_user[user.id] -= 1
        if self.tabs_per_user[user.id] <= 0:
            del self.tabs_per_user[user.id]

    async def join(self, tab: Tab) -> None:
        """Enter the tab into its workspace and send ``welcome`` (and ``acquired`` on a rejoin).

        Raises ``Overloaded`` (1013) when Redis is unavailable.
        """
        if not self.bridge.connected:
            raise Overloaded("Redis unavailable, retry later")
        if not self.store.scripts_loaded:
            try:
                await self.store.load_scripts()
            except StoreUnavailable as exc:
                raise Overloaded("Redis unavailable, retry later") from exc
        room = self._room(tab.workspace)
        room.tabs[tab.conn] = tab
        try:
            await self.bridge.subscribe(room.channel, timeout=self.settings.heartbeat_ms / 1000)
            sent_at = asyncio.get_running_loop().time()
            joined = await self.lease.join(tab.workspace, tab.conn, self.info(tab))
        except StoreUnavailable as exc:
            self._forget(room, tab)
            raise Overloaded("Redis unavailable, retry later") from exc
        if room.replica.seq == 0:
            room.reset(joined.snapshot)
        else:
            room.apply(joined.events)
            if room.replica.seq < joined.snapshot.seq:
                room.reset(joined.snapshot)
        holder = room.replica.holder
        if holder is not None and room.holds(tab):
            tab.fence = holder.fence
            if joined.rejoined:
                room.confirm(holder.fence, sent_at)
        tab.welcomed = True
        tab.send(
            Welcome(
                conn=tab.conn, user=tab.user, workspace=tab.workspace, heartbeat_ms=self.settings.heartbeat_ms,
                lease_ttl_ms=self.settings.lease_ttl_ms, scope=self.settings.lease_scope,
                state=room.replica.view(),
            )
        )
        if tab.fence is not None:
            tab.send(Acquired(fence=tab.fence, ttl_ms=room.ttl_left_ms(), rejoined=True))

    async def leave(self, tab: Tab, clean: bool) -> None:
        room = self.rooms.get(tab.workspace)
        if room is not None:
            self._forget(room, tab)
        try:
            out = await self.lease.leave(tab.workspace, tab.conn, clean)
        except StoreUnavailable:
            # The presence entry expires by itself; the lease too, at its TTL.
            log.warning("%r left while Redis was unavailable", tab)
            return
        room = self.rooms.get(tab.workspace)
        if room is not None:
            room.apply(out.events)

    async def rejoin(self, tab: Tab) -> None:
        """Re-add a tab whose presence entry was pruned (this process was paused too long)."""
        room = self.rooms.get(tab.workspace)
        if room is None or tab.conn not in room.tabs:
            return
        try:
            joined = await self.lease.join(tab.workspace, tab.conn, self.info(tab))
        except StoreUnavailable:
            return
        room.apply(joined.events)
        if room.replica.seq < joined.snapshot.seq:
            room.stale = True
            room.reset(joined.snapshot)

    def _room(self, workspace: str) -> Room:
        room = self.rooms.get(workspace)
        if room is None:
            channel = self.lease.keys(workspace).channel
            room = Room(workspace, channel, self.settings, self)
            self.rooms[workspace] = room
            self._rooms_by_channel[channel] = room
        return room

    def _forget(self, room: Room, tab: Tab) -> None:
        room.tabs.pop(tab.conn, None)
        if not room.tabs and self.rooms.get(room.workspace) is room:
            del self.rooms[room.workspace]
            self._rooms_by_channel.pop(room.channel, None)
            room.close()
            self.bridge.unsubscribe(room.channel)

    # -- requests -------------------------------------------------------------------------

    async def _script(self, coro: object) -> Outcome:
        try:
            return await coro  # type: ignore[misc,no-any-return]
        except StoreUnavailable as exc:
            raise Unavailable("Redis unavailable, try again") from exc

    async def acquire(self, tab: Tab, request_id: RequestId, wait: bool = False) -> Acquired | Busy | Queued:
        room = self.rooms[tab.workspace]
        sent_at = asyncio.get_running_loop().time()
        out = await self._script(
            self.lease.acquire(tab.workspace, tab.user.id, tab.user.name, tab.tab_id, tab.conn, wait)
        )
        self.metrics.lease_request("acquire", out.status, asyncio.get_running_loop().time() - sent_at)
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
        room = self.rooms[tab.workspace]
        sent_at = asyncio.get_running_loop().time()
        out = await self._script(
            self.lease.takeover(tab.workspace, tab.user.id, tab.user.name, tab.tab_id, tab.conn)
        )
        self.metrics.lease_request("takeover", out.status, asyncio.get_running_loop().time() - sent_at)
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

    async def release(self, tab: Tab, request_id: RequestId) -> Released:
        """Give the lease up (it goes to the next in line), or leave the wait queue."""
        room = self.rooms[tab.workspace]
        if tab.fence is None and not tab.queue_position:
            raise NotHolder("you neither hold the lease nor wait for it")
        # A waiter passes fence 0, which matches no grant: None would mean "whoever holds it".
        fence = tab.fence if tab.fence is not None else 0
        out = await self._script(self.lease.release(tab.workspace, fence, "released", tab.conn))
        room.apply(out.events)
        if out.status == "not_holder":
            tab.fence = None
            raise NotHolder("you no longer hold the lease")
        tab.fence = None
        tab.queue_position = 0
        return Released(reason="released", id=request_id)

    async def request(self, tab: Tab, request_id: RequestId, message: str) -> Acquired | Asked:
        """Politely ask the holder for the lease."""
        room = self.rooms[tab.workspace]
        sent_at = asyncio.get_running_loop().time()
        out = await self._script(
            self.lease.request(tab.workspace, tab.user.id, tab.user.name, tab.tab_id, tab.conn, message)
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
        room = self.rooms[tab.workspace]
        if tab.fence is None:
            raise NotHolder("only the holder can decline a request")
        out = await self._script(self.lease.handoff(tab.workspace, "decline", tab.fence, by=tab.user))
        room.apply(out.events)
        if out.status != "ended":
            raise NoRequest("there is no pending request to decline")
        return Declined(reason="declined", id=request_id)

    def request_due(self, room: Room, conn: str) -> None:
        """A local requester's deadline passed: take over (if allowed) or end the request."""
        tab = room.tabs.get(conn)
        may_take = self.settings.handoff_takeover and tab is not None and tab.may_take_over
        self.tasks.spawn(self._request_due(room, conn, may_take), name=f"request deadline {conn}")

    async def _request_due(self, room: Room, conn: str, may_take: bool) -> None:
        try:
            out = await self.lease.handoff(room.workspace, "timeout", conn, may_take_over=may_take)
        except StoreUnavailable:
            room.retry_request(conn, self.settings.heartbeat_ms)
            return
        if out.status == "early":
            room.retry_request(conn, out.int("left_ms"))
        room.apply(out.events)

    def idle_due(self, room: Room, fence: int) -> None:
        """The holder's tabs were all inactive for PRESENCE_IDLE_RELEASE_MS: release with reason idle."""
        self.tasks.spawn(self._idle_release(room, fence), name=f"idle release {room.workspace}")

    async def _idle_release(self, room: Room, fence: int) -> None:
        try:
            out = await self.lease.release(room.workspace, fence, "idle")
        except StoreUnavailable:
            return  # the next status change re-arms the timer
        room.apply(out.events)

    async def status(self, tab: Tab) -> None:
        room = self.rooms[tab.workspace]
        out = await self._script(self.lease.status(tab.workspace, tab.conn, self.info(tab)))
        room.apply(out.events)

    def _holder_view(self, room: Room, raw: object) -> HolderView | None:
        if not isinstance(raw, dict):
            return room.replica.holder_view(with_fence=False)
        h = HolderRecord(int(raw["fence"]), raw["user"], raw["name"], raw["tab"], int(raw["since"]))
        tabs = sum(1 for t in room.replica.tabs.values() if t.user == h.user)
        return HolderView(user=h.person, since_ms=h.since, tabs=tabs)

    # -- keeping rooms current ------------------------------------------------------------

    def _on_pubsub(self, channel: str, data: str) -> None:
        if channel == self.bridge.control_channel:
            for handler in self.control_handlers:
                handler(data)
            return
        room = self._rooms_by_channel.get(channel)
        if room is not None:
            room.apply([decode_event(data)])  # a room not filled yet sees a gap and re-reads

    def _on_resubscribed(self, channel: str) -> None:
        room = self._rooms_by_channel.get(channel)
        if room is not None:
            self.resync(room)

    def resync(self, room: Room) -> None:
        """Re-read the workspace from Redis and push a fresh state (at most one at a time)."""
        room.stale = True
        if room.workspace in self._resyncing or self.stopping:
            return
        self._resyncing.add(room.workspace)
        self.tasks.spawn(self._resync(room), name=f"resync {room.workspace}")

    async def _resync(self, room: Room) -> None:
        try:
            snapshot, _ = await self.lease.snapshot(room.workspace)  # its events are in the snapshot
        except StoreUnavailable:
            return  # stays stale; the heartbeat retries
        finally:
            self._resyncing.discard(room.workspace)
        if self.rooms.get(room.workspace) is room:
            room.reset(snapshot)

    def check_expiry(self, room: Room) -> None:
        if room.workspace in self._checking or self.stopping:
            return
        self._checking.add(room.workspace)
        self.tasks.spawn(self._check_expiry(room), name=f"expiry {room.workspace}")

    async def _check_expiry(self, room: Room) -> None:
        try:
            ttl_ms, events = await self.lease.check_expiry(room.workspace)
        except StoreUnavailable:
            room.rearm_expiry(self.settings.heartbeat_ms)  # try again later
            return
        finally:
            self._checking.discard(room.workspace)
        if self.rooms.get(room.workspace) is not room:
            return
        room.apply(events)
        if ttl_ms is not None:
            room.rearm_expiry(ttl_ms)
