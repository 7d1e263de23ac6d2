"""Workspace: the sans-I/O core of one workspace on this process.

It holds the workspace's :class:`~presence.core.replica.Replica` (kept in step with Redis by its
:class:`~presence.core.follower.Follower`) and a :class:`Member` per local tab (whose lease state
its :class:`~presence.core.holding.Holding` alone writes), and turns every change into
:mod:`effects <presence.core.effects>`. It never awaits, touches no socket or Redis and reads no
clock (``now`` is passed in).

Lease news goes out at once (``acquired``, ``released``, ``queued``, handoff requests and their
end; the tab whose request made a change is answered by that request). What everyone sees goes
out as one ``update`` per ``PRESENCE_UPDATE_WINDOW_MS`` (:mod:`~presence.core.view`), and whole
as ``state`` after a re-read or on ``sync``.

Timers (:class:`~presence.core.effects.Timer`): the *expiry watch* at the lease's PTTL (the shell
then announces a silent expiry: no keyspace notifications needed); the *local deadline*
(:mod:`~presence.core.deadline`: passed unconfirmed, the holder's tabs are told ``lost``); a
local requester's *request deadline*; the holder's *idle timer*; the *flush* of the next update;
the next try at confirming a handoff on the replicas (PRESENCE_REDIS_WAIT_REPLICAS: see
:mod:`~presence.core.holding`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from ..settings import Settings
from ..wire.messages import (
    Acquired,
    Change,
    Declined,
    Released,
    Requested,
    RequestId,
    ServerMessage,
    State,
    Welcome,
)
from . import rules
from .deadline import Deadline
from .effects import Arm, CheckExpiry, Disarm, Effect, IdleDue, Replicate, Replication, RequestDue, Resync, Send, Timer
from .events import LEASE_KINDS, Event, HandoffRequested, LeaseEvent, RequestEnded, TabLeft, change_of
from .follower import Follower
from .holding import Holding
from .member import Members
from .records import HolderRecord, Snapshot
from .replica import Applied, Replica
from .view import Shown

log = logging.getLogger("presence.workspace")

EXPIRY_SLACK_S = 0.02  # look a little after the PTTL, so the key is surely gone
REQUEST_SLACK_S = 0.05  # likewise after a request's deadline (Redis time decides)


class Workspace:
    """Lifecycle: created with the first local tab of a workspace (``replica.seq`` is 0 until the
    first snapshot fills it), closed when its last local tab leaves. Every public method that can
    change anything returns the effects to carry out, in order."""

    def __init__(self, workspace: str, settings: Settings) -> None:
        self.workspace = workspace
        self.settings = settings
        self.members = Members()
        self.replica = Replica(workspace)
        self.shown = Shown(self.replica)
        self.follower = Follower(self.replica)
        self.holding = Holding(self.members, self.replica, settings)
        self._change: Change | None = None  # the latest change not yet sent in an update
        self.deadline = Deadline(settings.safety_margin_ms)
        self.closed = False
        self._armed: set[Timer] = set()
        self._request_conn = ""  # whose deadline the REQUEST timer watches
        self._idle_fence = 0  # which lease the IDLE timer watches
        self._out: list[Effect] = []

    def __repr__(self) -> str:
        return f"<Workspace {self.workspace} tabs={len(self.members)} seq={self.replica.seq}>"

    def _drain(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    def _send(self, conns: Sequence[str], message: ServerMessage) -> None:
        if conns:
            self._out.append(Send(tuple(conns), message))

    def _arm(self, timer: Timer, at: float) -> None:
        self._armed.add(timer)
        self._out.append(Arm(timer, at))

    def _disarm(self, timer: Timer) -> None:
        if timer in self._armed:
            self._armed.discard(timer)
            self._out.append(Disarm(timer))

    def apply(self, events: Sequence[Event], now: float, sent_at: float | None = None) -> list[Effect]:
        """Apply events in order: a script's reply's (``sent_at``: when it was sent) or pub/sub's."""
        for event in events:
            if isinstance(event, LeaseEvent) and self._change is not None and self._change.kind in LEASE_KINDS:
                self.flush()  # never two lease changes in one update: everyone hears of each
            before = self.replica.holder
            result = self.follower.take(event, from_reply=sent_at is not None)
            if result is Applied.GAP:
                self._out.append(Resync())
                break
            if result is Applied.APPLIED:
                ttl = event.ttl_ms if isinstance(event, LeaseEvent | TabLeft) else None
                if ttl is not None and self.replica.holder is not None:
                    self._arm_expiry(ttl, now)  # a new lease, or grace shortened it
                self._changed(before, event, now, ttl or self.settings.lease_ttl_ms, sent_at)
        return self._drain()

    def reset(self, snapshot: Snapshot, sent_at: float, now: float) -> list[Effect]:
        """Adopt a full re-read of the workspace (if newer, or forced by ``stale``) and push it."""
        before = self.replica.holder
        adopted, later = self.follower.reset(snapshot)
        if adopted:
            if snapshot.holder is not None and snapshot.ttl_ms >= 0:
                self._arm_expiry(snapshot.ttl_ms, now)
            self._changed(before, None, now, max(0, snapshot.ttl_ms), sent_at)
        return self._drain() + (self.apply(later, now) if later else [])

    def catch_up(
        self, snapshot: Snapshot | None, seq: int, events: Sequence[Event], sent_at: float, now: float
    ) -> list[Effect]:
        """A join's events (up to ``seq``), and its snapshot when this replica was never read."""
        if self.replica.seq == 0:
            if snapshot is not None:
                return self.reset(snapshot, sent_at, now)
            self.follower.stale = True  # read meanwhile by nobody: read it now
            return [Resync()]
        self.follower.expect(seq)
        return self.apply(events, now, sent_at)

    def _changed(
        self, before: HolderRecord | None, event: Event | None, now: float, ttl_ms: int, sent_at: float | None
    ) -> None:
        """``ttl_ms``: the new holder's TTL as of ``sent_at`` (or now, from pub/sub)."""
        after = self.replica.holder
        origin = event.origin if event is not None else ""
        if after is None:
            self._disarm(Timer.EXPIRY)
        holder_changed = (before.fence if before else None) != (after.fence if after else None)
        holding = [] if after is None else self.members.holding(after, self.settings.lease_scope)
        if after is not None and holder_changed and holding:
            # A holder we learnt of from a script's reply or a re-read: its TTL started (or its
            # PTTL was measured) after this process sent that script. From pub/sub: about now, a
            # provisional deadline that the next exact confirmation replaces.
            if sent_at is None:
                self.confirm(after.fence, now, now, ttl_ms, exact=False)
            else:
                self.confirm(after.fence, sent_at, now, ttl_ms)
        # Only a change of holder (or a re-read) changes whose lease it is, and only a change of
        # the queue anyone's place: other changes (joins, leaves, status) cost nothing per tab here.
        if holder_changed or event is None:
            ttl_left = self.ttl_left_ms(now)
            for m in self.members.values():
                if m.welcomed:  # else its welcome will tell it
                    self._out += self.holding.tell(m, after, event, origin, ttl_left)
        if event is None or event.queue is not msgspec.UNSET:
            self._out += self.holding.positions(origin)
        if event is None:
            self._push_state()
        else:
            self._change = rules.merged_change(self._change, change_of(event))
            if Timer.FLUSH not in self._armed:
                self._arm(Timer.FLUSH, now + self.settings.update_window_ms / 1000)
        if not holding:
            self._cancel_deadline()
        if event is not None:
            self._tell_request(event, now)
        self._watch_idle(now)

    def _push_state(self) -> None:
        """Show every welcomed tab the whole replica (after a re-read), with any unsent change."""
        self._out += self.shown.show(self.members.welcomed(), self.state_message(self._change))
        self._change = None
        self._disarm(Timer.FLUSH)

    def flush(self) -> None:
        """Send what changed since the tabs' view, as one update (nothing if nothing visible)."""
        self._disarm(Timer.FLUSH)
        change, self._change = self._change, None
        self._out += self.shown.catch_up(self.members.welcomed(), change)

    def sync(self, conn: str) -> list[Effect]:  # the tab saw a gap in its updates
        self._out += self.shown.show([self.members[conn]], self.state_message(), everyone=False)
        return self._drain()

    def replicated(self, fence: int, outcome: Replication, sent_at: float, now: float) -> list[Effect]:
        """The shell's :class:`Replicate` of ``fence`` (sent at ``sent_at``) ended with ``outcome``."""
        told = self.holding.replicated(fence, outcome)
        if told is None:
            return self._drain()
        if outcome is not Replication.FAILED:
            self.confirm(fence, sent_at, now)  # it was renewed
        if not told:
            self._arm(Timer.REPLICATE, now + self.settings.heartbeat_ms / 1000)
            return self._drain()
        self._send([m.conn for m in told], Acquired(fence=fence, ttl_ms=self.ttl_left_ms(now)))
        self._watch_idle(now)
        return self._drain()

    def _tell_request(self, event: Event, now: float) -> None:
        request = self.replica.request
        if isinstance(event, HandoffRequested) and request is not None:
            wait_ms = event.wait_ms or self.settings.handoff_timeout_ms
            holders = [m.conn for m in self.holding.holders()]
            self._send(holders, Requested(by=request.person, deadline_ms=wait_ms, message=request.message))
            if request.conn in self.members:
                self._request_conn = request.conn
                self._arm(Timer.REQUEST, now + wait_ms / 1000 + REQUEST_SLACK_S)
        if isinstance(event, RequestEnded) and event.target in self.members and event.target != event.origin:
            self._send((event.target,), Declined(reason=event.reason or "declined", by=event.by))
        if request is None or request.conn not in self.members:
            self._disarm(Timer.REQUEST)

    def state_message(self, change: Change | None = None) -> State:
        r = self.replica
        return State(workspace=self.workspace, seq=r.seq, holder=r.holder_view(), viewers=r.viewers(),
                     queue=r.waiting(), request=r.request_view(), change=change)

    # -- a tab's own requests ---------------------------------------------------------------

    def welcome(
        self, conn: str, rejoined: bool, sent_at: float, now: float, expires_in_ms: int | None = None
    ) -> list[Effect]:
        """Joined: ``welcome`` (and ``acquired{rejoined}`` when its user still holds the lease).
        ``expires_in_ms``: the time left of the tab's token, told in the welcome."""
        m = self.members[conn]
        if self.holding.welcomed(m) and rejoined and m.fence is not None:
            self.confirm(m.fence, sent_at, now)
        m.welcomed = True
        m.seq = self.replica.seq
        s = self.settings
        self._send((conn,), Welcome(
            conn=conn, user=m.user, workspace=self.workspace, heartbeat_ms=s.heartbeat_ms,
            lease_ttl_ms=s.lease_ttl_ms, scope=s.lease_scope, state=self.replica.view(), expires_in_ms=expires_in_ms,
        ))
        if m.fence is not None:
            self._send((conn,), Acquired(fence=m.fence, ttl_ms=self.ttl_left_ms(now), rejoined=True))
        return self._drain()

    def granted(
        self, conn: str, fence: int, ttl_ms: int, sent_at: float, now: float, request_id: RequestId,
        rejoined: bool,
    ) -> tuple[Acquired, list[Effect]]:
        """The tab's request got (or kept) the lease: its reply and the effects."""
        self.holding.granted(conn, fence)
        self.confirm(fence, sent_at, now, ttl_ms)
        reply = Acquired(fence=fence, ttl_ms=self.ttl_left_ms(now), id=request_id, rejoined=rejoined)
        return reply, self._drain()

    def fire(self, timer: Timer, now: float) -> list[Effect]:
        """The shell's timer ``timer`` went off."""
        if timer not in self._armed:
            return []
        self._armed.discard(timer)
        if timer is Timer.DEADLINE:
            self._deadline_passed()
        elif timer is Timer.EXPIRY:
            if self.replica.holder is not None:
                self._out.append(CheckExpiry())
        elif timer is Timer.REQUEST:
            self._out.append(RequestDue(self._request_conn))
        elif timer is Timer.FLUSH:
            self.flush()
        elif timer is Timer.REPLICATE:
            if self.holding.replicating:
                self._out.append(Replicate(self.holding.replicating))
        else:
            self._out.append(IdleDue(self._idle_fence))
        return self._drain()

    def retry_request(self, conn: str, left_ms: int, now: float) -> list[Effect]:
        """The request deadline has not passed in Redis time yet: look again then."""
        self._request_conn = conn
        self._arm(Timer.REQUEST, now + left_ms / 1000 + REQUEST_SLACK_S)
        return self._drain()

    def watch_expiry(self, ttl_ms: int, now: float) -> list[Effect]:
        """The lease is still alive with ``ttl_ms`` to go (or a check failed): look again then."""
        self._arm_expiry(ttl_ms, now)
        return self._drain()

    def _watch_idle(self, now: float) -> None:
        h = self.replica.holder
        idle_ms = self.settings.idle_release_ms
        if idle_ms <= 0 or h is None or not self.holding.holders():
            self._disarm(Timer.IDLE)
            return
        scope = self.settings.lease_scope
        holder_tabs = [t for t in self.replica.infos_of(h.user) if rules.holds(h, t.user, t.tab, scope)]
        if holder_tabs and not any(t.active for t in holder_tabs):
            if Timer.IDLE not in self._armed:
                self._idle_fence = h.fence
                self._arm(Timer.IDLE, now + idle_ms / 1000)
        else:
            self._disarm(Timer.IDLE)

    def confirm(self, fence: int, sent_at: float, now: float, ttl_ms: int | None = None, exact: bool = True) -> None:
        """Redis confirmed lease ``fence`` by a command sent at ``sent_at`` (:meth:`Deadline.confirm`)."""
        ttl = self.settings.lease_ttl_ms if ttl_ms is None else ttl_ms
        at = self.deadline.confirm(fence, sent_at, ttl, exact)
        if at is not None:
            self._arm(Timer.DEADLINE, at)
            self._arm_expiry(ttl, now)

    def renewed(self, fence: int, sent_at: float, now: float) -> list[Effect]:
        """The heartbeat's renewal of ``fence`` (sent at ``sent_at``) succeeded."""
        self.confirm(fence, sent_at, now)
        return self._drain()

    def ttl_left_ms(self, now: float) -> int:
        return self.deadline.left_ms(now)

    def _deadline_passed(self) -> None:
        fence = self.deadline.fence
        self.deadline.clear()
        lost = self.holding.lose(fence)
        if lost:
            log.warning("%r: lease %s not renewed in time, telling %d tab(s) it is lost", self, fence, len(lost))
        self._send(lost, Released(reason="lost"))
        # Redis decides what is true now; the re-read pushes it once Redis answers again.
        self.follower.stale = True
        self._out.append(Resync())

    def _cancel_deadline(self) -> None:
        self._disarm(Timer.DEADLINE)
        self.deadline.clear()

    def _arm_expiry(self, ttl_ms: int, now: float) -> None:
        if not self.closed:
            self._arm(Timer.EXPIRY, now + max(0, ttl_ms) / 1000 + EXPIRY_SLACK_S)

    def close(self) -> list[Effect]:
        """Stop the timers; the workspace is no longer used here. Idempotent."""
        self.closed = True
        for timer in list(self._armed):
            self._disarm(timer)
        self.deadline.clear()
        return self._drain()
