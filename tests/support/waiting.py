"""Waiting in async tests for state that has no event to await: another process settling on its own
schedule, a refresher's next fetch, an HTTP status."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition",
                     interval: float = 0.02) -> Any:
    """Polls ``check`` (a function, or a coroutine function) on the event loop until it returns
    something truthy, and returns that; fails the test after ``timeout`` seconds."""
    async def ask() -> Any:
        result = check()
        return await result if inspect.isawaitable(result) else result
    return await _poll(ask, timeout, what, interval)


async def until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """:func:`eventually` for a ``check`` that blocks (an HTTP request, a Redis call, reading a
    process' state): each call runs in a worker thread, so the event loop goes on meanwhile."""
    return await _poll(lambda: asyncio.to_thread(check), timeout, what, interval)


async def _poll(ask: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await ask()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s (last: {result!r})"
        await asyncio.sleep(interval)
