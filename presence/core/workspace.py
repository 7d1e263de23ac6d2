"""Workspace: the front door of the sans-I/O core of one workspace on this process.

Everything that happens to a workspace comes in here, one call each, and goes out as effects
(:mod:`~presence.core.effects`), in order:

- a tab's request: the shell asks what to run where the core must decide it (:meth:`admit`,
  :meth:`release_target`, :meth:`decline_fence`), runs the one script, and hands its
  :class:`~presence.core.outcomes.Outcome` to the request's method (:meth:`acquired`,
  :meth:`took_over`, :meth:`released`, :meth:`asked`, :meth:`declined`), which applies the events
  it published and answers ``(reply, effects)``;
- a tab's arrival and departure (:meth:`enter`, :meth:`joined`, :meth:`leave`), its presence
  (:meth:`status`) and a ``sync``;
- what other processes did (:meth:`published`), a re-read (:meth:`reread`), the heartbeat's
  renewals (:meth:`renewals`, :meth:`renewed`), a timer (:meth:`fire`) and the outcome of each
  script an effect asked for (:meth:`expiry_checked`, :meth:`request_checked`,
  :meth:`replicated`, :meth:`applied`).

Its parts (:mod:`~presence.core.changes`) are private: the shell reads it through queries and
never writes its state or decides a lease question. It never awaits, touches no socket or Redis
and reads no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ..wire.messages import Acquired, State, Welcome
from .cadence import next_write
from .changes import REQUEST_SLACK_S, Changes
from .effects import Effect, IdleDue, Replicate, Replication, RequestDue, Timer, WriteStatus
from .events import Event
from .member import Member
from .outcomes import Early, Entered, ExpireReply, HandoffReply, Held, Outcome
from .policy import Policy
from .records import Snapshot, TabInfo
from .requests import Answer, CancelRequest, GiveUp, LeaseRequests, Operation, ReleaseTarget

Unset = msgspec.UnsetType

__all__ = ["Answer", "CancelRequest", "GiveUp", "Operation", "ReleaseTarget", "Workspace"]


class Workspace(LeaseRequests):
    """Lifecycle: created with the first local tab of a workspace, closed (:meth:`close`) when
    its last local tab leaves. ``server`` is this process's id (written into presence entries)."""

    def __init__(self, workspace: str, policy: Policy, server: str) -> None:
        self.workspace = workspace
        self.policy = policy
        self.server = server
        self._c = Changes(workspace, policy)

    def __repr__(self) -> str:
        return f"<Workspace {self.workspace} tabs={len(self._c.members)} seq={self._c.replica.seq}>"

    # -- queries ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._c.members)

    def __contains__(self, conn: object) -> bool:
        return conn in self._c.members

    @property
    def unread(self) -> bool:
        """Never read yet: a join asks for the whole workspace with its reply."""
        return not self._c.follower.read

    @property
    def stale(self) -> bool:
        """A re-read is wanted, or events a reply showed are overdue (asked once a heartbeat)."""
        return self._c.follower.stale or self._c.follower.overdue()

    def info(self, conn: str) -> TabInfo:
        """Tab ``conn``'s presence entry, as its join and status scripts write it."""
        return self._c.members[conn].info(self.server)

    def held_locally(self) -> list[str]:
        """The locks a tab here holds (and knows it)."""
        return self._c.holding.held_locally()

    def renewals(self, answered: Iterable[str]) -> dict[str, int]:
        """lock -> fence: the leases the heartbeat renews for the tabs that answered their ping."""
        out: dict[str, int] = {}
        for conn in answered:
            m = self._c.members.get(conn)
            if m is not None:
                for lock in m.holds:
                    if (fence := self._c.holding.renewal(m, lock)) is not None:
                        out[lock] = fence
        return out

    def ttls(self, conn: str, now: float) -> tuple[int | None, dict[str, int] | None]:
        """What tab ``conn``'s ping says of its leases: the time left of the workspace's lease,
        and of each named lock, when it holds them."""
        m = self._c.members.get(conn)
        if m is None:
            return None, None
        ttl: int | None = None
        named: dict[str, int] = {}
        for lock, hold in m.holds.items():
            if hold.fence is not None:
                left = self._c.ttl_left_ms(lock, now)
                if lock:
                    named[lock] = left
                else:
                    ttl = left
        return ttl, named or None

    def state(self) -> State:
        return self._c.state_message()

    # -- a tab arrives, leaves, and shares its presence ---------------------------------------

    def enter(self, member: Member) -> None:
        """A local tab is about to join (its events are recognised from now on)."""
        self._c.members.add(member)

    def joined(
        self, conn: str, outcome: Outcome[Entered], now: float, expires_in_ms: int | None = None
    ) -> list[Effect]:
        """The tab's join script ran: catch up, then ``welcome`` (and ``acquired{rejoined}`` for
        each lock its user still holds)."""
        self._catch_up(outcome, now)
        c = self._c
        m = c.members[conn]
        # The leases Redis says this join rejoined (their TTLs replaced): only those are the tab's
        # to be told of. This process's copy may name a holder whose lease already ended (the
        # copy not caught up after a stall): that is no grant to tell anyone.
        rejoined = dict(outcome.reply.locks or {})
        if outcome.reply.rejoined and outcome.reply.fence is not None:
            rejoined[""] = outcome.reply.fence
        told, confirming = c.holding.welcomed(m, rejoined)
        for effect in confirming:
            c.add(effect)
        for lock, fence in rejoined.items():
            if m.hold(lock).fence == fence:
                c.confirm(lock, fence, outcome.sent_at, now)
        m.welcomed = True
        m.seq = c.replica.seq
        p = self.policy
        c.send((conn,), Welcome(
            conn=conn, user=m.user, workspace=self.workspace, heartbeat_ms=p.heartbeat_ms,
            lease_ttl_ms=p.lease_ttl_ms, scope=p.lease_scope, state=c.replica.view(), expires_in_ms=expires_in_ms,
            read_only=m.read_only,
        ))
        for lock in told:
            if (held := m.hold(lock).fence) is not None:
                c.send((conn,), Acquired(fence=held, ttl_ms=c.ttl_left_ms(lock, now), rejoined=True, lock=lock))
        return c.drain()

    def rejoined(self, outcome: Outcome[Entered], now: float) -> list[Effect]:
        """A tab's presence entry was written again (it had been pruned while this process was
        paused): catch up with what its join script saw."""
        self._catch_up(outcome, now)
        return self._c.drain()

    def _catch_up(self, outcome: Outcome[Entered], now: float) -> None:
        c, reply = self._c, outcome.reply
        if not c.follower.read:
            if reply.snapshot is not None:
                c.reset(reply.snapshot, outcome.sent_at, now)
            else:
                c.want_read()  # read meanwhile by nobody: read it now
            return
        c.follower.expect(reply.seq)
        c.apply(outcome.events, now, outcome.sent_at)

    def leave(self, conn: str) -> list[Effect]:
        """Tab ``conn`` leaves (before its leave script runs; :meth:`applied` takes the outcome)."""
        c = self._c
        m = c.members.remove(conn)
        if m is None:
            return c.drain()
        c.disarm(Timer.STATUS, conn)
        for lock in m.holds:
            if not c.holding.holders(lock):
                c.cancel_deadline(lock)
        return c.drain()

    def status(
        self, conn: str, active: bool | None, meta: dict[str, object] | Unset | None, now: float
    ) -> list[Effect]:
        """Tab ``conn`` shares whether it is active and its meta (``None`` clears it, ``UNSET``
        keeps it). Written to Redis at once, then at most once per meta interval: the latest wins."""
        c = self._c
        m = c.members.get(conn)
        if m is None:
            return []
        if active is not None:
            m.active = active
        if not isinstance(meta, Unset):
            m.meta = meta
        if (m.active, m.meta) != m.written:
            self._write_status(m, now)
        return c.drain()

    def _write_status(self, m: Member, now: float, due: float | None = None) -> None:
        """Write tab ``m``'s presence now (``due``: the time the timer that asks for it was due).
        Within a meta interval of the last write it waits instead, for the cadence's next write
        time, just before an update instant, so every process has it when it sends; a status
        after a quiet moment is written at once."""
        c = self._c
        if c.armed(Timer.STATUS, m.conn):
            return  # written when the interval ends: the latest by then
        p = self.policy
        interval = p.meta_interval_ms / 1000
        if due is None and interval > 0 and now < m.written_at + interval:
            c.arm(Timer.STATUS, next_write(m.written_at + interval, p.update_window_ms / 1000, p.clock_offset_s),
                  m.conn)
            return
        m.written = (m.active, m.meta)
        # A timer that went off late does not push the cadence back: the interval counts from when it was due.
        m.written_at = now if due is None else due
        c.add(WriteStatus(m.conn, m.info(self.server)))

    def write_failed(self, conn: str, now: float) -> list[Effect]:
        """Tab ``conn``'s presence write failed (Redis unavailable): write it again after a
        heartbeat, whatever it is by then."""
        c = self._c
        m = c.members.get(conn)
        if m is not None:
            m.written = (not m.active, None)  # differs from whatever it is: the timer writes it
            c.arm(Timer.STATUS, now + self.policy.heartbeat_ms / 1000, conn)
        return c.drain()

    def sync(self, conn: str) -> list[Effect]:
        """The tab saw a gap in its updates: send it the whole state."""
        c = self._c
        for send in c.shown.show([c.members[conn]], c.state_message(), everyone=False):
            c.add(send)
        return c.drain()

    # -- what happens to the workspace --------------------------------------------------------

    def published(self, event: Event, now: float) -> list[Effect]:
        """An event of any process, from pub/sub."""
        self._c.apply([event], now)
        return self._c.drain()

    def applied(self, outcome: Outcome[msgspec.Struct], now: float) -> list[Effect]:
        """A script this process ran for the workspace, whose reply asks nothing more of the core
        (a leave, a status write, an idle release, a presence refresh): apply its events."""
        self._c.apply(outcome.events, now, outcome.sent_at)
        return self._c.drain()

    def subscription_lost(self) -> list[Effect]:
        """The channel was confirmed again after the connection dropped: events may be lost."""
        self._c.want_read()
        return self._c.drain()

    def reread(self, outcome: Outcome[Snapshot], now: float) -> list[Effect]:
        """A re-read of the whole workspace (a ``Resync``): adopt it if newer, and push it."""
        self._c.reset(outcome.reply, outcome.sent_at, now)
        return self._c.drain()

    def renewed(self, lock: str, fence: int, ok: bool, sent_at: float, now: float) -> list[Effect]:
        """The heartbeat's renewal of lease ``fence`` of ``lock`` (sent at ``sent_at``): renewed,
        or not (expired or replaced: Redis says who holds it now)."""
        c = self._c
        if ok:
            c.confirm(lock, fence, sent_at, now)
        else:
            c.want_read()
        return c.drain()

    def fire(self, timer: Timer, key: str, now: float) -> list[Effect]:
        """The shell's timer ``timer`` of ``key`` (a lock, or a conn) went off."""
        c = self._c
        due = c.fired(timer, key)
        if due is None:
            return []
        match timer:
            case Timer.DEADLINE:
                c.deadline_passed(key)
            case Timer.EXPIRY:
                c.check_expiry(key)
            case Timer.REQUEST:
                conn = c.request_conn.get(key, "")
                m = c.members.get(conn)
                may_take = self.policy.handoff_takeover and m is not None and m.may_take_over and not m.read_only
                c.add(RequestDue(conn, may_take, key))
            case Timer.FLUSH:
                c.flush(now, due)
            case Timer.REPLICATE:
                if fence := c.holding.replicating.get(key):
                    c.add(Replicate(fence, key))
            case Timer.STATUS:
                m = c.members.get(key)
                if m is not None and (m.active, m.meta) != m.written:
                    self._write_status(m, now, due)
            case Timer.IDLE:
                c.add(IdleDue(c.idle_fence.get(key, 0), key))
        return c.drain()

    def expiry_checked(self, lock: str, outcome: Outcome[ExpireReply] | None, now: float) -> list[Effect]:
        """The expiry check of ``lock`` ran (None: it failed; look again after a heartbeat)."""
        c = self._c
        if outcome is None:
            c.arm_expiry(lock, self.policy.heartbeat_ms, now)
            return c.drain()
        c.apply(outcome.events, now, outcome.sent_at)
        if isinstance(outcome.reply, Held):  # alive (maybe just handed on): look again at its PTTL
            c.arm_expiry(lock, outcome.reply.ttl_ms, now)
        return c.drain()

    def request_checked(
        self, lock: str, conn: str, outcome: Outcome[HandoffReply] | None, now: float
    ) -> list[Effect]:
        """A local requester's deadline passed and the handoff script ran (None: it failed)."""
        c = self._c
        if outcome is None:
            left_ms = self.policy.heartbeat_ms
        elif isinstance(outcome.reply, Early):  # not yet by Redis' clock: look again then
            left_ms = outcome.reply.left_ms
        else:
            c.apply(outcome.events, now, outcome.sent_at)
            return c.drain()
        c.request_conn[lock] = conn
        c.arm(Timer.REQUEST, now + left_ms / 1000 + REQUEST_SLACK_S, lock)
        if outcome is not None:
            c.apply(outcome.events, now, outcome.sent_at)
        return c.drain()

    def replicated(self, lock: str, fence: int, outcome: Replication, sent_at: float, now: float) -> list[Effect]:
        """The shell's :class:`Replicate` of ``fence`` (sent at ``sent_at``) ended with ``outcome``."""
        c = self._c
        told = c.holding.replicated(lock, fence, outcome)
        if told is None:
            return c.drain()
        if outcome is not Replication.FAILED:
            c.confirm(lock, fence, sent_at, now)  # it was renewed
        if not told:
            c.arm(Timer.REPLICATE, now + self.policy.heartbeat_ms / 1000, lock)
            return c.drain()
        c.send([m.conn for m in told], c.acquired_message(lock, fence, now))
        c.watch_idle(lock, now)
        return c.drain()

    def close(self) -> list[Effect]:
        """Stop the timers; the workspace is no longer used here. Idempotent."""
        self._c.close()
        return self._c.drain()
