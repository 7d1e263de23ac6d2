"""Room: the tabs this process has in one workspace, the workspace's replica, and its timers.

A room turns replica changes into messages: every local tab gets a fresh ``state``; tabs of the
new holder get ``acquired``; tabs of the old one get ``released`` with the reason. It keeps two
timers, neither of which waits on Redis:

- the *expiry watch*, armed at the lease's PTTL, after which the owner checks Redis and
  announces a lease that expired silently (no keyspace notifications needed);
- the *local deadline* (monotonic time before the last confirmed renewal + TTL - margin): when it
  passes without a newer confirmation, the holder's local tabs are told ``released{lost}``.

The room does no I/O: it asks its owner (:class:`RoomOwner`) to re-read or check the workspace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from .protocol import Acquired, Change, Person, Released, State
from .replica import Applied, Event, HolderRecord, Replica, Snapshot
from .settings import Settings
from .tab import Tab

log = logging.getLogger("presence.room")

_LEASE_CHANGES = {"acquired", "released", "expired", "taken_over", "revoked", "idle"}


class RoomOwner(Protocol):
    def resync(self, room: Room) -> None: ...

    def check_expiry(self, room: Room) -> None: ...


class Room:
    """Lifecycle: created with the first local tab of a workspace (``replica.seq`` is 0 until the
    first snapshot fills it), closed when its last local tab leaves."""

    def __init__(self, workspace: str, channel: str, settings: Settings, owner: RoomOwner) -> None:
        self.workspace = workspace
        self.channel = channel
        self.settings = settings
        self.owner = owner
        self.tabs: dict[str, Tab] = {}
        self.replica = Replica(workspace)
        self.stale = False  # a re-read is wanted (gap, failed renewal, lost subscription)
        self.deadline: float | None = None  # loop time; local lease deadline for ``deadline_fence``
        self.deadline_fence: int | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<Room {self.workspace} tabs={len(self.tabs)} seq={self.replica.seq}>"

    # -- holder matching ------------------------------------------------------------------

    def holds(self, tab: Tab, holder: HolderRecord | None = None) -> bool:
        h = self.replica.holder if holder is None else holder
        if h is None or h.user != tab.user.id:
            return False
        return self.settings.lease_scope == "user" or h.tab == tab.tab_id

    def holder_tabs(self) -> list[Tab]:
        return [t for t in self.tabs.values() if t.fence is not None and self.holds(t)]

    # -- applying changes -----------------------------------------------------------------

    def apply(self, events: list[Event]) -> None:
        """Apply events in order (from a script's reply or from pub/sub)."""
        for event in events:
            before = self.replica.holder
            result = self.replica.apply(event)
            if result is Applied.GAP:
                self.stale = True
                self.owner.resync(self)
                return
            if result is Applied.APPLIED:
                if event.lease and event.ttl_ms is not None:
                    self._arm_expiry(event.ttl_ms)
                elif event.ttl_ms is not None and self.replica.holder is not None:
                    self._arm_expiry(event.ttl_ms)  # grace shortened the lease
                self._changed(before, event)

    def reset(self, snapshot: Snapshot) -> None:
        """Adopt a full re-read of the workspace and push it."""
        before = self.replica.holder
        if not self.replica.reset(snapshot, force=self.stale):
            return
        self.stale = False
        if snapshot.holder is not None and snapshot.ttl_ms >= 0:
            self._arm_expiry(snapshot.ttl_ms)
        self._changed(before, None)

    def _changed(self, before: HolderRecord | None, event: Event | None) -> None:
        after = self.replica.holder
        loop = asyncio.get_running_loop()
        origin = event.origin if event is not None else ""
        if after is None:
            self._cancel_expiry()
        if after is not None and (before is None or before.fence != after.fence):
            # A holder we learnt of from an event: its TTL started about now.
            ttl = event.ttl_ms if event is not None and event.ttl_ms else self.settings.lease_ttl_ms
            if any(self.holds(t, after) for t in self.tabs.values()):
                self.confirm(after.fence, loop.time(), ttl)
        state = self.state_message(event)
        for tab in list(self.tabs.values()):
            if not tab.welcomed:
                continue  # its welcome will carry the state
            if self.holds(tab, after):
                assert after is not None
                if tab.fence != after.fence:
                    tab.fence = after.fence
                    if tab.conn != origin:
                        tab.send(Acquired(fence=after.fence, ttl_ms=self.ttl_left_ms()))
            elif tab.fence is not None:
                tab.fence = None
                if tab.conn != origin:
                    reason, by = self._loss_reason(event, after)
                    tab.send(Released(reason=reason, by=by))
            tab.send(state)
        if after is None or not any(self.holds(t, after) for t in self.tabs.values()):
            self._cancel_deadline()

    @staticmethod
    def _loss_reason(event: Event | None, after: HolderRecord | None) -> tuple[str, Person | None]:
        if event is not None and event.lease and event.reason:
            by = event.by or (event.user if event.reason == "taken_over" else None)
            return event.reason, by
        if after is not None:
            return "taken_over", after.person
        return "expired", None

    def state_message(self, event: Event | None = None) -> State:
        r = self.replica
        change = None
        if event is not None and event.kind != "status" and (event.kind in _LEASE_CHANGES or event.user):
            change = Change(kind=event.kind, user=event.user, from_=event.from_)
        return State(
            workspace=self.workspace, seq=r.seq, holder=r.holder_view(), viewers=r.viewers(), change=change
        )

    # -- local deadline -------------------------------------------------------------------

    def confirm(self, fence: int, sent_at: float, ttl_ms: int | None = None) -> None:
        """Redis confirmed (acquire, rejoin, renew) lease ``fence`` by a command sent at ``sent_at``."""
        ttl = self.settings.lease_ttl_ms if ttl_ms is None else ttl_ms
        deadline = sent_at + (ttl - self.settings.safety_margin_ms) / 1000
        if self.deadline_fence == fence and self.deadline is not None and deadline <= self.deadline:
            return
        self.deadline, self.deadline_fence = deadline, fence
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_timer = asyncio.get_running_loop().call_at(deadline, self._deadline_passed)
        self._arm_expiry(ttl)

    def ttl_left_ms(self) -> int:
        if self.deadline is None:
            return 0
        return max(0, int((self.deadline - asyncio.get_running_loop().time()) * 1000))

    def _deadline_passed(self) -> None:
        self._deadline_timer = None
        fence = self.deadline_fence
        self.deadline = self.deadline_fence = None
        lost = [t for t in self.tabs.values() if t.fence is not None and t.fence == fence]
        if lost:
            log.warning("%r: lease %s not renewed in time, telling %d tab(s) it is lost", self, fence, len(lost))
        for tab in lost:
            tab.fence = None
            tab.send(Released(reason="lost"))
        # Redis decides what is true now; the re-read pushes it once Redis answers again.
        self.stale = True
        self.owner.resync(self)

    def _cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_timer = None
        self.deadline = self.deadline_fence = None

    # -- expiry watch ---------------------------------------------------------------------

    def _arm_expiry(self, ttl_ms: int) -> None:
        if self.closed:
            return
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        # A little after the PTTL, so the key is surely gone when we look.
        delay = max(0, ttl_ms) / 1000 + 0.02
        self._expiry_timer = asyncio.get_running_loop().call_later(delay, self._expiry_due)

    def rearm_expiry(self, ttl_ms: int) -> None:
        self._arm_expiry(ttl_ms)

    def _expiry_due(self) -> None:
        self._expiry_timer = None
        if self.replica.holder is not None:
            self.owner.check_expiry(self)

    def _cancel_expiry(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_timer = None

    def close(self) -> None:
        """Stop the timers; the room is no longer used. Idempotent."""
        self.closed = True
        self._cancel_expiry()
        self._cancel_deadline()
