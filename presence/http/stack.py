"""Stack: the uvicorn server ``presence serve`` runs on (``presence bench`` runs its baselines on
the same, so the comparison is fair), with limits and timeouts so that no connection is kept
that does not do its part:

- a request's headers must be complete within ``PRESENCE_HELLO_TIMEOUT_MS`` (the time a new
  connection has to say what it wants) of its first byte, or of the connection opening: a client
  trickling one header line every few seconds, or connecting and sending nothing, is cut off
  (uvicorn itself waits forever for headers);
- an idle keep-alive HTTP connection is closed after :data:`KEEP_ALIVE_S`;
- a WebSocket must send a valid ``hello`` within ``PRESENCE_HELLO_TIMEOUT_MS`` (the handshake),
  and at most ``PRESENCE_MAX_CONNECTIONS`` are open at once (:mod:`presence.connections.capacity`);
- what a WebSocket's peer has not read is bounded: past ``PRESENCE_SEND_BUFFER_BYTES`` the
  connection is aborted (:class:`BoundedWebSocketProtocol`);
- plain HTTP requests beyond the WebSockets are answered 503 once more than
  :data:`HTTP_HEADROOM` connections are open on top of ``PRESENCE_MAX_CONNECTIONS``.

Per-address connection rates belong in front of the server (see docs/deployment.md, Load balancer).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ..settings import SettingsError

log = logging.getLogger("presence.stack")

HEADER_TIMEOUT_S = 5.0  # the default; presence serve uses PRESENCE_HELLO_TIMEOUT_MS
KEEP_ALIVE_S = 5
HTTP_HEADROOM = 1000
BACKLOG = 2048
DEFAULT_MAX_CONNECTIONS = 20_000


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for each request's headers."""

    header_timeout = HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # the next request of a keep-alive connection

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:  # counted from the first byte (or the connection), not re-armed
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.debug("%s: request headers not complete within %.0fs; connection closed",
                      self.client, self.header_timeout)
            self.transport.close()


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with the bytes a peer leaves unread bounded.

    The protocol answers each WebSocket PING by itself, below ASGI, writing the PONG whether or
    not the peer reads: a client that sends pings and never reads grows the server's write buffer
    without end (tens of MiB a second), before or after ``hello``, on every WebSocket route. What
    the application sends waits for the buffer to drain (uvicorn's write flow control), so only
    these answers can push it past the bound; once they do, the peer reads nothing anyway, and
    a close frame would wait behind the same unread bytes: the connection is aborted.

    (uvicorn's other ``websockets`` mode stops reading while a pong cannot be written, which bounds
    the buffer too; it runs on the ``websockets.legacy`` implementation, deprecated by both
    projects; the README's design choices say why this mode was chosen.)
    """

    send_buffer_bytes = 1024 * 1024

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        transport = self.transport
        if transport.get_write_buffer_size() > self.send_buffer_bytes and not transport.is_closing():
            log.info("%s: over %d bytes unread (PRESENCE_SEND_BUFFER_BYTES): WebSocket aborted",
                     self.client, self.send_buffer_bytes)
            transport.abort()


class RefusedAtStartup:
    """The app, but settings refused while it starts (found only once Redis answers, such as
    ``PRESENCE_REDIS_CLUSTER=true`` against a node not in cluster mode) end the start-up quietly,
    kept in ``refusal`` for ``presence serve`` to print as one line, instead of as uvicorn's
    traceback of a failed start-up."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.refusal: SettingsError | None = None

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Anything but the lifespan: the app's own awaitable, not a coroutine of this one that
        # would stay alive (a frame of a few hundred bytes) for as long as each WebSocket does.
        if scope["type"] != "lifespan":
            return self.app(scope, receive, send)
        return self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        failed: list[Message] = []

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                failed.append(message)  # its text is a traceback: sent only if the cause is not a refusal
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_failure)
        except SettingsError as exc:
            if not failed:  # not at start-up
                raise
            self.refusal = exc
            await send({"type": "lifespan.startup.failed", "message": ""})
        finally:
            if self.refusal is None:
                for message in failed:
                    await send(message)


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (uvicorn listens on it). Raises ``OSError`` (address in
    use, not an address of this machine, no permission) before anything else has started.

    With ``reuse_port`` (``SO_REUSEPORT``, Linux) several processes bind the same port and the
    kernel spreads new connections over them (``presence serve --workers``)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: Any, host: str, port: int, max_message_bytes: int, max_connections: int = DEFAULT_MAX_CONNECTIONS,
    header_timeout_s: float = HEADER_TIMEOUT_S, send_buffer_bytes: int = BoundedWebSocketProtocol.send_buffer_bytes,
) -> Any:
    """The server stack of ``presence serve`` (``presence bench`` runs its baselines on the same)."""
    import uvicorn

    protocol = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout_s})
    ws_protocol = type(
        "BoundedWebSocketProtocol", (BoundedWebSocketProtocol,), {"send_buffer_bytes": send_buffer_bytes}
    )

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        ws=ws_protocol,
        ws_max_size=max_message_bytes,
        ws_per_message_deflate=False,  # memory per tab matters more than bytes on the wire
        ws_ping_interval=None,  # the application heartbeat does this job
        interface="asgi3",  # every app here is one (detection would take a plain __call__ for ASGI 2)
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=max_connections + HTTP_HEADROOM,
        backlog=BACKLOG,
        proxy_headers=True,
    )
