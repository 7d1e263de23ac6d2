"""Tab: one WebSocket connection, i.e. one (user, workspace, browser tab), and its outgoing queue.

Nothing ever awaits a client's socket except the tab's own writer task: ``send`` only enqueues
into a bounded queue, and a tab whose queue overflows (a client that stopped reading) is closed
with 1013 without slowing anyone else down.

Two guards keep a stuck peer from costing more than a bounded time:

- a message that carries ``ttl_ms`` (``acquired``, ``ping``) is stamped when the writer sends it,
  not when it was queued: time spent waiting behind a slow socket (or in a paused process) is
  taken off, so a client is never told it holds the lease for longer than the server knows;
- once a close is requested, the peer has ``close_timeout`` seconds to complete the closing
  handshake; after that the connection is aborted (a close frame can be stuck behind a full
  send buffer of a client that stopped reading, and would never be delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import msgspec

from ..errors import Overloaded
from ..telemetry import NO_TELEMETRY, Telemetry
from ..wire import messages
from ..wire.messages import Acquired, Person, Ping, ServerMessage

log = logging.getLogger("presence.tab")


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


CLOSE_TIMEOUT_S = 5.0
"""How long a peer has to complete the closing handshake before its connection is aborted."""


class _Timed:
    """A queued message whose ``ttl_ms`` counts down to ``deadline`` (loop time) while it waits."""

    __slots__ = ("deadline", "message")

    def __init__(self, message: Acquired | Ping, deadline: float) -> None:
        self.message = message
        self.deadline = deadline

    def encode(self, now: float) -> str:
        ttl_ms = max(0, int((self.deadline - now) * 1000))
        return messages.encode(msgspec.structs.replace(self.message, ttl_ms=ttl_ms))


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
    - ``ping_n`` / ``pong_n``: the last ping sent (:meth:`ping`) and the last one answered
      (:meth:`pong`); a tab is renewed by the heartbeat only while it answered the latest ping.
    - ``last_seen``: monotonic time of the hello or the last pong; too old means dead (4408).
    - ``closing``: set once a close was requested; the tab sends nothing after that. The peer
      then has ``close_timeout`` seconds before ``abort`` (if given) drops the connection.

    Its lease state (fence, queue position) is not here: the workspace core owns it
    (:class:`~presence.core.workspace.Member`).
    """

    def __init__(
        self, socket: Socket, conn: str, user: Person, workspace: str, tab_id: str,
        may_take_over: bool = True, queue_size: int = 256,
        abort: Callable[[], bool] | None = None, close_timeout: float = CLOSE_TIMEOUT_S,
        telemetry: Telemetry = NO_TELEMETRY, direct: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.socket = socket
        self.conn = conn
        self.user = user
        self.workspace = workspace
        self.tab_id = tab_id
        self.may_take_over = may_take_over
        self.ping_n = 0
        self.pong_n = 0
        self.last_seen = time.monotonic()
        self.closing: _Close | None = None
        self.close_sent = False
        self._queue: deque[str | _Timed] = deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._abort = abort
        self._close_timeout = close_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._telemetry = telemetry
        self._direct = direct  # writes a whole frame to the socket (connections/abort.py)
        self._writing = False  # the writer is handing a message to the socket

    def __repr__(self) -> str:
        return f"<Tab {self.conn} {self.user.id}@{self.workspace}>"

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"writer {self.conn}")
        self._writer.add_done_callback(self._writer_done)

    def send(self, message: ServerMessage) -> None:
        """Queue a message; never blocks. Overflow closes this tab with 1013."""
        if self.closing is not None:
            return
        if isinstance(message, Acquired | Ping) and message.ttl_ms is not None:
            deadline = asyncio.get_running_loop().time() + message.ttl_ms / 1000
            queued = self._enqueue(_Timed(message, deadline))
        else:
            queued = self._enqueue(messages.encode(message))
        if queued:
            self._telemetry.message_out(message)

    def send_frame(self, text: str, frame: bytes | None = None) -> bool:
        """Send a message already encoded (counted by whoever encoded it): ``frame`` (its whole
        WebSocket frame) straight to the socket when nothing waits before it, else ``text``
        through the queue. True if sent or queued."""
        idle = self.closing is None and not self._queue and not self._writing
        if frame is not None and idle and self._direct is not None and self._direct(frame):
            return True
        return self._enqueue(text)

    def _enqueue(self, item: str | _Timed) -> bool:
        if self.closing is not None:
            return False
        if len(self._queue) >= self._queue_size:
            log.warning("%r: send queue full (%d), closing as a slow consumer", self, self._queue_size)
            self._queue.clear()
            self.closing = _Close(Overloaded.close_code, "slow consumer: send queue overflow")
            # The writer is stuck in a send to this client: do not wait behind it.
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.get_running_loop().create_task(self._send_close(), name=f"close {self.conn}")
            self._arm_watchdog()
            return False
        self._queue.append(item)
        self._wakeup.set()
        return True

    def ping(self, ttl_ms: int | None, ttls: dict[str, int] | None = None) -> None:
        """Send the next ping (``ttl_ms``: the lease time left, when this tab holds the lease)."""
        self.ping_n += 1
        self.send(Ping(n=self.ping_n, ttl_ms=ttl_ms, ttls=ttls))

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
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._close_timeout, self._close_overdue)

    def _close_overdue(self) -> None:
        self._watchdog = None
        if self._abort is None:
            return
        try:
            if self._abort():
                log.info("%r: the peer did not complete the close within %.1fs; aborted", self, self._close_timeout)
        except Exception:
            log.debug("%r: abort failed", self, exc_info=True)

    async def _write(self) -> None:
        while True:
            loop = asyncio.get_running_loop()
            while self._queue:
                item = self._queue.popleft()
                self._writing = True
                try:
                    await self.socket.send_text(item if isinstance(item, str) else item.encode(loop.time()))
                finally:
                    self._writing = False
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
        """Stop the writer (the connection is over). Idempotent.

        A close watchdog stays armed: the session ends as soon as the close frame is handed to the
        server, but a peer that does not read can keep that frame (and the socket) buffered forever.
        """
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
