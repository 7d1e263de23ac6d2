"""Transport: what ASGI does not expose of a WebSocket connection, reached through the server's
protocol object (uvicorn's), duck-typed and optional:

- how many bytes the server holds for the peer below ASGI (its transport's write buffer), counted
  with what the connection still queues itself against ``PRESENCE_SEND_BUFFER_BYTES``;
- aborting a connection whose close cannot get through (a peer that stopped reading);
- writing a frame straight to the socket (one encoded once for many connections, or any message
  of a connection that has nothing queued), without a task or ASGI ``send`` in between.

Without them (another server) only the connection's own queue counts, nothing is aborted, and
every frame takes the ASGI ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.protocol import OPEN

TRANSPORT_SCOPE_KEY = "presence.transport"
_TRANSPORT = ("abort", "is_closing", "get_write_buffer_size")
_PROTOCOL = ("conn", "handshake_complete", "close_sent", "writable")


class Transport(Protocol):
    def buffered(self) -> int:
        """Bytes written to the connection that the peer has not taken yet."""
        ...

    def abort(self) -> bool:
        """Drop the connection if it is still open or still has unsent data; True if it did."""
        ...

    def write(self, frame: bytes) -> bool:
        """Write a whole WebSocket frame if nothing is in the way; False: take the ASGI ``send``."""
        ...


class ServerTransport:
    """:class:`Transport` over uvicorn's protocol object and its asyncio transport."""

    __slots__ = ("_direct", "_protocol", "_transport")

    def __init__(self, protocol: Any, transport: Any) -> None:
        self._protocol = protocol
        self._transport = transport
        self._direct = all(hasattr(protocol, a) for a in _PROTOCOL)

    def buffered(self) -> int:
        return int(self._transport.get_write_buffer_size())

    def abort(self) -> bool:
        transport = self._transport
        if transport.is_closing() and transport.get_write_buffer_size() == 0:
            return False  # closed, or closing with nothing left to send
        transport.abort()
        return True

    def write(self, frame: bytes) -> bool:
        """Only when the connection is open, not closing, the transport not paused and its buffer
        empty (what waits there goes first)."""
        protocol, transport = self._protocol, self._transport
        if (
            not self._direct or not protocol.handshake_complete or protocol.close_sent
            or not protocol.writable.is_set() or protocol.conn.state is not OPEN or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        transport.write(frame)
        return True


class ExposeTransport:
    """ASGI middleware: puts a :class:`Transport` of the server's connection into a WebSocket's
    scope, and hands a WebSocket at ``path`` straight to ``endpoint``.

    Both to keep what each open connection holds small. Starlette's exception middleware, router
    and route wrappers would stay alive on every connection for as long as it is open (their
    coroutines and the handler lookups they build, about 3 KiB), and do nothing for this route,
    which raises no HTTP or WebSocket exception; under a root path the router matches as usual.
    And this middleware is a plain function that returns the awaitable it hands on: a coroutine
    of its own would be one more frame per connection."""

    def __init__(
        self, app: ASGIApp, path: str | None = None, endpoint: Callable[[WebSocket], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "websocket":
            protocol = getattr(send, "__self__", None)
            transport = getattr(protocol, "transport", None)
            # Duck-typed: uvloop's transports are not asyncio.WriteTransport subclasses.
            if all(callable(getattr(transport, m, None)) for m in _TRANSPORT):
                scope[TRANSPORT_SCOPE_KEY] = ServerTransport(protocol, transport)
            if self.endpoint is not None and scope["path"] == self.path and not scope.get("root_path"):
                return self.endpoint(WebSocket(scope, receive, send))
        return self.app(scope, receive, send)
