"""TaskSet: every background task the server starts, so none fails unnoticed or outlives shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("presence.tasks")


class TaskSet:
    """Starts tasks, logs any that fail with their traceback, and awaits them all on ``close``."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        if self._closed:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel what is still running and wait for all of it. Idempotent."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.error("task %s did not stop within %.1fs of cancellation", t.get_name(), timeout)


async def cancel_and_wait(task: asyncio.Task[Any], timeout: float = 5.0) -> bool:
    """Cancel ``task`` and wait for it to end, at most ``timeout`` seconds; whether it ended.

    The cancellation is delivered again every half second: Python 3.11's ``asyncio.wait_for``
    (which redis-py wraps around socket reads) can swallow one that arrives just as the inner
    call completes, and a loop that swallowed it would run on, and a shutdown awaiting it would
    hang for ever. What the task raised was logged where it happened; it ends here quietly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.5, max(0.0, deadline - loop.time())))
        if not task.done() and loop.time() >= deadline:
            log.error("task %s did not stop within %.1fs of cancellation", task.get_name(), timeout)
            return False
    if not task.cancelled():
        task.exception()  # retrieved: its failure was reported when it happened
    return True


class Service:
    """One long-running background coroutine (``run``) with a fixed lifecycle.

    ``start()`` spawns it; if it ever stops with an exception, that is logged as critical with
    ``crash_message`` (what no longer works); ``stop()`` cancels it and waits for it (idempotent).
    """

    name = "service"
    crash_message = "a background service died"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=self.name)
        self._task.add_done_callback(self._crashed)

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical(self.crash_message, exc_info=task.exception())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
