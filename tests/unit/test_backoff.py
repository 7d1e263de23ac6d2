"""The reconnect helpers that the pub/sub subscriptions and the audit writer share: the jittered,
capped backoff, the root cause of an exception group, and a swallowed cancellation raised again."""

from __future__ import annotations

import asyncio

import pytest

from presence.gateway.backoff import Backoff, raise_if_cancelled, root_cause


def test_backoff_delays_grow_double_are_capped_and_reset() -> None:
    b = Backoff(base=0.05, cap=2.0)
    assert b.failures == 0
    ceilings = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    for n, d in enumerate(ceilings, start=1):
        delay = b.next_delay()
        assert b.failures == n
        assert d / 2 <= delay <= d, (n, delay)
    for _ in range(5000):  # an outage of hours: never above the cap, never an overflow
        assert 1.0 <= b.next_delay() <= 2.0
    b.reset()
    assert b.failures == 0
    assert 0.025 <= b.next_delay() <= 0.05


def test_backoff_is_jittered() -> None:
    b = Backoff(base=0.05, cap=2.0)
    delays = set()
    for _ in range(20):
        b.reset()
        delays.add(b.next_delay())
    assert len(delays) > 1


def test_backoff_refuses_a_cap_below_its_base() -> None:
    with pytest.raises(ValueError):
        Backoff(base=1.0, cap=0.5)
    with pytest.raises(ValueError):
        Backoff(base=0.0, cap=1.0)


async def test_backoff_wait_counts_a_failure() -> None:
    b = Backoff(base=0.001, cap=0.002)
    await b.wait()
    await b.wait()
    assert b.failures == 2


def test_root_cause_is_the_first_leaf_of_an_exception_group() -> None:
    leaf = ConnectionError("gone")
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [leaf, ValueError()]), KeyError()])
    assert root_cause(group) is leaf
    assert root_cause(leaf) is leaf


async def test_a_swallowed_cancellation_is_raised_again() -> None:
    swallowed = asyncio.Event()

    async def body() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # as Python 3.11's wait_for can when the inner await completes at once
        raise_if_cancelled()

    task = asyncio.create_task(body())
    await asyncio.sleep(0)  # let it start waiting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert swallowed.is_set()


async def test_raise_if_cancelled_is_silent_otherwise() -> None:
    raise_if_cancelled()
