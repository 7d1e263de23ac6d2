"""Hub: one per server process. Owns the rooms, the store, the pub/sub bridge, the heartbeat and
the request handlers; enters tabs into their workspace and takes them out again.

Rooms are kept current by the events of the scripts this process runs (applied at once) and by
the same events arriving through pub/sub, recognised by their sequence number. No asyncio lock
is ever held across Redis I/O: rooms are plain dictionaries changed between awaits.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Callable

from .errors import (
    Overloaded,
    Restarting,
    StoreUnavailable,
    TooMany,
)
from .gateway.pubsub import Subscriptions
from .lease import LeaseStore
from .metrics import Metrics
from .ops import Ops
from .protocol import (
    Acquired,
    Person,
    Welcome,
)
from .replica import TabInfo, decode_event
from .requests import Requests
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
        self.bridge = Subscriptions(
            self.store.client, self.store.cluster, f"{settings.key_prefix}:control", self._on_pubsub,
            self._on_resubscribed,
        )
        self._conn_seq = 0
        self._resyncing: set[str] = set()
        self._checking: set[str] = set()
        self.stopping = False
        self._stopped = False
        self._loading_scripts = False
        from .heartbeat import Heartbeat  # cycle: the heartbeat drives the hub

        self.heartbeat = Heartbeat(self)
        self.requests = Requests(self)
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
        await self.bridge.stop()
        await self.tasks.close()
        for room in self.rooms.values():
            room.close()
        await self.ops.stop()  # flushes the audit log: needs the store
        await self.store.close()

    @property
    def ready(self) -> bool:
        return self.store.scripts_loaded and self.bridge.connected

    def load_scripts_soon(self) -> None:
        """Scripts not loaded yet (Redis down or slow at start-up): load them in the background,
        so /readyz recovers by itself (a balancer sends no tab whose join would load them)."""
        if self.store.scripts_loaded or self._loading_scripts or self.stopping:
            return
        self._loading_scripts = True
        self.tasks.spawn(self._load_scripts(), name="load scripts")

    async def _load_scripts(self) -> None:
        try:
            await self.store.load_scripts()
            log.info("Redis answers: scripts loaded")
        except StoreUnavailable:
            pass  # the next heartbeat tick tries again
        finally:
            self._loading_scripts = False

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

    # -- timers of rooms (see Room) -------------------------------------------------------

    def request_due(self, room: Room, conn: str) -> None:
        self.requests.request_due(room, conn)

    def idle_due(self, room: Room, fence: int) -> None:
        self.requests.idle_due(room, fence)

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
        except Exception as exc:
            # Whatever went wrong, the watch must go on: a dropped check would leave an expired
            # lease unannounced until the next change.
            if not isinstance(exc, StoreUnavailable):
                log.exception("expiry check of %s failed; trying again", room.workspace)
            room.rearm_expiry(self.settings.heartbeat_ms)
            return
        finally:
            self._checking.discard(room.workspace)
        if self.rooms.get(room.workspace) is not room:
            return
        room.apply(events)
        if ttl_ms is not None:
            room.rearm_expiry(ttl_ms)
