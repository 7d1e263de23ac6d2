"""Keepalive: a connection's pings and the last sign of life from its peer.

Each ping carries a fresh random number, and only a ``pong`` echoing the latest one counts: a
client that stopped reading cannot stay alive by sending pongs for numbers it guesses or saw
long ago. A connection silent for ``PRESENCE_DEAD_AFTER_MS`` is closed (4408) by whoever pings it
(the heartbeat for tabs, the watcher's own pinger for watchers).
"""

from __future__ import annotations

import secrets
import time

MAX_N = 2**31 - 1  # ping numbers stay small integers in every JSON implementation


class Keepalive:
    """``last_seen``: monotonic time of the start, or of the last pong that counted."""
    __slots__ = ("answered", "last_seen", "ping_n")


    def __init__(self) -> None:
        self.ping_n = 0  # the latest ping's number; 0: none sent yet
        self.answered = True  # the latest ping was answered (no ping yet: nothing to answer)
        self.last_seen = time.monotonic()

    def next_ping(self) -> int:
        """The number of the next ping (never the one before it)."""
        n = self.ping_n
        while n == self.ping_n:
            n = secrets.randbelow(MAX_N) + 1
        self.ping_n = n
        self.answered = False
        return n

    def pong(self, n: int) -> None:
        if n == self.ping_n and self.ping_n:
            self.answered = True
            self.last_seen = time.monotonic()
