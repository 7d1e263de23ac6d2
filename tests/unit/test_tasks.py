"""Stopping background work: a task that swallows a cancellation is cancelled again, and a
shutdown never waits on one for ever."""

from __future__ import annotations

import asyncio
import contextlib

from presence.tasks import cancel_and_wait


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def loop_that_swallows_once() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as Python 3.11's wait_for can: the loop runs on

    task = asyncio.get_running_loop().create_task(loop_that_swallows_once())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=5) is True
    assert task.cancelled() and swallowed == 1


async def test_a_task_that_never_stops_is_given_up_on_after_the_timeout() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=0.6) is False
    stop.set()
    task.cancel()
    await asyncio.wait({task})


async def test_a_failed_task_ends_quietly() -> None:
    async def fails() -> None:
        raise RuntimeError("reported where it happened")

    task = asyncio.get_running_loop().create_task(fails())
    await asyncio.wait({task})
    assert await cancel_and_wait(task) is True
