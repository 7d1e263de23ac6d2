"""Deadline: the local lease deadline of a holder on this process.

It falls a safety margin before the Redis TTL, counted from when the confirming command was
*sent* (a reply that came back late must not stretch it): a tab told it holds the lease until
then can never edit after the lease can have expired in Redis.
"""

from __future__ import annotations


class Deadline:
    """``at`` (loop time) for lease ``fence``; ``exact`` unless only heard of by pub/sub."""

    def __init__(self, safety_margin_ms: int) -> None:
        self.margin_ms = safety_margin_ms
        self.at: float | None = None
        self.fence: int | None = None
        self.exact = False

    def confirm(self, fence: int, sent_at: float, ttl_ms: int, exact: bool = True) -> float | None:
        """Redis confirmed lease ``fence`` by a command sent at ``sent_at``: the new deadline, or
        None when it does not move.

        Exact confirmations only ever move the deadline later (Redis cannot expire the lease
        before the latest of them + TTL). A provisional one (``exact=False``: heard by pub/sub,
        timed at receipt) never overrides an exact one, and the first exact one replaces it, even
        when that makes the deadline earlier.
        """
        at = sent_at + (ttl_ms - self.margin_ms) / 1000
        if self.fence == fence and self.at is not None:
            if self.exact and not exact:
                return None
            if self.exact == exact and at <= self.at:
                return None
        self.at, self.fence, self.exact = at, fence, exact
        return at

    def left_ms(self, now: float) -> int:
        return 0 if self.at is None else max(0, int((self.at - now) * 1000))

    def clear(self) -> None:
        self.at = self.fence = None
