"""Limits: the per-connection token bucket and sliding-window counters behind the message rate limit
and the bad-message limit."""

from __future__ import annotations

import time
from collections import deque


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a message costs one token or more."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def allow(self, cost: int = 1) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class WindowCounter:
    """Counts events in the last ``window`` seconds; ``hit`` says whether ``limit`` is now exceeded."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] | None = None  # made at the first hit: most connections never have one

    def hit(self) -> bool:
        now = time.monotonic()
        times = self._times
        if times is None:
            times = self._times = deque(maxlen=self.limit + 1)
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times) > self.limit
