"""Throttle: what one connection may send, and what it is told when it sends too much or wrong.

- Every frame costs one token of the connection's frame bucket (:data:`FRAMES_PER_S` a second, or
  ``PRESENCE_RATE_LIMIT`` when higher), before it is even decoded: a flood far beyond what any
  client needs.
- Every request costs tokens of the connection's bucket (``PRESENCE_RATE_LIMIT`` a second, burst
  ``PRESENCE_RATE_BURST``) and of the budget all of the user's connections on this process share
  (``PRESENCE_USER_RATE_LIMIT``, :class:`~presence.connections.admission.Admission`): one, or more
  for a ``watch`` (one per :data:`~presence.connections.watcher_role.IDS_PER_TOKEN` workspace ids),
  or none for a ``pong`` (paced by the server) and a ``status`` (the workspace core writes a tab's
  presence at most once per ``PRESENCE_META_INTERVAL_MS``, the latest winning: a cursor may move
  as often as the page likes).
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
FRAMES_PER_S = 100  # any frames; statuses move with cursors, so this is the flood bound


class Throttle:
    """``admit`` each frame, ``charge`` each decoded request, report each bad one with ``bad``.
    ``admit``, ``charge`` and ``bad`` raise ``CloseError`` when the connection must close."""
    __slots__ = ("bad_frames", "bucket", "budget", "frames", "refused", "send", "throttled")


    def __init__(self, rate: float, burst: int, budget: TokenBucket, send: Callable[[ServerMessage], None]) -> None:
        self.frames = TokenBucket(max(FRAMES_PER_S, rate), max(2 * FRAMES_PER_S, burst))
        self.bucket = TokenBucket(rate, burst)
        self.budget = budget  # shared by the user's connections on this process
        self.send = send
        self.refused = WindowCounter(burst, 10.0)
        self.bad_frames = WindowCounter(BAD_FRAMES_PER_MINUTE - 1, 60.0)
        self.throttled = False  # the last frame was refused and told so

    def admit(self) -> bool:
        """A frame arrived: False if it is over the connection's frame rate (and must be dropped)."""
        if self.frames.allow():
            return True
        self._refuse("too many messages, slow down")
        return False

    def charge(self, cost: int) -> bool:
        """A request of ``cost`` tokens (0: free): False if over a rate."""
        if cost == 0:
            return True
        if not self.bucket.allow(cost):
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
