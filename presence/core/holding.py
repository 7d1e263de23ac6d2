"""Holding: what each local tab of a workspace knows of each lock's lease.

The one writer of each tab's :class:`~presence.core.member.Hold` (``fence``, ``pending`` and
``queue_position`` per lock): which local tabs hold a lock and know it, which are told of a
handoff only once the Redis replicas have it, and each tab's place in line. Its methods return
the messages that tell the tabs (as :class:`~presence.core.effects.Send` effects, and a
:class:`~presence.core.effects.Replicate` for a handoff to confirm); the
:class:`~presence.core.workspace.Workspace` decides when to ask, and owns the timers and the local
deadlines.

With ``PRESENCE_REDIS_WAIT_REPLICAS=n`` a tab's own request is answered once n replicas have its
grant (the gateway WAITs behind the script). A lease a script handed on (to the head of the wait
queue, to a polite requester, to a requester at its deadline) has no request to answer: its tabs
are told only once this process has renewed it and WAITed (``Replicate``), since a failover
before then could lose a grant the tab already wrote with.
"""

from __future__ import annotations

from ..wire.messages import Acquired, Queued, Released
from . import rules
from .effects import Effect, Replicate, Replication, Send
from .events import Event
from .member import Member, Members
from .policy import Policy
from .records import HolderRecord
from .replica import Replica


