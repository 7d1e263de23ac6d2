"""Reconnecting: the delay between attempts, and the two helpers every reconnect loop needs.

Every loop that keeps something connected to Redis (the pub/sub transports in
:mod:`presence.gateway.classic` and :mod:`presence.gateway.sharded`, the audit writer) follows the
same pattern::

    backoff = Backoff()
    while True:
        try:
            ...  # connect, then work until the connection fails
            backoff.reset()  # as soon as the connection works again
            ...
        except Exception as exc:
            log.warning("lost: %r", root_cause(exc))
        await backoff.wait()  # one more failure in a row: sleep its delay

:class:`Backoff` keeps the count of failures in a row and turns it into a delay with redis-py's
``EqualJitterBackoff``: about ``base`` after the first failure, doubling with each further one,
never more than ``cap``, and always between half and all of that. The jitter spreads the
reconnects of many processes after a shared outage; the lower bound of half keeps a process from
hammering a Redis that is still down.
"""

from __future__ import annotations

import asyncio
import math

from redis.backoff import EqualJitterBackoff


class Backoff:
    """Delays between reconnect attempts.

    After the ``n``-th failure in a row the delay is a random value between ``d / 2`` and ``d``,
    where ``d = min(cap, base * 2 ** (n - 1))``: with the defaults 25-50 ms, then 50-100 ms, ...,
    up to 1-2 s. ``reset()`` after a success starts again from the first delay.
    """

    def __init__(self, base: float = 0.05, cap: float = 2.0) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._policy = EqualJitterBackoff(cap=cap, base=base)
        # redis-py computes base * 2**n with an int power: past ~1000 failures in a row (half an hour
        # of a Redis outage at the cap) that overflows a float. Beyond this exponent d is the cap anyway.
        self._max_exponent = math.ceil(math.log2(cap / base))
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures in a row since the last ``reset()`` (or since construction)."""
        return self._failures

    def reset(self) -> None:
        """The connection works again: the next failure waits the first, shortest delay."""
        self._failures = 0

    def next_delay(self) -> float:
        """Count one more failure and return the delay (seconds) to wait before the next attempt.
        For loops that wait their own way (e.g. also for a stop request); others use :meth:`wait`."""
        self._failures += 1
        return self._policy.compute(min(self._failures - 1, self._max_exponent))

    async def wait(self) -> None:
        """Count one more failure and sleep its delay."""
        await asyncio.sleep(self.next_delay())


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (a TaskGroup's failure), for a one-line log message;
    any other exception as it is."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop.

    Python 3.11's ``asyncio.wait_for``, which redis-py wraps around socket reads and writes, can
    swallow a cancellation that arrives just as the inner operation completes: the await returns
    normally and the task runs on. A loop that must stop when cancelled calls this after each such
    await (``Task.cancelling()`` still counts the swallowed request).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
