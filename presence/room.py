"""Room: the tabs this process has in one workspace, the workspace's replica, and its timers.

A room turns replica changes into messages: every local tab gets a fresh ``state``; tabs of the
new holder get ``acquired``; tabs of the old one get ``released`` with the reason; waiters get
their ``queued`` position; the holder hears of handoff requests and requesters of their end.
Its timers never wait on Redis:

- the *expiry watch*, armed at the lease's PTTL, after which the owner checks Redis and
  announces a lease that expired silently (no keyspace notifications needed);
- the *local deadline* (monotonic time before the last confirmed renewal + TTL - margin): when it
  passes without a newer confirmation, the holder's local tabs are told ``released{lost}``;
- the *request deadline* of a local requester's handoff request, and the *idle timer* of a
  holder whose tabs all report inactive (``PRESENCE_IDLE_RELEASE_MS``).

The room does no I/O: it asks its owner (:class:`RoomOwner`) to re-read, check or act.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from .protocol import Acquired, Change, Declined, Person, Queued, Released, Requested, State
from .replica import Applied, Event, HolderRecord, Replica, Snapshot
from .settings import Settings
from .tab import Tab

log = logging.getLogger("presence.room")

_CHANGE_KINDS = {"joined", "left", "acquired", "released", "expired", "taken_over", "revoked", "idle"}


class RoomOwner(Protocol):
    def resync(self, room: Room) -> None: ...

    def check_expiry(self, room: Room) -> None: ...

    def request_due(self, room: Room, conn: str) -> None: ...

    def idle_due(self, room: Room, fence: int) -> None: ...


class Timer:
    """At most one pending call; re-arming replaces it."""

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        self.cancel()
        self._handle = asyncio.get_running_loop().call_later(max(0.0, delay), self._fire, callback, args)

    def _fire(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._handle = None
        callback(*args)

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


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
        self.deadline_exact = False  # see confirm()
        self._deadline = Timer()
        self._expiry = Timer()
        self._request = Timer()
        self._idle = Timer()
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
                if event.ttl_ms is not None and self.replica.holder is not None:
                    self._arm_expiry(event.ttl_ms)  # a new lease, or grace shortened it
                self._changed(before, event)

    def reset(self, snapshot: Snapshot) -> None:
        """Adopt a full re-read of the workspace and push it."""
        before = self.replica.holder
        if not self.replica.reset(snapshot, force=self.stale):
            return
        self.stale = False
        if snapshot.holder is not None and snapshot.ttl_ms >= 0:
            self._arm_expiry(snapshot.ttl_ms)
        self._changed(before, None, snapshot)

    def _changed(self, before: HolderRecord | None, event: Event | None, snapshot: Snapshot | None = None) -> None:
        after = self.replica.holder
        origin = event.origin if event is not None else ""
        if after is None:
            self._expiry.cancel()
        if after is not None and (before is None or before.fence != after.fence):
            # A holder we learnt of from a script's reply or a re-read: its TTL started (or its
            # PTTL was measured) after this process sent that script. From pub/sub: about now, a
            # provisional deadline that the next exact confirmation replaces.
            if event is not None:
                ttl, sent_at = event.ttl_ms or self.settings.lease_ttl_ms, event.sent_at
            elif snapshot is not None:
                ttl, sent_at = max(0, snapshot.ttl_ms), snapshot.sent_at
            else:
                ttl, sent_at = self.settings.lease_ttl_ms, None
            if any(self.holds(t, after) for t in self.tabs.values()):
                if sent_at is None:
                    self.confirm(after.fence, asyncio.get_running_loop().time(), ttl, exact=False)
                else:
                    self.confirm(after.fence, sent_at, ttl)
        state = self.state_message(event)
        positions = {conn: i + 1 for i, conn in enumerate(self.replica.queue)}
        for tab in list(self.tabs.values()):
            if not tab.welcomed:
                continue  # its welcome will carry the state
            self._tell_lease(tab, after, event, origin)
            position = positions.get(tab.conn, 0)
            if position != tab.queue_position:
                tab.queue_position = position
                if position and tab.conn != origin:
                    tab.send(Queued(position=position))
            tab.send(state)
        if after is None or not any(self.holds(t, after) for t in self.tabs.values()):
            self._cancel_deadline()
        if event is not None:
            self._tell_request(event)
        self._watch_policies()

    def _tell_lease(self, tab: Tab, after: HolderRecord | None, event: Event | None, origin: str) -> None:
        if after is not None and self.holds(tab, after):
            if tab.fence != after.fence:
                tab.fence = after.fence
                if tab.conn != origin:
                    tab.send(Acquired(fence=after.fence, ttl_ms=self.ttl_left_ms()))
        elif tab.fence is not None:
            tab.fence = None
            if tab.conn != origin:
                reason, by = self._loss_reason(event, after)
                tab.send(Released(reason=reason, by=by))

    def _tell_request(self, event: Event) -> None:
        request = self.replica.request
        if event.kind == "requested" and request is not None:
            wait_ms = event.wait_ms or self.settings.handoff_timeout_ms
            for tab in self.holder_tabs():
                tab.send(Requested(by=request.person, deadline_ms=wait_ms, message=request.message))
            if request.conn in self.tabs:
                self._request.arm(wait_ms / 1000 + 0.05, self.owner.request_due, self, request.conn)
        if event.kind == "request_ended" and event.target in self.tabs and event.target != event.origin:
            self.tabs[event.target].send(Declined(reason=event.reason or "declined", by=event.by))
        if request is None or request.conn not in self.tabs:
            self._request.cancel()

    def retry_request(self, conn: str, left_ms: int) -> None:
        """The request deadline has not passed in Redis time yet: look again then."""
        self._request.arm(left_ms / 1000 + 0.05, self.owner.request_due, self, conn)

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
        if event is not None and event.kind in _CHANGE_KINDS:
            change = Change(kind=event.kind, user=event.user, from_=event.from_)
        return State(
            workspace=self.workspace, seq=r.seq, holder=r.holder_view(), viewers=r.viewers(),
            queue=r.waiting(), request=r.request_view(), change=change,
        )

    # -- idle policy ----------------------------------------------------------------------

    def _watch_policies(self) -> None:
        h = self.replica.holder
        idle_ms = self.settings.idle_release_ms
        if idle_ms <= 0 or h is None or not self.holder_tabs():
            self._idle.cancel()
            return
        holder_tabs = [
            t for t in self.replica.tabs.values()
            if t.user == h.user and (self.settings.lease_scope == "user" or t.tab == h.tab)
        ]
        if holder_tabs and not any(t.active for t in holder_tabs):
            if not self._idle.armed:
                self._idle.arm(idle_ms / 1000, self.owner.idle_due, self, h.fence)
        else:
            self._idle.cancel()

    # -- local deadline -------------------------------------------------------------------

    def confirm(self, fence: int, sent_at: float, ttl_ms: int | None = None, exact: bool = True) -> None:
        """Redis confirmed (acquire, rejoin, renew) lease ``fence`` by a command sent at ``sent_at``.

        Exact confirmations only ever move the deadline later (Redis cannot expire the lease
        before the latest of them + TTL). A provisional one (``exact=False``: heard by pub/sub,
        timed at receipt) never overrides an exact one, and the first exact one replaces it, even
        when that makes the deadline earlier.
        """
        ttl = self.settings.lease_ttl_ms if ttl_ms is None else ttl_ms
        deadline = sent_at + (ttl - self.settings.safety_margin_ms) / 1000
        if self.deadline_fence == fence and self.deadline is not None:
            if self.deadline_exact and not exact:
                return
            if self.deadline_exact == exact and deadline <= self.deadline:
                return
        self.deadline, self.deadline_fence, self.deadline_exact = deadline, fence, exact
        self._deadline.arm(deadline - asyncio.get_running_loop().time(), self._deadline_passed)
        self._arm_expiry(ttl)

    def ttl_left_ms(self) -> int:
        if self.deadline is None:
            return 0
        return max(0, int((self.deadline - asyncio.get_running_loop().time()) * 1000))

    def _deadline_passed(self) -> None:
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
        self._deadline.cancel()
        self.deadline = self.deadline_fence = None

    # -- expiry watch ---------------------------------------------------------------------

    def _arm_expiry(self, ttl_ms: int) -> None:
        if not self.closed:
            # A little after the PTTL, so the key is surely gone when we look.
            self._expiry.arm(max(0, ttl_ms) / 1000 + 0.02, self._expiry_due)

    def rearm_expiry(self, ttl_ms: int) -> None:
        self._arm_expiry(ttl_ms)

    def _expiry_due(self) -> None:
        if self.replica.holder is not None:
            self.owner.check_expiry(self)

    def close(self) -> None:
        """Stop the timers; the room is no longer used. Idempotent."""
        self.closed = True
        for timer in (self._expiry, self._request, self._idle):
            timer.cancel()
        self._cancel_deadline()
