"""Changes: the workspace core's state machine, which turns what Redis did into effects.

It owns the workspace's :class:`~presence.core.replica.Replica` (kept in step with Redis by its
:class:`~presence.core.follower.Follower`), the local tabs (:class:`~presence.core.member.Members`,
whose leases :class:`~presence.core.holding.Holding` writes), what they were shown
(:class:`~presence.core.view.Shown`), the local lease deadline of each lock and the armed timers.
Each change it applies (an event, or a re-read) is turned into effects: who is told what, the
deadlines and timers. It never awaits, touches no socket or Redis and reads no clock (``now`` is
passed in). Only :class:`~presence.core.workspace.Workspace`, the core's front door, uses it.

Lease news goes out at once (``acquired``, ``released``, ``queued``, handoff requests and their
end; the tab whose request made a change is answered by that request). What everyone sees goes
out as one ``update`` per ``PRESENCE_UPDATE_WINDOW_MS``, and whole as ``state`` after a re-read.

Timers (:class:`~presence.core.effects.Timer`), per lock: the *expiry watch* at the lease's PTTL
(the shell then checks for a silent expiry: no keyspace notifications needed); the *local
deadline* (:mod:`~presence.core.deadline`: passed unconfirmed, the holder's tabs are told
``lost``); a local requester's *request deadline*; the holder's *idle timer*; the next try at
confirming a handoff on the replicas. Per workspace: the *flush* of the next update.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from ..wire.messages import Acquired, Change, Declined, Released, Requested, ServerMessage, State
from . import rules
from .cadence import next_instant
from .deadline import Deadline
from .effects import Arm, CheckExpiry, Disarm, Effect, Resync, Send, Timer
from .events import LEASE_KINDS, Event, HandoffRequested, LeaseEvent, RequestEnded, TabLeft, change_of
from .follower import Follower
from .holding import Holding
from .member import Members
from .policy import Policy
from .records import HolderRecord, Snapshot
from .replica import Applied, Replica
from .view import Shown

log = logging.getLogger("presence.workspace")

EXPIRY_SLACK_S = 0.02  # look a little after the PTTL, so the key is surely gone
REQUEST_SLACK_S = 0.05  # likewise after a request's deadline (Redis time decides)


class Changes:
    """Lifecycle: created with the first local tab of a workspace, closed (:meth:`close`) when
    its last local tab leaves. Methods that change anything add effects; :meth:`drain` takes them,
    in order."""

    def __init__(self, workspace: str, policy: Policy) -> None:
        self.workspace = workspace
        self.policy = policy
        self.members = Members()
        self.replica = Replica(workspace)
        self.shown = Shown(self.replica)
        self.follower = Follower(self.replica)
        self.holding = Holding(self.members, self.replica, policy)
        self.closed = False
        self._deadlines: dict[str, Deadline] = {}
        self._change: Change | None = None  # the latest change not yet sent in an update
        self._flushed_at = float("-inf")  # loop time of the last update sent
        self._armed: dict[tuple[Timer, str], float] = {}  # each armed timer: when it is due
        self.request_conn: dict[str, str] = {}  # lock -> whose deadline its REQUEST timer watches
        self.idle_fence: dict[str, int] = {}  # lock -> which lease its IDLE timer watches
        self._out: list[Effect] = []

    def drain(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    def add(self, effect: Effect) -> None:
        self._out.append(effect)

    def send(self, conns: Sequence[str], message: ServerMessage) -> None:
        if conns:
            self._out.append(Send(tuple(conns), message))

    def arm(self, timer: Timer, at: float, key: str = "") -> None:
        self._armed[timer, key] = at
        self._out.append(Arm(timer, at, key))

    def disarm(self, timer: Timer, key: str = "") -> None:
        if self._armed.pop((timer, key), None) is not None:
            self._out.append(Disarm(timer, key))

    def armed(self, timer: Timer, key: str = "") -> bool:
        return (timer, key) in self._armed

    def fired(self, timer: Timer, key: str) -> float | None:
        """The shell's timer went off: when it was due, if it was still armed (None: it is stale,
        ignore it). A timer goes off a little after it is due; what keeps a cadence counts from
        when it was due."""
        return self._armed.pop((timer, key), None)

    # -- applying what Redis did --------------------------------------------------------------

    def apply(self, events: Sequence[Event], now: float, sent_at: float | None = None) -> None:
        """Apply events in order: a script's reply's (``sent_at``: when it was sent) or pub/sub's."""
        resync = False
        for event in events:
            if isinstance(event, LeaseEvent) and self._change is not None and self._change.kind in LEASE_KINDS:
                self.flush(now)  # never two lease changes in one update: everyone hears of each
            lock = event.lock
            before = self.replica.lease(lock).holder
            result = self.follower.take(event, from_reply=sent_at is not None)
            if result is Applied.GAP:
                resync = True
            elif result is Applied.APPLIED:
                ttl = event.ttl_ms if isinstance(event, LeaseEvent | TabLeft) else None
                if ttl is not None and self.replica.lease(lock).holder is not None:
                    self.arm_expiry(lock, ttl, now)  # a new lease, or grace shortened it
                if isinstance(event, TabLeft):  # the grace shortened named locks too
                    for named, left in (event.ttls or {}).items():
                        if self.replica.lease(named).holder is not None:
                            self.arm_expiry(named, left, now)
                self._changed(lock, before, event, now, ttl or self.policy.lease_ttl_ms, sent_at)
        if resync:
            self._out.append(Resync())

    def reset(self, snapshot: Snapshot, sent_at: float, now: float) -> None:
        """Adopt a full read of the workspace (if newer, or wanted) and push it."""
        before = {lock: lease.holder for lock, lease in self.replica.leases.items()}
        adopted, later = self.follower.reset(snapshot)
        if adopted:
            locks = set(before) | set(self.replica.leases) | set(self._deadlines)
            locks |= {lock for m in self.members.values() for lock in m.holds}
            for lock in sorted(locks):
                record = snapshot.lock(lock)
                if record.holder is not None and record.ttl_ms >= 0:
                    self.arm_expiry(lock, record.ttl_ms, now)
                self._changed(lock, before.get(lock), None, now, max(0, record.ttl_ms), sent_at)
            self._push_state()
        if later:
            self.apply(later, now)
        if self.follower.stale:
            self._out.append(Resync())  # events were lost while it was read: read again

    def want_read(self) -> None:
        """Redis may have changed unheard (a failed renewal, a lost subscription): re-read."""
        self.follower.want()
        self._out.append(Resync())

    def _changed(
        self, lock: str, before: HolderRecord | None, event: Event | None, now: float, ttl_ms: int,
        sent_at: float | None,
    ) -> None:
        """``lock`` changed (``event``; None: a re-read). ``ttl_ms``: the new holder's TTL as of
        ``sent_at`` (or now, from pub/sub)."""
        after = self.replica.lease(lock).holder
        origin = event.origin if event is not None else ""
        if after is None:
            self.disarm(Timer.EXPIRY, lock)
        holder_changed = (before.fence if before else None) != (after.fence if after else None)
        holding = [] if after is None else self.members.holding(after, self.policy.lease_scope)
        if after is not None and holder_changed and holding:
            # A holder we learnt of from a script's reply or a re-read: its TTL started (or its
            # PTTL was measured) after this process sent that script. From pub/sub: about now, a
            # provisional deadline that the next exact confirmation replaces.
            if sent_at is None:
                self.confirm(lock, after.fence, now, now, ttl_ms, exact=False)
            else:
                self.confirm(lock, after.fence, sent_at, now, ttl_ms)
        # Only a change of holder (or a re-read) changes whose lease it is, and only a change of
        # the queue anyone's place: other changes (joins, leaves, status) cost nothing per tab here.
        if holder_changed or event is None:
            ttl_left = self.ttl_left_ms(lock, now)
            for m in self.members.values():
                if m.welcomed:  # else its welcome will tell it
                    self._out += self.holding.tell(m, lock, after, event, origin, ttl_left)
        if event is None or event.queue is not msgspec.UNSET:
            self._out += self.holding.positions(lock, origin)
        if event is not None:
            self._change = rules.merged_change(self._change, change_of(event))
            if not self.armed(Timer.FLUSH):
                # The window opens with an update sent: a change after a quiet moment goes out at
                # once (with the rest of this loop turn), only a burst waits and is merged, sent
                # at the cadence's next instant a window or more after the last update.
                window = self.policy.update_window_ms / 1000
                due = self._flushed_at + window
                self.arm(Timer.FLUSH, now if now >= due else next_instant(due, window, self.policy.clock_offset_s))
        if not holding:
            self.cancel_deadline(lock)
        if event is not None:
            self._tell_request(lock, event, now)
        self.watch_idle(lock, now)

    # -- what the tabs see --------------------------------------------------------------------

    def state_message(self, change: Change | None = None) -> State:
        r = self.replica
        return State(workspace=self.workspace, seq=r.seq, holder=r.holder_view(), viewers=r.viewers(),
                     queue=r.waiting(), request=r.request_view(), change=change, locks=r.locks_view() or None)

    def _push_state(self) -> None:
        """Show every welcomed tab the whole replica (after a re-read), with any unsent change."""
        self._out += self.shown.show(self.members.welcomed(), self.state_message(self._change))
        self._change = None
        self.disarm(Timer.FLUSH)

    def flush(self, now: float, due: float | None = None) -> None:
        """Send what changed since the tabs' view, as one update (nothing if nothing visible);
        ``due``: the cadence's instant this flush was armed for (the window counts from it)."""
        self.disarm(Timer.FLUSH)
        change, self._change = self._change, None
        sends = self.shown.catch_up(self.members.welcomed(), change)
        if sends:
            self._flushed_at = now if due is None else due
        self._out += sends

    def _tell_request(self, lock: str, event: Event, now: float) -> None:
        request = self.replica.lease(lock).request
        if isinstance(event, HandoffRequested) and request is not None:
            wait_ms = event.wait_ms or self.policy.handoff_timeout_ms
            holders = [m.conn for m in self.holding.holders(lock)]
            self.send(holders, Requested(by=request.person, deadline_ms=wait_ms, message=request.message, lock=lock))
            if request.conn in self.members:
                self.request_conn[lock] = request.conn
                self.arm(Timer.REQUEST, now + wait_ms / 1000 + REQUEST_SLACK_S, lock)
        if isinstance(event, RequestEnded) and event.target in self.members and event.target != event.origin:
            reason = event.reason or "declined"
            self.send((event.target,), Declined(reason=reason, by=event.by, lock=lock))
        if request is None or request.conn not in self.members:
            self.disarm(Timer.REQUEST, lock)

    def watch_idle(self, lock: str, now: float) -> None:
        h = self.replica.lease(lock).holder
        idle_ms = self.policy.idle_release_ms
        if idle_ms <= 0 or h is None or not self.holding.holders(lock):
            self.disarm(Timer.IDLE, lock)
            return
        scope = self.policy.lease_scope
        holder_tabs = [t for t in self.replica.infos_of(h.user) if rules.holds(h, t.user, t.tab, scope)]
        if holder_tabs and not any(t.active for t in holder_tabs):
            if not self.armed(Timer.IDLE, lock):
                self.idle_fence[lock] = h.fence
                self.arm(Timer.IDLE, now + idle_ms / 1000, lock)
        else:
            self.disarm(Timer.IDLE, lock)

    # -- deadlines ----------------------------------------------------------------------------

    def confirm(
        self, lock: str, fence: int, sent_at: float, now: float, ttl_ms: int | None = None, exact: bool = True
    ) -> None:
        """Redis confirmed lease ``fence`` of ``lock`` by a command sent at ``sent_at``."""
        ttl = self.policy.lease_ttl_ms if ttl_ms is None else ttl_ms
        deadline = self._deadlines.get(lock)
        if deadline is None:
            deadline = self._deadlines[lock] = Deadline(self.policy.safety_margin_ms)
        at = deadline.confirm(fence, sent_at, ttl, exact)
        if at is not None:
            self.arm(Timer.DEADLINE, at, lock)
            self.arm_expiry(lock, ttl, now)

    def ttl_left_ms(self, lock: str, now: float) -> int:
        deadline = self._deadlines.get(lock)
        return 0 if deadline is None else deadline.left_ms(now)

    def deadline_passed(self, lock: str) -> None:
        deadline = self._deadlines.pop(lock, None)
        fence = None if deadline is None else deadline.fence
        lost = self.holding.lose(lock, fence)
        if lost:
            log.warning("%s: lease %s%s not renewed in time, telling %d tab(s) it is lost",
                        self.workspace, fence, f" of lock {lock!r}" if lock else "", len(lost))
        self.send(lost, Released(reason="lost", lock=lock))
        # Redis decides what is true now; the re-read pushes it once Redis answers again.
        self.want_read()

    def cancel_deadline(self, lock: str) -> None:
        self.disarm(Timer.DEADLINE, lock)
        self._deadlines.pop(lock, None)

    def arm_expiry(self, lock: str, ttl_ms: int, now: float) -> None:
        if not self.closed:
            self.arm(Timer.EXPIRY, now + max(0, ttl_ms) / 1000 + EXPIRY_SLACK_S, lock)

    def check_expiry(self, lock: str) -> None:
        if self.replica.lease(lock).holder is not None:
            self._out.append(CheckExpiry(lock))

    def acquired_message(self, lock: str, fence: int, now: float) -> Acquired:
        return Acquired(fence=fence, ttl_ms=self.ttl_left_ms(lock, now), lock=lock)

    def close(self) -> None:
        """Stop the timers; the workspace is no longer used here. Idempotent."""
        self.closed = True
        for timer, key in list(self._armed):
            self.disarm(timer, key)
        self._deadlines.clear()
