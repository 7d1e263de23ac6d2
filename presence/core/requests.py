"""Lease requests: the part of the core's front door that answers a tab's lease requests.

For each request the shell asks what it must know before running the script (:meth:`admit`,
:meth:`release_target`, :meth:`decline_fence`), runs the one script, and hands its outcome here;
each method applies the events the script published and answers ``(reply, effects)``: the reply
for the tab that asked (an ``error`` when refused), and what everyone else is told. It is one
class of :class:`~presence.core.workspace.Workspace`, kept apart because it is one concept.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import (
    Forbidden,
    NoRequest,
    NotHolder,
    RequestError,
    RequestPending,
    TakeoverCooldown,
    TakeoverForbidden,
    TooManyLocks,
)
from ..wire.messages import (
    Acquired,
    Asked,
    Busy,
    Declined,
    Error,
    HolderView,
    Queued,
    Released,
    RequestId,
    ServerMessage,
)
from . import rules
from .changes import Changes
from .effects import Effect
from .outcomes import (
    AcquireReply,
    Cooldown,
    Ended,
    Granted,
    HandoffReply,
    Outcome,
    Pending,
    Rejoined,
    ReleaseReply,
    RequestReply,
    TakenOver,
    TakeoverReply,
    TooMany,
    Waiting,
)
from .outcomes import Asked as AskedReply
from .outcomes import Busy as BusyReply
from .outcomes import NotHolder as NotHolderReply
from .policy import Policy
from .records import HolderRecord

Answer = tuple[ServerMessage, list[Effect]]
"""A request's reply to the tab that asked, and the effects of what its script did."""



@dataclass(frozen=True, slots=True)
class GiveUp:
    """``release``: run the release script with ``fence`` (0: leave the wait queue)."""

    fence: int


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """``release`` of a tab that only asked for the lock: cancel its handoff request."""


ReleaseTarget = GiveUp | CancelRequest


class Operation:
    """What a tab asks for, as :meth:`Workspace.admit` checks it."""

    ACQUIRE = "acquire"
    TAKEOVER = "takeover"
    REQUEST = "request"


def _refused(error: RequestError, request_id: RequestId) -> Error:
    return Error(code=error.code, message=str(error), id=request_id)


def _too_many(limit: int, request_id: RequestId) -> Error:
    """The workspace holds as many named locks as it may (PRESENCE_MAX_LOCKS): nothing changed."""
    return _refused(TooManyLocks(f"a workspace may hold at most {limit} named locks at once"), request_id)


