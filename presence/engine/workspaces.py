"""Workspaces: the workspaces this process has tabs in, and the I/O shell around their cores.

For each one it keeps the sans-I/O :class:`~presence.core.workspace.Workspace`, the connections
of its local tabs and the core's timers, and carries out the effects the core returns: messages
to tabs, timers, and the scripts the core asks for (re-reads, expiry checks, a handoff deadline,
an idle release). Everything that changes a workspace reaches its core through here, one way:
a tab's request (:mod:`presence.engine.commands`), the heartbeat's batch, or pub/sub.

The events of the scripts this process runs are applied at once; the same events arriving
through pub/sub are recognised by their sequence number. No asyncio lock is ever held across
Redis I/O: cores are plain objects changed between awaits. Re-reads and expiry checks are
de-duplicated: at most one of each per workspace in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.effects import (
    Arm,
    CheckExpiry,
    Disarm,
    Effect,
    IdleDue,
    Replicate,
    Replication,
    RequestDue,
    Resync,
    Send,
    Timer,
)
from ..core.events import Event, decode_event
from ..core.member import Member
from ..core.records import TabInfo
from ..core.workspace import Workspace
from ..errors import Overloaded, StoreUnavailable
from ..gateway.gateway import Gateway
from ..gateway.keys import Keys
from ..gateway.leases import LeaseScripts
from ..gateway.replies import Early, Held
from ..settings import Settings
from ..tasks import TaskSet
from ..telemetry import Telemetry
from ..wire.frames import text_frame
from ..wire.messages import encode
from .outbox import TabOutbox

log = logging.getLogger("presence.workspaces")


class Channels(Protocol):
    """The pub/sub subscriptions this process needs (:mod:`presence.gateway.pubsub`)."""

    @property
    def connected(self) -> bool: ...

    async def subscribe(self, channel: str, timeout: float) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...


@dataclass(eq=False)
class Local:
    """One workspace on this process: its core, its tabs' connections, the core's armed timers."""

    core: Workspace
    channel: str
    tabs: dict[str, TabOutbox] = field(default_factory=dict)
    timers: dict[Timer, asyncio.TimerHandle] = field(default_factory=dict)

    @property
    def workspace(self) -> str:
        return self.core.workspace


@dataclass(frozen=True, slots=True)
class Counts:
    connections: int
    workspaces: int
    leases: int  # workspaces whose lease a tab on this process holds


class Workspaces:
    """Lifecycle: serve tabs through :meth:`join` / :meth:`leave`; ``await stop()`` closes every
    tab with 1012 and every core (idempotent). Background scripts run in ``tasks``."""

    def __init__(
        self, settings: Settings, server_id: str, gateway: Gateway, leases: LeaseScripts, keys: Keys,
        channels: Channels, tasks: TaskSet, telemetry: Telemetry,
    ) -> None:
        self.telemetry = telemetry
        self.settings = settings
        self.server_id = server_id
        self.gateway = gateway
        self.leases = leases
        self.keys = keys
        self.channels = channels
        self.tasks = tasks
        self._locals: dict[str, Local] = {}
        self._by_channel: dict[str, Local] = {}
        self._resyncing: set[str] = set()
        self._checking: set[str] = set()
        self._stopping = False

    # -- reading ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Local]:
        return iter(list(self._locals.values()))

    def __contains__(self, workspace: object) -> bool:
        return workspace in self._locals

    def ids(self) -> list[str]:
        return list(self._locals)

    def core(self, workspace: str) -> Workspace:
        return self._locals[workspace].core

    def member(self, tab: TabOutbox) -> Member:
        return self._locals[tab.workspace].core.members[tab.conn]

    def counts(self) -> Counts:
        connections = leases = 0
        for local in self._locals.values():
            connections += len(local.tabs)
            if local.core.holding.holders():
                leases += 1
        return Counts(connections, len(self._locals), leases)

    def tab(self, workspace: str, conn: str) -> TabOutbox | None:
        local = self._locals.get(workspace)
        return None if local is None else local.tabs.get(conn)

    def find(self, conn: str) -> TabOutbox | None:
        for local in self._locals.values():
            tab = local.tabs.get(conn)
            if tab is not None:
                return tab
        return None

    def info(self, tab: TabOutbox) -> TabInfo:
        m = self.member(tab)
        return TabInfo(m.user.id, m.user.name, m.tab, m.active, m.meta, self.server_id)

    def close_tab(self, conn: str, code: int, reason: str) -> bool:
        """Close tab ``conn`` if it is on this process; True if it was."""
        tab = self.find(conn)
        if tab is None:
            return False
        tab.close(code, reason)
        return True

    # -- joining and leaving ----------------------------------------------------------------

    async def join(self, tab: TabOutbox, expires_in_ms: int | None = None) -> None:
        """Enter the tab into its workspace and send ``welcome`` (and ``acquired`` on a rejoin);
        ``expires_in_ms``: the time left of its token, for the welcome.

        Raises ``Overloaded`` (1013) when Redis is unavailable. A join that fails undoes itself.
        """
        if not self.channels.connected:
            raise Overloaded("Redis unavailable, retry later")
        if not self.gateway.scripts_loaded:
            try:
                await self.gateway.load_scripts()
            except StoreUnavailable as exc:
                raise Overloaded("Redis unavailable, retry later") from exc
        local = self._local(tab.workspace)
        local.tabs[tab.conn] = tab
        local.core.members.add(Member(tab.conn, tab.user, tab.tab_id))
        try:
            await self.channels.subscribe(local.channel, timeout=self.settings.heartbeat_ms / 1000)
            out = await self.leases.join(tab.workspace, tab.conn, self.info(tab), whole=local.core.replica.seq == 0)
        except BaseException as exc:
            self._forget(local, tab)
            if isinstance(exc, StoreUnavailable):
                raise Overloaded("Redis unavailable, retry later") from exc
            raise
        try:
            now = self._now()
            core = local.core
            self._carry_out(local, core.catch_up(out.reply.snapshot, out.reply.seq, out.events, out.sent_at, now))
            self._carry_out(local, core.welcome(tab.conn, out.reply.rejoined, out.sent_at, now, expires_in_ms))
        except Exception:
            await self.leave(tab, clean=False)  # the Redis presence entry too: no ghost is left
            raise

    async def leave(self, tab: TabOutbox, clean: bool) -> None:
        local = self._locals.get(tab.workspace)
        if local is not None:
            self._forget(local, tab)
        try:
            out = await self.leases.leave(tab.workspace, tab.conn, clean)
        except StoreUnavailable:
            # The presence entry expires by itself; the lease too, at its TTL.
            log.warning("%r left while Redis was unavailable", tab)
            return
        self.apply(tab.workspace, out.events, out.sent_at)

    async def rejoin(self, tab: TabOutbox) -> None:
        """Re-add a tab whose presence entry was pruned (this process was paused too long)."""
        local = self._locals.get(tab.workspace)
        if local is None or tab.conn not in local.tabs:
            return
        try:
            out = await self.leases.join(tab.workspace, tab.conn, self.info(tab), whole=local.core.replica.seq == 0)
        except StoreUnavailable:
            return
        if self._locals.get(tab.workspace) is local:
            reply = out.reply
            self._carry_out(local, local.core.catch_up(reply.snapshot, reply.seq, out.events, out.sent_at, self._now()))

    def _local(self, workspace: str) -> Local:
        local = self._locals.get(workspace)
        if local is None:
            channel = self.keys.workspace(workspace).channel
            local = Local(Workspace(workspace, self.settings), channel)
            self._locals[workspace] = local
            self._by_channel[channel] = local
        return local

    def _forget(self, local: Local, tab: TabOutbox) -> None:
        local.tabs.pop(tab.conn, None)
        local.core.members.remove(tab.conn)
        if not local.tabs and self._locals.get(local.workspace) is local:
            del self._locals[local.workspace]
            self._by_channel.pop(local.channel, None)
            self._carry_out(local, local.core.close())
            self.channels.unsubscribe(local.channel)

    async def stop(self, close_code: int, reason: str) -> None:
        """Close every tab (their leases stay: clients reconnect elsewhere within the TTL and keep
        them) and stop every core's timers. Background scripts are the task set's to await."""
        self._stopping = True
        for local in list(self._locals.values()):
            for tab in list(local.tabs.values()):
                tab.close(close_code, reason)
        for local in list(self._locals.values()):
            self._carry_out(local, local.core.close())

    # -- feeding the cores ------------------------------------------------------------------

    def apply(self, workspace: str, events: Sequence[Event], sent_at: float | None) -> None:
        """Apply a script's events (``sent_at``: when it was sent) to the workspace, if local."""
        local = self._locals.get(workspace)
        if local is not None and events:
            self._carry_out(local, local.core.apply(events, self._now(), sent_at))

    def carry_out(self, workspace: str, effects: Sequence[Effect]) -> None:
        local = self._locals.get(workspace)
        if local is not None:
            self._carry_out(local, effects)

    def on_published(self, channel: str, data: str) -> None:
        """A message on a workspace channel (pub/sub). A core not filled yet sees a gap and re-reads."""
        local = self._by_channel.get(channel)
        if local is not None:
            self._carry_out(local, local.core.apply([decode_event(data)], self._now()))

    def on_resubscribed(self, channel: str) -> None:
        """The channel was confirmed again after the connection dropped: messages may be lost."""
        local = self._by_channel.get(channel)
        if local is not None:
            self.resync(local.workspace)  # marks it stale, whether a re-read is in flight or not

    # -- effects ----------------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _carry_out(self, local: Local, effects: Sequence[Effect]) -> None:
        for effect in effects:
            match effect:
                case Send(to=(conn,), message=message):
                    if (tab := local.tabs.get(conn)) is not None:
                        tab.send(message)
                case Send(to=to, message=message):
                    # Encoded once for the whole workspace (per-tab stamping is for one tab).
                    text = encode(message)
                    frame = text_frame(text.encode())
                    tabs = local.tabs
                    sent = sum(1 for conn in to if (tab := tabs.get(conn)) is not None and tab.send_frame(text, frame))
                    self.telemetry.message_out(message, sent)
                case Arm(timer=timer, at=at):
                    old = local.timers.pop(timer, None)
                    if old is not None:
                        old.cancel()
                    local.timers[timer] = asyncio.get_running_loop().call_at(at, self._fire, local, timer)
                case Disarm(timer=timer):
                    handle = local.timers.pop(timer, None)
                    if handle is not None:
                        handle.cancel()
                case Resync():
                    self.resync(local.workspace)
                case CheckExpiry():
                    self._check_expiry(local)
                case RequestDue(conn=conn):
                    self._spawn(self._request_due(local, conn), f"request deadline {conn}")
                case IdleDue(fence=fence):
                    self._spawn(self._idle_release(local, fence), f"idle release {local.workspace}")
                case Replicate(fence=fence):
                    self._spawn(self._replicate(local, fence), f"replicate {local.workspace}")

    def _fire(self, local: Local, timer: Timer) -> None:
        local.timers.pop(timer, None)
        self._carry_out(local, local.core.fire(timer, self._now()))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._stopping:
            coro.close()
            return
        self.tasks.spawn(coro, name=name)

    def _current(self, local: Local) -> bool:
        return self._locals.get(local.workspace) is local

    # -- scripts the cores ask for ----------------------------------------------------------

    def resync(self, workspace: str) -> None:
        """Re-read the workspace from Redis and push a fresh state (at most one at a time)."""
        local = self._locals.get(workspace)
        if local is None:
            return
        local.core.follower.stale = True
        if workspace in self._resyncing or self._stopping:
            return
        self._resyncing.add(workspace)
        self._spawn(self._resync(local), f"resync {workspace}")

    async def _resync(self, local: Local) -> None:
        try:
            out = await self.leases.snapshot(local.workspace)  # its events are in the snapshot
        except StoreUnavailable:
            return  # stays stale; the heartbeat retries
        finally:
            self._resyncing.discard(local.workspace)
        if self._current(local):
            self._carry_out(local, local.core.reset(out.reply, out.sent_at, self._now()))

    def _check_expiry(self, local: Local) -> None:
        if local.workspace in self._checking or self._stopping:
            return
        self._checking.add(local.workspace)
        self._spawn(self._expiry(local), f"expiry {local.workspace}")

    async def _expiry(self, local: Local) -> None:
        try:
            out = await self.leases.check_expiry(local.workspace)
        except Exception as exc:
            # Whatever went wrong, the watch must go on: a dropped check would leave an expired
            # lease unannounced until the next change.
            if not isinstance(exc, StoreUnavailable):
                log.exception("expiry check of %s failed; trying again", local.workspace)
            self._carry_out(local, local.core.watch_expiry(self.settings.heartbeat_ms, self._now()))
            return
        finally:
            self._checking.discard(local.workspace)
        if not self._current(local):
            return
        now = self._now()
        self._carry_out(local, local.core.apply(out.events, now, out.sent_at))
        if isinstance(out.reply, Held):  # alive (maybe just handed on): look again at its PTTL
            self._carry_out(local, local.core.watch_expiry(out.reply.ttl_ms, now))

    async def _request_due(self, local: Local, conn: str) -> None:
        """A local requester's deadline passed: take over (if allowed) or end the request."""
        tab = local.tabs.get(conn)
        may_take = self.settings.handoff_takeover and tab is not None and tab.may_take_over
        try:
            out = await self.leases.handoff(local.workspace, "timeout", conn, may_take_over=may_take)
        except StoreUnavailable:
            self._carry_out(local, local.core.retry_request(conn, self.settings.heartbeat_ms, self._now()))
            return
        now = self._now()
        if isinstance(out.reply, Early):  # not yet by Redis' clock
            self._carry_out(local, local.core.retry_request(conn, out.reply.left_ms, now))
        self._carry_out(local, local.core.apply(out.events, now, out.sent_at))

    async def _replicate(self, local: Local, fence: int) -> None:
        """Renew lease ``fence``, handed to a local tab, and WAIT for the replicas to have it."""
        sent_at = self._now()
        try:
            outcome = await self.leases.replicate(local.workspace, fence)
        except Exception as exc:
            # Whatever went wrong, the core tries again after a heartbeat: a dropped confirmation
            # would leave the grantee never told.
            if not isinstance(exc, StoreUnavailable):
                log.exception("confirming lease %d of %s on the replicas failed; trying again", fence, local.workspace)
            outcome = Replication.FAILED
        if self._current(local):
            self._carry_out(local, local.core.replicated(fence, outcome, sent_at, self._now()))

    async def _idle_release(self, local: Local, fence: int) -> None:
        """The holder's tabs were all inactive for PRESENCE_IDLE_RELEASE_MS: release with reason idle."""
        try:
            out = await self.leases.release(local.workspace, fence, "idle")
        except StoreUnavailable:
            return  # the next status change re-arms the timer
        self._carry_out(local, local.core.apply(out.events, self._now(), out.sent_at))
