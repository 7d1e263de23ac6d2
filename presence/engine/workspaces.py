"""Workspaces: the workspaces this process has tabs in, and the I/O shell around their cores.

For each one it keeps the sans-I/O :class:`~presence.core.workspace.Workspace`, the outboxes of
its local tabs and the core's timers, and carries out the effects the core returns: messages to
tabs, timers, and the scripts the core asks for (re-reads, expiry checks, a handoff deadline, an
idle release, a confirmation on the replicas, a presence write), whose outcomes go back to the
core. Everything that changes a workspace reaches its core through here, one way: a tab's request
(:mod:`presence.engine.commands`), the heartbeat's batch, or pub/sub.

The events of the scripts this process runs are applied at once; the same events arriving
through pub/sub are recognised by their sequence number. No asyncio lock is ever held across
Redis I/O: cores are plain objects changed between awaits. The scripts effects ask for run in
the background (:mod:`presence.engine.errands`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from ..core.effects import (
    Arm,
    CheckExpiry,
    Disarm,
    Effect,
    IdleDue,
    Replicate,
    RequestDue,
    Resync,
    Send,
    Timer,
    WriteStatus,
)
from ..core.events import Event
from ..core.member import Member
from ..core.outcomes import Entered, Outcome
from ..core.policy import Policy
from ..core.workspace import Workspace
from ..errors import Overloaded, StoreUnavailable
from ..gateway.gateway import Gateway
from ..gateway.keys import Keys
from ..gateway.leases import LeaseScripts
from ..tasks import TaskSet
from ..telemetry import Telemetry
from ..wire.frames import text_frame
from ..wire.messages import encode
from .errands import Answer, Errands
from .local import Local
from .outbox import TabOutbox

log = logging.getLogger("presence.workspaces")


class Channels(Protocol):
    """The pub/sub subscriptions this process needs (:mod:`presence.gateway.pubsub`)."""

    @property
    def connected(self) -> bool: ...

    async def subscribe(self, channel: str, timeout: float) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Counts:
    connections: int
    workspaces: int
    leases: int  # leases (workspaces' own and named locks) a tab on this process holds


class Workspaces:
    """Lifecycle: serve tabs through :meth:`join` / :meth:`leave`; ``await stop()`` closes every
    tab with 1012 and every core (idempotent). Background scripts run in ``tasks``."""

    def __init__(
        self, policy: Policy, server_id: str, gateway: Gateway, leases: LeaseScripts, keys: Keys,
        channels: Channels, tasks: TaskSet, telemetry: Telemetry,
    ) -> None:
        self.policy = policy
        self.server_id = server_id
        self.gateway = gateway
        self.leases = leases
        self.keys = keys
        self.channels = channels
        self.tasks = tasks
        self.telemetry = telemetry
        self._locals: dict[str, Local] = {}
        self._by_channel: dict[str, Local] = {}
        self.errands = Errands(leases, tasks, self._deliver)

    # -- reading ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Local]:
        return iter(list(self._locals.values()))

    def __contains__(self, workspace: object) -> bool:
        return workspace in self._locals

    def ids(self) -> list[str]:
        return list(self._locals)

    def core(self, workspace: str) -> Workspace:
        return self._locals[workspace].core

    def counts(self) -> Counts:
        connections = leases = 0
        for local in self._locals.values():
            connections += len(local.tabs)
            leases += len(local.core.held_locally())
        return Counts(connections, len(self._locals), leases)

    def tab(self, workspace: str, conn: str) -> TabOutbox | None:
        local = self._locals.get(workspace)
        return None if local is None else local.tabs.get(conn)

    def close_tab(self, conn: str, code: int, reason: str) -> bool:
        """Close tab ``conn`` if it is on this process; True if it was."""
        for local in self._locals.values():
            tab = local.tabs.get(conn)
            if tab is not None:
                tab.close(code, reason)
                return True
        return False

    # -- joining and leaving ----------------------------------------------------------------

    async def join(self, tab: TabOutbox, read_only: bool = False, expires_in_ms: int | None = None) -> None:
        """Enter the tab into its workspace and send ``welcome`` (and ``acquired`` on a rejoin).

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
        core = local.core
        core.enter(Member(tab.conn, tab.user, tab.tab_id, may_take_over=tab.may_take_over, read_only=read_only))
        try:
            await self.channels.subscribe(local.channel, timeout=self.policy.heartbeat_ms / 1000)
            out = await self._join_script(local, tab)
        except BaseException as exc:
            self._forget(local, tab.conn)
            if isinstance(exc, StoreUnavailable):
                raise Overloaded("Redis unavailable, retry later") from exc
            raise
        try:
            self._carry_out(local, core.joined(tab.conn, out, self._now(), expires_in_ms))
        except Exception:
            await self.leave(tab, clean=False)  # the Redis presence entry too: no ghost is left
            raise

    async def _join_script(self, local: Local, tab: TabOutbox) -> Outcome[Entered]:
        """Tab ``tab``'s join script. The first join of a workspace this process has no copy of
        asks for the whole workspace with its reply; the joins that come while it runs wait for it
        (their scripts then carry only their own changes). Should it fail, the next one asks."""
        while local.core.unread and local.reading is not None:
            await local.reading.wait()  # an Event: a waiter cancelled (its tab gone) cancels nothing else
        if not local.core.unread:
            return await self.leases.join(tab.workspace, tab.conn, local.core.info(tab.conn), whole=False)
        local.reading = reading = asyncio.Event()
        try:
            return await self.leases.join(tab.workspace, tab.conn, local.core.info(tab.conn), whole=True)
        finally:
            local.reading = None
            reading.set()

    async def leave(self, tab: TabOutbox, clean: bool) -> None:
        local = self._locals.get(tab.workspace)
        if local is not None:
            self._forget(local, tab.conn)
        try:
            out = await self.leases.leave(tab.workspace, tab.conn, clean)
        except StoreUnavailable:
            # The presence entry expires by itself; the lease too, at its TTL.
            log.warning("%r left while Redis was unavailable", tab)
            return
        self.applied(tab.workspace, out)

    async def rejoin(self, tab: TabOutbox) -> None:
        """Re-add a tab whose presence entry was pruned (this process was paused too long)."""
        local = self._locals.get(tab.workspace)
        if local is None or tab.conn not in local.tabs:
            return
        try:
            out = await self.leases.join(tab.workspace, tab.conn, local.core.info(tab.conn), whole=local.core.unread)
        except StoreUnavailable:
            return
        if self._current(local):
            self._carry_out(local, local.core.rejoined(out, self._now()))

    def _local(self, workspace: str) -> Local:
        local = self._locals.get(workspace)
        if local is None:
            channel = self.keys.workspace(workspace).channel
            local = Local(Workspace(workspace, self.policy, self.server_id), channel)
            self._locals[workspace] = local
            self._by_channel[channel] = local
        return local

    def _forget(self, local: Local, conn: str) -> None:
        local.tabs.pop(conn, None)
        self._carry_out(local, local.core.leave(conn))
        if not local.tabs and self._locals.get(local.workspace) is local:
            del self._locals[local.workspace]
            self._by_channel.pop(local.channel, None)
            self._carry_out(local, local.core.close())
            self.channels.unsubscribe(local.channel)

    async def stop(self, close_code: int, reason: str) -> None:
        """Close every tab (their leases stay: clients reconnect elsewhere within the TTL and keep
        them) and stop every core's timers. Background scripts are the task set's to await."""
        self.errands.stopping = True
        for local in list(self._locals.values()):
            for tab in list(local.tabs.values()):
                tab.close(close_code, reason)
        for local in list(self._locals.values()):
            self._carry_out(local, local.core.close())

    # -- feeding the cores ------------------------------------------------------------------

    def carry_out(self, workspace: str, effects: Sequence[Effect]) -> None:
        """Carry out what workspace ``workspace``'s core answered (if it is still local)."""
        local = self._locals.get(workspace)
        if local is not None:
            self._carry_out(local, effects)

    def applied(self, workspace: str, out: Outcome[msgspec.Struct]) -> None:
        """A script this process ran for ``workspace`` whose reply asks nothing more of the core."""
        local = self._locals.get(workspace)
        if local is not None:
            self.errands.applied(local, out)

    async def written(self, workspace: str, conn: str) -> None:
        """Wait for tab ``conn``'s presence write in flight, if any (its failure is the write's own)."""
        local = self._locals.get(workspace)
        task = None if local is None else local.writes.get(conn)
        if task is not None:
            await asyncio.wait([task])

    def on_event(self, channel: str, event: Event) -> None:
        """An event on a workspace channel (pub/sub, decoded once for every receiver)."""
        local = self._by_channel.get(channel)
        if local is not None:
            self._carry_out(local, local.core.published(event, self._now()))

    def on_resubscribed(self, channel: str) -> None:
        """The channel was confirmed again after the connection dropped: messages may be lost."""
        local = self._by_channel.get(channel)
        if local is not None:
            self._carry_out(local, local.core.subscription_lost())

    def resync_stale(self) -> None:
        """Re-read every workspace whose core wants it (the heartbeat asks once a tick)."""
        for local in list(self._locals.values()):
            if local.core.stale:
                self.errands.reread(local)

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
                case Arm(timer=timer, at=at, key=key):
                    if (old := local.timers.pop((timer, key), None)) is not None:
                        old.cancel()
                    local.timers[(timer, key)] = asyncio.get_running_loop().call_at(at, self._fire, local, timer, key)
                case Disarm(timer=timer, key=key):
                    if (armed := local.timers.pop((timer, key), None)) is not None:
                        armed.cancel()
                case Resync():
                    self.errands.reread(local)
                case CheckExpiry(lock=lock):
                    self.errands.check_expiry(local, lock)
                case RequestDue(conn=conn, may_take_over=may_take, lock=lock):
                    self.errands.request_due(local, lock, conn, may_take)
                case IdleDue(fence=fence, lock=lock):
                    self.errands.idle_release(local, lock, fence)
                case Replicate(fence=fence, lock=lock):
                    self.errands.replicate(local, lock, fence)
                case WriteStatus(conn=conn, info=info):
                    self.errands.write_status(local, conn, info)

    def _fire(self, local: Local, timer: Timer, key: str) -> None:
        local.timers.pop((timer, key), None)
        self._carry_out(local, local.core.fire(timer, key, self._now()))

    def _deliver(self, local: Local, answer: Answer) -> None:
        """An errand's outcome to ``local``'s core, if it is still this process's workspace."""
        if self._current(local):
            self._carry_out(local, answer(local.core, self._now()))

    def _current(self, local: Local) -> bool:
        return self._locals.get(local.workspace) is local
