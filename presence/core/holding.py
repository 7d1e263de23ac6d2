"""Holding: what each local tab of a workspace knows of its lease.

The one writer of each tab's lease state (:class:`~presence.core.member.Member`'s ``fence``,
``pending`` and ``queue_position``): which local tabs hold the lease and know it, which are told
of a handoff only once the Redis replicas have it, and each tab's place in line. Its methods
return the messages that tell the tabs (as :class:`~presence.core.effects.Send` effects, and a
:class:`~presence.core.effects.Replicate` for a handoff to confirm); the
:class:`~presence.core.workspace.Workspace` decides when to ask, and owns the timers and the local
deadline.

With ``PRESENCE_REDIS_WAIT_REPLICAS=n`` a tab's own request is answered once n replicas have its
grant (the gateway WAITs behind the script). A lease a script handed on (to the head of the wait
queue, to a polite requester, to a requester at its deadline) has no request to answer: its tabs
are told only once this process has renewed it and WAITed (``Replicate``), since a failover
before then could lose a grant the tab already wrote with.
"""

from __future__ import annotations

from ..settings import Settings
from ..wire.messages import Acquired, Queued, Released
from . import rules
from .effects import Effect, Replicate, Replication, Send
from .events import Event
from .member import Member, Members
from .records import HolderRecord
from .replica import Replica


class Holding:
    """Attributes: ``replicating``, the fence of a lease handed to local tabs that they are told
    of once the replicas have it (0: none)."""

    def __init__(self, members: Members, replica: Replica, settings: Settings) -> None:
        self.members = members
        self.replica = replica
        self.settings = settings
        self.replicating = 0

    def holds(self, member: Member, holder: HolderRecord | None = None) -> bool:
        """The lease of ``holder`` (default: the current one) belongs to ``member`` (scope rule)."""
        h = self.replica.holder if holder is None else holder
        return h is not None and rules.holds(h, member.user.id, member.tab, self.settings.lease_scope)

    def holders(self) -> list[Member]:
        """Local tabs that hold the lease and know it."""
        h, scope = self.replica.holder, self.settings.lease_scope
        return [] if h is None else [m for m in self.members.holding(h, scope) if m.fence is not None]

    def renewal(self, conn: str) -> int | None:
        """The fence the heartbeat renews for this tab, if it holds the current lease."""
        h, m = self.replica.holder, self.members.get(conn)
        if h is None or m is None or m.fence != h.fence or not self.holds(m, h):
            return None
        return h.fence

    def tell(
        self, m: Member, after: HolderRecord | None, event: Event | None, origin: str, ttl_ms: int
    ) -> list[Effect]:
        """The holder is now ``after``: what ``m`` is told (``ttl_ms``: the time left of a new
        lease). The tab whose request made the change (``origin``) is answered by that request."""
        if after is not None and self.holds(m, after):
            if after.fence in (m.fence, m.pending):
                return []
            if m.conn != origin and self.settings.redis_wait_replicas > 0:
                m.pending = after.fence  # handed on by a script: no WAIT answered it yet
                if self.replicating == after.fence:
                    return []
                self.replicating = after.fence
                return [Replicate(after.fence)]
            m.fence, m.pending = after.fence, None
            return [] if m.conn == origin else [Send((m.conn,), Acquired(fence=after.fence, ttl_ms=ttl_ms))]
        told = m.fence is not None and m.conn != origin
        m.fence = m.pending = None
        if not told:
            return []
        reason, by = rules.loss_reason(event, after)
        return [Send((m.conn,), Released(reason=reason, by=by))]

    def positions(self, origin: str) -> list[Effect]:
        """Places in line changed: each tab whose place changed is told (but not ``origin``)."""
        places = {conn: i + 1 for i, conn in enumerate(self.replica.queue)}
        out: list[Effect] = []
        for m in self.members.values():
            place = places.get(m.conn, 0)
            if m.welcomed and place != m.queue_position:
                m.queue_position = place
                if place and m.conn != origin:
                    out.append(Send((m.conn,), Queued(position=place)))
        return out

    def replicated(self, fence: int, outcome: Replication) -> list[Member] | None:
        """A ``Replicate`` of ``fence`` ended with ``outcome``: the tabs that hold it now (to be
        told), ``[]`` to try again later, or ``None`` when nothing waits for it any more."""
        if fence != self.replicating:
            return None
        h = self.replica.holder
        waiting = [m for m in self.members.values() if m.pending == fence]
        if outcome is Replication.MOVED_ON or h is None or h.fence != fence or not waiting:
            self.replicating = 0
            for m in waiting:
                m.pending = None
            return None
        if outcome is not Replication.CONFIRMED:
            return []
        self.replicating = 0
        for m in waiting:
            m.fence, m.pending = fence, None
        return waiting

    def welcomed(self, m: Member) -> bool:
        """``m`` joined: whether it holds the lease (told so with its welcome). A lease waiting
        for the replicas is told with its other tabs'."""
        holder = self.replica.holder
        if holder is None or not self.holds(m, holder):
            return False
        if holder.fence == self.replicating:
            m.pending = holder.fence
            return False
        m.fence = holder.fence
        return True

    def granted(self, conn: str, fence: int) -> None:
        """The tab's own request got (or kept) lease ``fence``."""
        m = self.members[conn]
        m.fence, m.pending, m.queue_position = fence, None, 0

    def queued(self, conn: str, position: int) -> None:
        self.members[conn].queue_position = position

    def let_go(self, conn: str, left_queue: bool) -> None:
        """The tab no longer holds the lease (and with ``left_queue`` no longer waits for it)."""
        m = self.members[conn]
        m.fence, m.queue_position = None, 0 if left_queue else m.queue_position

    def lose(self, fence: int | None) -> list[str]:
        """The local deadline of ``fence`` passed unconfirmed: the tabs that held it (no longer)."""
        lost = [m for m in self.members.values() if m.fence is not None and m.fence == fence]
        for m in lost:
            m.fence = None
        return [m.conn for m in lost]
