"""Throttle: what one connection may send, and what it is told when it sends too much or wrong.

- Every frame costs one token of the connection's bucket (``PRESENCE_RATE_LIMIT`` a second, burst
  ``PRESENCE_RATE_BURST``), before it is even decoded.
- Every request but a ``pong`` (pongs are paced by the server) also costs the budget all of the
  user's connections on this process share (``PRESENCE_USER_RATE_LIMIT``,
  :class:`~presence.connections.admission.Admission`). A request may cost more than one token: a
  ``watch`` costs one per :data:`~presence.connections.watcher_role.IDS_PER_TOKEN` workspace ids,
  on both.
- A refused frame is answered with one ``error`` ``rate_limited`` per streak of refusals (a
  flood is not answered with a flood); refusals sustained for ten seconds close it with 4429.
- A bad frame is answered with ``error`` ``bad_message``; the tenth within a minute closes it with 4400.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BadMessage, ProtocolViolation, RateLimited, TooMany
from ..wire.messages import Error, RequestId, ServerMessage
from .limits import TokenBucket, WindowCounter

BAD_FRAMES_PER_MINUTE = 10


class Throttle:
    """``admit`` each frame, ``charge`` each decoded request, report each bad one with ``bad``.
    ``admit``, ``charge`` and ``bad`` raise ``CloseError`` when the connection must close."""

    def __init__(self, rate: float, burst: int, budget: TokenBucket, send: Callable[[ServerMessage], None]) -> None:
        self.bucket = TokenBucket(rate, burst)
        self.budget = budget  # shared by the user's connections on this process
        self.send = send
        self.refused = WindowCounter(burst, 10.0)
        self.bad_frames = WindowCounter(BAD_FRAMES_PER_MINUTE - 1, 60.0)
        self.throttled = False  # the last frame was refused and told so

    def admit(self) -> bool:
        """A frame arrived: False if it is over the connection's rate (and must be dropped)."""
        if self.bucket.allow():
            return True
        self._refuse("too many messages, slow down")
        return False

    def charge(self, cost: int) -> bool:
        """A request of ``cost`` tokens (its frame paid one of them; 0: free): False if over a rate."""
        if cost == 0:
            return True
        if cost > 1 and not self.bucket.allow(cost - 1):
            self._refuse("too many messages, slow down")
            return False
        if not self.budget.allow(cost):
            self._refuse("too many messages from this user's connections together, slow down")
            return False
        self.throttled = False
        return True

    def bad(self, why: str, request_id: RequestId = None) -> None:
        if self.bad_frames.hit():
            raise ProtocolViolation(f"too many bad messages; last: {why}")
        self.send(Error(code=BadMessage.code, message=why, id=request_id))

    def _refuse(self, why: str) -> None:
        if self.refused.hit():
            raise TooMany("message rate limit exceeded")
        if not self.throttled:
            self.throttled = True
            self.send(Error(code=RateLimited.code, message=why))
