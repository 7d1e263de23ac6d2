"""Key guard: slows down a peer that keeps presenting wrong operator keys.

The admin token and the API key are compared in constant time and must be long (settings), but
nothing would stop one peer from trying millions of them. Each wrong key is counted per peer
address; a peer with :data:`MAX_FAILURES` wrong keys within :data:`WINDOW_S` seconds is refused
(HTTP 429 with ``Retry-After``, or close 4429 on the dashboard's WebSocket) without its key being
looked at, until its oldest failure is that old. Other peers are not affected. The peer address
is the one uvicorn reports, so behind a proxy it is the client's only when the proxy is trusted
to say so (``FORWARDED_ALLOW_IPS``, see docs/deployment.md, Load balancer).

Memory is bounded: at most :data:`MAX_PEERS` addresses are tracked, the least recently failed
forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque

MAX_FAILURES = 10
WINDOW_S = 60.0
MAX_PEERS = 10_000


class KeyGuard:
    def __init__(
        self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, max_peers: int = MAX_PEERS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_peers = max_peers
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, peer: str | None) -> int:
        """0 when ``peer`` may present a key; else the seconds until it may again."""
        times = self._recent(peer or "?", time.monotonic())
        if times is None or len(times) < self.max_failures:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - time.monotonic()))

    def failed(self, peer: str | None) -> None:
        """``peer`` presented a wrong key."""
        key, now = peer or "?", time.monotonic()
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_peers:
                self._failures.popitem(last=False)
        times.append(now)
        self._failures.move_to_end(key)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