class LeaseRequests:
    """The lease requests of :class:`~presence.core.workspace.Workspace` (which sets ``_c``)."""

    policy: Policy
    _c: Changes

    def admit(self, conn: str, operation: str, lock: str) -> None:
        """May tab ``conn`` ask for ``operation`` on ``lock``? Raises the ``RequestError`` to answer."""
        m = self._c.members[conn]
        if m.read_only:
            raise Forbidden("this token is read-only: it may not hold a lease")
        if operation == Operation.TAKEOVER and not m.may_take_over:
            raise TakeoverForbidden("your token does not allow taking over a lease")
        held = [held for held, hold in m.holds.items() if held and hold.fence is not None]
        if lock and lock not in held and len(held) >= self.policy.max_locks_per_tab:
            raise TooManyLocks(f"a tab may hold at most {self.policy.max_locks_per_tab} named locks at once")

    def acquired(
        self, conn: str, lock: str, outcome: Outcome[AcquireReply], now: float, request_id: RequestId
    ) -> Answer:
        c = self._c
        c.apply(outcome.events, now, outcome.sent_at)
        match outcome.reply:
            case BusyReply(holder=holder):
                return Busy(holder=self._holder_view(lock, holder), id=request_id, lock=lock), c.drain()
            case Waiting(position=position):
                c.holding.queued(c.members[conn], lock, position)
                return Queued(position=position, id=request_id, lock=lock), c.drain()
            case Granted() | Rejoined() as grant:
                return self._granted(conn, lock, grant, outcome.sent_at, now, request_id)
            case TooMany(limit=limit):
                return _too_many(limit, request_id), c.drain()

    def took_over(
        self, conn: str, lock: str, outcome: Outcome[TakeoverReply], now: float, request_id: RequestId
    ) -> Answer:
        c = self._c
        c.apply(outcome.events, now, outcome.sent_at)
        match outcome.reply:
            case Cooldown(retry_ms=retry_ms):
                error = TakeoverCooldown(f"the lease was taken over moments ago; try again in {retry_ms} ms")
                return _refused(error, request_id), c.drain()
            case Granted() | TakenOver() | Rejoined() as grant:
                return self._granted(conn, lock, grant, outcome.sent_at, now, request_id)
            case TooMany(limit=limit):
                return _too_many(limit, request_id), c.drain()

    def _granted(
        self, conn: str, lock: str, grant: Granted | Rejoined | TakenOver, sent_at: float, now: float,
        request_id: RequestId,
    ) -> Answer:
        """The tab's request got (or kept) ``lock``: its reply, and the effects."""
        c = self._c
        c.holding.granted(c.members[conn], lock, grant.fence)
        c.confirm(lock, grant.fence, sent_at, now, grant.ttl_ms)
        reply = Acquired(
            fence=grant.fence, ttl_ms=c.ttl_left_ms(lock, now), id=request_id, rejoined=isinstance(grant, Rejoined),
            lock=lock,
        )
        return reply, c.drain()

    def release_target(self, conn: str, lock: str) -> ReleaseTarget:
        """What ``release`` of ``lock`` gives up: the lease or the tab's place in line (the release
        script), or its pending handoff request. Raises ``NotHolder`` when it has none of them."""
        c = self._c
        hold = c.members[conn].hold(lock)
        if hold.fence is None and not hold.queue_position:
            request = c.replica.lease(lock).request
            if request is not None and request.conn == conn:
                return CancelRequest()
            raise NotHolder("you neither hold the lease nor wait or ask for it")
        # A waiter passes fence 0, which matches no grant: None would mean "whoever holds it".
        return GiveUp(hold.fence if hold.fence is not None else 0)

    def released(
        self, conn: str, lock: str, target: ReleaseTarget, outcome: Outcome[ReleaseReply] | Outcome[HandoffReply],
        now: float, request_id: RequestId,
    ) -> Answer:
        c = self._c
        c.apply(outcome.events, now, outcome.sent_at)
        if isinstance(target, CancelRequest):
            return Declined(reason="cancelled", id=request_id, lock=lock), c.drain()
        m = c.members[conn]
        if isinstance(outcome.reply, NotHolderReply):
            c.holding.let_go(m, lock, left_queue=False)
            return _refused(NotHolder("you no longer hold the lease"), request_id), c.drain()
        c.holding.let_go(m, lock, left_queue=True)
        return Released(reason="released", id=request_id, lock=lock), c.drain()

    def asked(
        self, conn: str, lock: str, outcome: Outcome[RequestReply], now: float, request_id: RequestId
    ) -> Answer:
        """The tab asked the holder politely for ``lock``."""
        c = self._c
        c.apply(outcome.events, now, outcome.sent_at)
        match outcome.reply:
            case Pending():
                error = RequestPending("someone else's request is waiting for the holder's answer")
                return _refused(error, request_id), c.drain()
            case AskedReply(holder=holder, deadline_ms=deadline_ms):
                view = self._holder_view(lock, holder)
                return Asked(holder=view, deadline_ms=deadline_ms, id=request_id, lock=lock), c.drain()
            case Granted() | Rejoined() as grant:
                return self._granted(conn, lock, grant, outcome.sent_at, now, request_id)
            case TooMany(limit=limit):
                return _too_many(limit, request_id), c.drain()

    def decline_fence(self, conn: str, lock: str) -> int:
        """The fence a holder declines a request with. Raises ``NotHolder`` for anyone else."""
        fence = self._c.members[conn].hold(lock).fence
        if fence is None:
            raise NotHolder("only the holder can decline a request")
        return fence

    def declined(
        self, conn: str, lock: str, outcome: Outcome[HandoffReply], now: float, request_id: RequestId
    ) -> Answer:
        c = self._c
        c.apply(outcome.events, now, outcome.sent_at)
        if not isinstance(outcome.reply, Ended):
            return _refused(NoRequest("there is no pending request to decline"), request_id), c.drain()
        return Declined(reason="declined", id=request_id, lock=lock), c.drain()

    def _holder_view(self, lock: str, holder: HolderRecord | None) -> HolderView:
        """The holder as another user sees it (no fence), tabs counted in this replica."""
        replica = self._c.replica
        view = replica.holder_view(holder, with_fence=False, lock=lock) if holder is not None else None
        if view is None:  # freed between the script and now: the replica's is the newest we know
            view = replica.holder_view(with_fence=False, lock=lock)
        return rules.UNKNOWN_HOLDER if view is None else view
