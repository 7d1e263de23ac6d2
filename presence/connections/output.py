"""Output: one connection's outgoing frames, from its upgrade to its close.

Nothing ever awaits a client's socket except the output's own writer task: ``send`` only
enqueues, and a connection whose backlog outgrows its bounds (a client that stopped reading) is
closed with 1013 without slowing anyone else down. The backlog is what waits in the queue plus
what the server holds below ASGI for the peer (:mod:`~presence.connections.transport`), at most
``PRESENCE_SEND_BUFFER_BYTES`` bytes and ``PRESENCE_SEND_QUEUE_SIZE`` messages. A message is
always taken when nothing waits, whatever its size: the bound is on the backlog.

Two guards keep a stuck peer from costing more than a bounded time:

- a message that carries a lease's time left (``acquired``, ``ping``) is stamped when the writer
  sends it, not when it was queued: time spent waiting behind a slow socket (or in a paused
  process) is taken off, so a client is never told it holds a lease for longer than the server knows;
- once a close is requested, the peer has ``close_timeout`` seconds to complete the closing
  handshake; after that the connection is aborted (a close frame can be stuck behind a full
  send buffer of a client that stopped reading, and would never be delivered). When even the
  server's own buffer is over the bound, the close cannot get through: aborted at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

import msgspec

from ..errors import Overloaded
from ..tasks import cancel_and_wait
from ..telemetry import NO_TELEMETRY, Telemetry
from ..wire import messages
from ..wire.messages import Acquired, Ping, ServerMessage
from .transport import Transport

log = logging.getLogger("presence.output")

CLOSE_TIMEOUT_S = 5.0
"""How long a peer has to complete the closing handshake before its connection is aborted."""

QUEUE_FULL = "send queue full"  # what the log says when a slow consumer is closed


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


def size(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (``isascii`` is O(1) in CPython: only non-ASCII text is encoded)."""
    return len(text) if text.isascii() else len(text.encode())


class _Timed:
    """A queued message whose lease times count down from ``queued_at`` (loop time) while it waits."""

    __slots__ = ("message", "queued_at")

    def __init__(self, message: Acquired | Ping, queued_at: float) -> None:
        self.message = message
        self.queued_at = queued_at

    def encode(self, now: float) -> str:
        spent = int((now - self.queued_at) * 1000)
        m = self.message
        ttl_ms = None if m.ttl_ms is None else max(0, m.ttl_ms - spent)
        if isinstance(m, Ping) and m.ttls:
            ttls = {lock: max(0, ms - spent) for lock, ms in m.ttls.items()}
            return messages.encode(msgspec.structs.replace(m, ttl_ms=ttl_ms, ttls=ttls))
        return messages.encode(msgspec.structs.replace(m, ttl_ms=ttl_ms))


class Closing:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Output:
    """``name`` labels its log lines (the connection id, then who it turned out to be).
    ``closing``: set once a close was requested; nothing is sent after that."""

    def __init__(
        self, socket: Socket, conn: str, *, queue_size: int = 256, buffer_bytes: int = 1 << 20,
        transport: Transport | None = None, close_timeout: float = CLOSE_TIMEOUT_S,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self.socket = socket
        self.conn = conn
        self.name = conn
        self.closing: Closing | None = None
        self.close_sent = False
        self._queue: deque[tuple[str | _Timed, int]] = deque()
        self._backlog = 0  # bytes queued, and of the message being handed to the server
        self._queue_size = queue_size
        self._buffer_bytes = buffer_bytes
        self._transport = transport
        self._close_timeout = close_timeout
        self._telemetry = telemetry
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._writing = False  # the writer is handing a message to the server

    def __repr__(self) -> str:
        return self.name

    @property
    def buffered(self) -> int:
        """Bytes waiting for the peer: queued here, and held by the server below ASGI."""
        return self._backlog + (self._transport.buffered() if self._transport is not None else 0)

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"writer {self.conn}")
        self._writer.add_done_callback(self._writer_done)

    def send(self, message: ServerMessage) -> None:
        """Queue a message; never blocks. A backlog over the bounds closes the connection with 1013."""
        if self.closing is not None:
            return
        if isinstance(message, Acquired | Ping) and (message.ttl_ms is not None or (isinstance(message, Ping)
                                                     and message.ttls)):
            timed = _Timed(message, asyncio.get_running_loop().time())
            queued = self._enqueue(timed, size(messages.encode(message)))
        else:
            text = messages.encode(message)
            queued = self._enqueue(text, size(text))
        if queued:
            self._telemetry.message_out(message)

    def send_frame(self, text: str, frame: bytes | None = None) -> bool:
        """Send a message already encoded (counted by whoever encoded it): ``frame`` (its whole
        WebSocket frame) straight to the socket when nothing waits before it, else ``text``
        through the queue. True if sent or queued."""
        idle = self.closing is None and not self._queue and not self._writing
        if frame is not None and idle and self._transport is not None and self._transport.write(frame):
            return True
        return self._enqueue(text, size(text))

    def _enqueue(self, item: str | _Timed, nbytes: int) -> bool:
        if self.closing is not None:
            return False
        waiting = self.buffered
        if waiting and (len(self._queue) >= self._queue_size or waiting + nbytes > self._buffer_bytes):
            self._overflow(waiting + nbytes)
            return False
        self._queue.append((item, nbytes))
        self._backlog += nbytes
        self._wakeup.set()
        return True

    def _overflow(self, nbytes: int) -> None:
        log.warning("%r: %s (%d bytes, %d messages), closing as a slow consumer (PRESENCE_SEND_BUFFER_BYTES %d, "
                    "PRESENCE_SEND_QUEUE_SIZE %d)", self, QUEUE_FULL, nbytes, len(self._queue) + 1,
                    self._buffer_bytes, self._queue_size)
        self._queue.clear()
        self._backlog = 0
        self.closing = Closing(Overloaded.close_code, "slow consumer: send queue overflow")
        # The writer is stuck in a send to this client: do not wait behind it.
        if self._writer is not None:
            self._writer.cancel()
        if self._transport is not None and self._transport.buffered() > self._buffer_bytes:
            self._abort("its unread data is over PRESENCE_SEND_BUFFER_BYTES: not even the close can get through")
            return
        self._closer = asyncio.get_running_loop().create_task(self._send_close(), name=f"close {self.conn}")
        self._arm_watchdog()

    def close(self, code: int, reason: str = "") -> None:
        """Flush what is queued, then close. Idempotent."""
        if self.closing is not None:
            return
        self.closing = Closing(code, reason[:120])
        self._wakeup.set()
        if self._writer is None:  # never started: close directly
            self._closer = asyncio.get_running_loop().create_task(self._send_close(), name=f"close {self.conn}")
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._close_timeout, self._close_overdue)

    def _close_overdue(self) -> None:
        self._watchdog = None
        self._abort(f"the peer did not complete the close within {self._close_timeout:.1f}s")

    def _abort(self, why: str) -> None:
        if self._transport is None:
            return
        try:
            if self._transport.abort():
                log.info("%r: %s; aborted", self, why)
        except Exception:
            log.debug("%r: abort failed", self, exc_info=True)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._queue:
                item, nbytes = self._queue.popleft()
                self._writing = True
                try:
                    await self.socket.send_text(item if isinstance(item, str) else item.encode(loop.time()))
                finally:
                    self._writing = False
                    self._backlog = max(0, self._backlog - nbytes)
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

        A close watchdog stays armed: the connection ends as soon as the close frame is handed to
        the server, but a peer that does not read can keep that frame (and the socket) buffered forever.
        """
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                await cancel_and_wait(task)
