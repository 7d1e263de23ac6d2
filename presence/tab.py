"""Tab: one WebSocket connection, i.e. one (user, workspace, browser tab), and its outgoing queue.

Nothing ever awaits a client's socket except the tab's own writer task: ``send`` only enqueues
into a bounded queue, and a tab whose queue overflows (a client that stopped reading) is closed
with 1013 without slowing anyone else down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Protocol

from . import protocol
from .errors import Overloaded
from .protocol import Person, ServerMessage

log = logging.getLogger("presence.tab")


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Tab:
    """Attributes and their lifecycle:

    - ``conn``: process-unique connection id (``<server>-<n>``), fixed; also the tab's member
      name in the workspace's Redis presence set.
    - ``user``, ``workspace``, ``tab_id``, ``may_take_over``: from the hello and its token, fixed.
    - ``active``, ``meta``: presence info, changed by ``status`` messages.
    - ``fence``: the lease fence this tab (its user, in scope ``user``) holds, or ``None``. Set
      when the holder changes to this tab's user/tab or a request is granted; cleared when the
      tab is told ``released`` (including ``lost`` at the local deadline).
    - ``ping_n`` / ``pong_n``: the last ping sent and the last one answered; a tab is renewed by
      the heartbeat only while ``pong_n == ping_n`` (it answered the latest ping).
    - ``last_seen``: monotonic time of the hello or the last pong; too old means dead (4408).
    - ``welcomed``: false until ``welcome`` is queued; rooms send nothing to the tab before that.
    - ``closing``: set once a close was requested; the tab sends nothing after that.
    """

    def __init__(
        self, socket: Socket, conn: str, user: Person, workspace: str, tab_id: str,
        may_take_over: bool = True, queue_size: int = 256,
    ) -> None:
        self.socket = socket
        self.conn = conn
        self.user = user
        self.workspace = workspace
        self.tab_id = tab_id
        self.may_take_over = may_take_over
        self.active = True
        self.meta: dict[str, object] | None = None
        self.fence: int | None = None
        self.ping_n = 0
        self.pong_n = 0
        self.last_seen = time.monotonic()
        self.welcomed = False
        self.closing: _Close | None = None
        self.close_sent = False
        self._queue: deque[str] = deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Tab {self.conn} {self.user.id}@{self.workspace}>"

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"writer {self.conn}")
        self._writer.add_done_callback(self._writer_done)

    def send(self, message: ServerMessage) -> None:
        """Queue a message; never blocks. Overflow closes this tab with 1013."""
        if self.closing is not None:
            return
        if len(self._queue) >= self._queue_size:
            log.warning("%r: send queue full (%d), closing as a slow consumer", self, self._queue_size)
            self._queue.clear()
            self.closing = _Close(Overloaded.close_code, "slow consumer: send queue overflow")
            # The writer is stuck in a send to this client: do not wait behind it.
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.get_running_loop().create_task(self._send_close(), name=f"close {self.conn}")
            return
        self._queue.append(protocol.encode(message))
        self._wakeup.set()

    def pong(self, n: int) -> None:
        if 0 < n <= self.ping_n:
            self.pong_n = max(self.pong_n, n)
            self.last_seen = time.monotonic()

    @property
    def answered(self) -> bool:
        return self.pong_n == self.ping_n

    def close(self, code: int, reason: str = "") -> None:
        """Ask the writer to flush what is queued, then close. Idempotent."""
        if self.closing is not None:
            return
        self.closing = _Close(code, reason[:120])
        self._wakeup.set()
        if self._writer is None:  # never started: close directly
            self._closer = asyncio.get_running_loop().create_task(self._send_close(), name=f"close {self.conn}")

    async def _write(self) -> None:
        while True:
            while self._queue:
                await self.socket.send_text(self._queue.popleft())
            if self.closing is not None:
                await self._send_close()
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _send_close(self) -> None:
        if self.close_sent or self.closing is None:
            return
        self.close_sent = True
        try:
            await self.socket.close(self.closing.code, self.closing.reason)
        except Exception:  # the peer may already be gone; closing is best effort
            log.debug("%r: close failed", self, exc_info=True)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A failed send means the connection is broken; the reader sees the disconnect.
            log.debug("%r: writer stopped: %r", self, exc)

    async def stop(self) -> None:
        """Stop the writer (the connection is over). Idempotent."""
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
