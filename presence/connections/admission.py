"""Admission: whether this process takes another tab (per-user tab limit; not while stopping),
and each user's message budget on this process.

A user's tabs share one token bucket (``PRESENCE_USER_RATE_LIMIT`` messages a second, burst twice
that) on top of each connection's own: whatever their number of tabs, one user's requests cost
this process a bounded share of its time. The bucket lives while the user has a tab here.
"""

from __future__ import annotations

from collections import Counter

from ..errors import Restarting, TooMany
from ..wire.messages import Person
from .limits import TokenBucket


class Admission:
    """Counts open tabs per user. ``close()`` refuses everyone from then on (shutdown)."""

    def __init__(self, max_tabs_per_user: int, user_rate: float = 50.0, user_burst: int = 100) -> None:
        self.max_tabs_per_user = max_tabs_per_user
        self.user_rate = user_rate
        self.user_burst = user_burst
        self.closed = False
        self._tabs: Counter[str] = Counter()
        self._budgets: dict[str, TokenBucket] = {}

    def admit(self, user: Person) -> None:
        """Count a new tab of ``user`` or refuse it (1012 while stopping, 4429 over the limit)."""
        if self.closed:
            raise Restarting("server restarting, reconnect")
        if self._tabs[user.id] >= self.max_tabs_per_user:
            raise TooMany(f"more than {self.max_tabs_per_user} tabs for this user")
        self._tabs[user.id] += 1
        if user.id not in self._budgets:
            self._budgets[user.id] = TokenBucket(self.user_rate, self.user_burst)

    def dismiss(self, user: Person) -> None:
        self._tabs[user.id] -= 1
        if self._tabs[user.id] <= 0:
            del self._tabs[user.id]
            self._budgets.pop(user.id, None)

    def budget(self, user: Person) -> TokenBucket:
        """The message budget all of an admitted user's tabs on this process share."""
        return self._budgets[user.id]

    def close(self) -> None:
        self.closed = True
