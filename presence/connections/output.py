"""Output: one connection's outgoing frames, from its upgrade to its close.

Nothing ever awaits a client's socket but the output's own writer task. A message goes straight
to the socket when nothing waits before it and the server takes it at once
(:meth:`~presence.connections.transport.Transport.write`: the connection open, its write buffer
empty); otherwise it is queued, and a writer task sends the queue in order. The writer runs only
while something is queued: an idle connection holds neither a queue nor a task. A connection
whose backlog outgrows its bounds (a client that stopped reading) is closed with 1013 without slowing anyone else down.
The backlog is what waits in the queue plus what the server holds below ASGI for the peer
(:mod:`~presence.connections.transport`), at most ``PRESENCE_SEND_BUFFER_BYTES`` bytes and
``PRESENCE_SEND_QUEUE_SIZE`` messages. A message is always taken when nothing waits, whatever
its size: the bound is on the backlog.

Two guards keep a stuck peer from costing more than a bounded time:

- a message that carries a lease's time left (``acquired``, ``ping``) and has to wait is stamped
  when the writer sends it, not when it was queued: time spent waiting behind a slow socket (or in a paused
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
from ..wire.frames import text_frame
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

    __slots__ = (
        "_backlog", "_buffer_bytes", "_close_timeout", "_closer", "_dead", "_queue", "_queue_size", "_telemetry",
        "_transport", "_watchdog", "_writer", "_writing", "close_sent", "closing", "conn", "name", "socket",
    )

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
        # Made when something has to wait, dropped when the writer is done with it: an idle
        # connection holds no queue and no task (a deque and a task cost over a KiB each).
        self._queue: deque[tuple[str | _Timed, int]] | None = None
        self._backlog = 0  # bytes queued, and of the message being handed to the server
        self._queue_size = queue_size
        self._buffer_bytes = buffer_bytes
        self._transport = transport
        self._close_timeout = close_timeout
        self._telemetry = telemetry
        self._writer: asyncio.Task[None] | None = None  # runs while something is queued or being sent
        self._closer: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._writing = False  # the writer is handing a message to the server
        self._dead = False  # a send failed or the connection is over: no writer starts again

    def __repr__(self) -> str:
        return self.name

    @property
    def buffered(self) -> int:
        """Bytes waiting for the peer: queued here, and held by the server below ASGI."""
        return self._backlog + (self._transport.buffered() if self._transport is not None else 0)

    def send(self, message: ServerMessage) -> None:
        """Send or queue a message; never blocks. A backlog over the bounds closes the connection with 1013."""
        if self.closing is not None:
            return
        text = messages.encode(message)
        if self._write_now(text, None):
            self._telemetry.message_out(message)
            return
        item: str | _Timed = text
        if isinstance(message, Acquired | Ping) and (message.ttl_ms is not None or (isinstance(message, Ping)
                                                     and message.ttls)):
            item = _Timed(message, asyncio.get_running_loop().time())  # its lease times count down while it waits
        if self._enqueue(item, size(text)):
            self._telemetry.message_out(message)

    def send_frame(self, text: str, frame: bytes | None = None) -> bool:
        """Send a message already encoded (counted by whoever encoded it): ``frame`` is its whole
        WebSocket frame, if the caller has it. True if sent or queued."""
        if self.closing is not None:
            return False
        return self._write_now(text, frame) or self._enqueue(text, size(text))

    def _write_now(self, text: str, frame: bytes | None) -> bool:
        """Straight to the socket when nothing waits before it (no writer: nothing queued or being
        sent) and the server takes it at once (:meth:`Transport.write`); False: it has to wait."""
        transport = self._transport
        if self._writer is not None or self._dead or transport is None:
            return False
        return transport.write(text_frame(text.encode()) if frame is None else frame)

    def _enqueue(self, item: str | _Timed, nbytes: int) -> bool:
        if self.closing is not None:
            return False
        waiting = self.buffered
        queue = self._queue
        if waiting and ((queue is not None and len(queue) >= self._queue_size)
                        or waiting + nbytes > self._buffer_bytes):
            self._overflow(waiting + nbytes)
            return False
        if queue is None:
            queue = self._queue = deque()
        queue.append((item, nbytes))
        self._backlog += nbytes
        self._start_writer()
        return True

    def _start_writer(self) -> None:
        if self._writer is None and not self._dead:
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"writer {self.conn}")
            self._writer.add_done_callback(self._writer_done)

    def _overflow(self, nbytes: int) -> None:
        queued = len(self._queue) if self._queue is not None else 0
        log.warning("%r: %s (%d bytes, %d messages), closing as a slow consumer (PRESENCE_SEND_BUFFER_BYTES %d, "
                    "PRESENCE_SEND_QUEUE_SIZE %d)", self, QUEUE_FULL, nbytes, queued + 1,
                    self._buffer_bytes, self._queue_size)
        self._queue = None
        self._backlog = 0
        self.closing = Closing(Overloaded.close_code, "slow consumer: send queue overflow")
        # The writer is stuck in a send to this client: do not wait behind it.
        if self._writer is not None:
            self._writer.cancel()
        if self._transport is not None and self._transport.buffered() > self._buffer_bytes:
            self._abort("its unread data is over PRESENCE_SEND_BUFFER_BYTES: not even the close can get through")
            return
        if not self._dead:
            self._closer = asyncio.get_running_loop().create_task(self._send_close(), name=f"close {self.conn}")
        self._arm_watchdog()

    def close(self, code: int, reason: str = "") -> None:
        """Flush what is queued, then close. Idempotent."""
        if self.closing is not None:
            return
        self.closing = Closing(code, reason[:120])
        self._start_writer()  # a running writer sends the close once the queue is empty
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
        """Send what is queued, then the close if one was requested; then end (the next message
        that has to wait starts another)."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                item, nbytes = self._queue.popleft()
                self._writing = True
                try:
                    await self.socket.send_text(item if isinstance(item, str) else item.encode(loop.time()))
                finally:
                    self._writing = False
                    self._backlog = max(0, self._backlog - nbytes)
            self._queue = None
            if self.closing is not None:
                await self._send_close()
        except BaseException:
            self._dead = True  # a failed send: the connection is broken (cancelled: it is closing or over)
            raise
        finally:
            self._writer = None

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
        """Stop the writer (the connection is over); nothing is written after this. Idempotent.

        A close watchdog stays armed: the connection ends as soon as the close frame is handed to
        the server, but a peer that does not read can keep that frame (and the socket) buffered forever.
        """
        self._dead = True
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                await cancel_and_wait(task)
