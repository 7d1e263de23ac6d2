"""Admission: whether this process takes another tab (per-user tab limit; not while stopping)."""

from __future__ import annotations

from collections import Counter

from ..errors import Restarting, TooMany
from ..wire.messages import Person


class Admission:
    """Counts open tabs per user. ``close()`` refuses everyone from then on (shutdown)."""

    def __init__(self, max_tabs_per_user: int) -> None:
        self.max_tabs_per_user = max_tabs_per_user
        self.closed = False
        self._tabs: Counter[str] = Counter()

    def admit(self, user: Person) -> None:
        """Count a new tab of ``user`` or refuse it (1012 while stopping, 4429 over the limit)."""
        if self.closed:
            raise Restarting("server restarting, reconnect")
        if self._tabs[user.id] >= self.max_tabs_per_user:
            raise TooMany(f"more than {self.max_tabs_per_user} tabs for this user")
        self._tabs[user.id] += 1

    def dismiss(self, user: Person) -> None:
        self._tabs[user.id] -= 1
        if self._tabs[user.id] <= 0:
            del self._tabs[user.id]

    def close(self) -> None:
        self.closed = True