class Holding:
    """Attributes: ``replicating``, lock -> the fence of a lease handed to local tabs that they
    are told of once the replicas have it."""

    def __init__(self, members: Members, replica: Replica, policy: Policy) -> None:
        self.members = members
        self.replica = replica
        self.policy = policy
        self.replicating: dict[str, int] = {}

    def holds(self, member: Member, holder: HolderRecord | None) -> bool:
        """The lease of ``holder`` belongs to ``member`` (scope rule)."""
        return holder is not None and rules.holds(holder, member.user.id, member.tab, self.policy.lease_scope)

    def holders(self, lock: str) -> list[Member]:
        """Local tabs that hold ``lock`` and know it."""
        h = self.replica.lease(lock).holder
        if h is None:
            return []
        return [m for m in self.members.holding(h, self.policy.lease_scope) if m.hold(lock).fence is not None]

    def held_locally(self) -> list[str]:
        """The locks that a local tab holds and knows it."""
        return [lock for lock in self.replica.held() if self.holders(lock)]

    def renewal(self, member: Member, lock: str) -> int | None:
        """The fence the heartbeat renews for this tab's ``lock``, if it holds the current lease."""
        h = self.replica.lease(lock).holder
        if h is None or member.hold(lock).fence != h.fence or not self.holds(member, h):
            return None
        return h.fence

    def tell(
        self, m: Member, lock: str, after: HolderRecord | None, event: Event | None, origin: str, ttl_ms: int
    ) -> list[Effect]:
        """The holder of ``lock`` is now ``after``: what ``m`` is told (``ttl_ms``: the time left of
        a new lease). The tab whose request made the change (``origin``) is answered by that request."""
        if after is not None and self.holds(m, after):
            hold = m.hold(lock)
            if after.fence in (hold.fence, hold.pending):
                return []
            hold = m.change(lock)
            if m.conn != origin and self.policy.wait_replicas:
                hold.pending = after.fence  # handed on by a script: no WAIT answered it yet
                if self.replicating.get(lock) == after.fence:
                    return []
                self.replicating[lock] = after.fence
                return [Replicate(after.fence, lock)]
            hold.fence, hold.pending = after.fence, None
            if m.conn == origin:
                return []
            return [Send((m.conn,), Acquired(fence=after.fence, ttl_ms=ttl_ms, lock=lock))]
        told = m.hold(lock).fence is not None and m.conn != origin
        if lock in m.holds:
            hold = m.holds[lock]
            hold.fence = hold.pending = None
            m.settle(lock)
        if not told:
            return []
        reason, by = rules.loss_reason(event, after)
        return [Send((m.conn,), Released(reason=reason, by=by, lock=lock))]

    def positions(self, lock: str, origin: str) -> list[Effect]:
        """Places in ``lock``'s line changed: each tab whose place changed is told (not ``origin``)."""
        places = {conn: i + 1 for i, conn in enumerate(self.replica.lease(lock).queue)}
        out: list[Effect] = []
        for m in self.members.values():
            place = places.get(m.conn, 0)
            if m.welcomed and place != m.hold(lock).queue_position:
                m.change(lock).queue_position = place
                m.settle(lock)
                if place and m.conn != origin:
                    out.append(Send((m.conn,), Queued(position=place, lock=lock)))
        return out

    def replicated(self, lock: str, fence: int, outcome: Replication) -> list[Member] | None:
        """A ``Replicate`` of ``fence`` ended with ``outcome``: the tabs that hold it now (to be
        told), ``[]`` to try again later, or ``None`` when nothing waits for it any more."""
        if fence != self.replicating.get(lock):
            return None
        h = self.replica.lease(lock).holder
        waiting = [m for m in self.members.values() if m.hold(lock).pending == fence]
        if outcome is Replication.MOVED_ON or h is None or h.fence != fence or not waiting:
            del self.replicating[lock]
            for m in waiting:
                m.change(lock).pending = None
                m.settle(lock)
            return None
        if outcome is not Replication.CONFIRMED:
            return []
        del self.replicating[lock]
        for m in waiting:
            hold = m.change(lock)
            hold.fence, hold.pending = fence, None
        return waiting

    def welcomed(self, m: Member, rejoined: dict[str, int]) -> tuple[list[str], list[Effect]]:
        """``m`` joined, and its join rejoined ``rejoined`` (lock -> fence, by Redis): the locks
        it holds (told so with its welcome), and the effects. A lease waiting for the replicas is
        told with its other tabs'; with PRESENCE_REDIS_WAIT_REPLICAS, a lease no tab here was told
        of yet (its grant came from another process, which may not have confirmed it on the
        replicas) is confirmed first, as a handoff is."""
        told: list[str] = []
        effects: list[Effect] = []
        for lock, holder in self.replica.held().items():
            if not self.holds(m, holder) or rejoined.get(lock) != holder.fence:
                continue
            hold = m.change(lock)
            if holder.fence == self.replicating.get(lock):
                hold.pending = holder.fence
            elif self.policy.wait_replicas and not self._told(lock, holder.fence, m):
                hold.pending = holder.fence
                self.replicating[lock] = holder.fence
                effects.append(Replicate(holder.fence, lock))
            else:
                hold.fence = holder.fence
                told.append(lock)
        return told, effects

    def _told(self, lock: str, fence: int, but: Member) -> bool:
        """Another tab here was told it holds lease ``fence`` of ``lock`` (so it was confirmed)."""
        return any(m is not but and m.hold(lock).fence == fence for m in self.members.values())

    def granted(self, m: Member, lock: str, fence: int) -> None:
        """The tab's own request got (or kept) lease ``fence`` of ``lock``."""
        hold = m.change(lock)
        hold.fence, hold.pending, hold.queue_position = fence, None, 0

    def queued(self, m: Member, lock: str, position: int) -> None:
        m.change(lock).queue_position = position

    def let_go(self, m: Member, lock: str, left_queue: bool) -> None:
        """The tab no longer holds ``lock`` (and with ``left_queue`` no longer waits for it)."""
        hold = m.change(lock)
        hold.fence = None
        if left_queue:
            hold.queue_position = 0
        m.settle(lock)

    def lose(self, lock: str, fence: int | None) -> list[str]:
        """The local deadline of ``fence`` passed unconfirmed: the tabs that held it (no longer)."""
        lost = [m for m in self.members.values() if fence is not None and m.hold(lock).fence == fence]
        for m in lost:
            m.change(lock).fence = None
            m.settle(lock)
        return [m.conn for m in lost]
