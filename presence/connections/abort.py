"""Abort: what ASGI does not expose of a connection, reached through the server's protocol object
(uvicorn's), duck-typed and optional: aborting a stuck connection, and writing a frame encoded
once for many tabs straight to the socket. Without them (another server) the tab's watchdog does
nothing and every frame takes the ASGI ``send``."""

from __future__ import annotations

import functools
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.protocol import OPEN

ABORT_SCOPE_KEY = "presence.abort"
DIRECT_SCOPE_KEY = "presence.direct"
_PROTOCOL = ("transport", "conn", "handshake_complete", "close_sent", "writable")


class ExposeAbort:
    """ASGI middleware: puts the server connection's ``abort`` into a WebSocket's scope.

    A close frame to a client that stopped reading waits behind its full send buffer forever;
    the tab's close watchdog aborts such a connection instead. ASGI has no abort, so this reaches
    the transport of the server's protocol object (uvicorn) when there is one; without it the
    watchdog does nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            protocol = getattr(send, "__self__", None)
            transport = getattr(protocol, "transport", None)
            # Duck-typed: uvloop's transports are not asyncio.WriteTransport subclasses.
            if all(callable(getattr(transport, m, None)) for m in ("abort", "is_closing", "get_write_buffer_size")):
                scope[ABORT_SCOPE_KEY] = functools.partial(_abort_if_stuck, transport)
                if all(hasattr(protocol, a) for a in _PROTOCOL):
                    scope[DIRECT_SCOPE_KEY] = functools.partial(_write_direct, protocol)
        await self.app(scope, receive, send)


def _abort_if_stuck(transport: Any) -> bool:
    """Abort a connection that is still open or still has unsent data; True if it did."""
    if transport.is_closing() and transport.get_write_buffer_size() == 0:
        return False  # closed, or closing with nothing left to send
    transport.abort()
    return True


def _write_direct(protocol: Any, frame: bytes) -> bool:
    """Write ``frame`` (a whole WebSocket frame, see :func:`~presence.wire.frames.text_frame`) if nothing is in the way:
    the connection open, not closing, the transport not paused and its buffer empty (what waits
    there goes first). False: take the ASGI ``send`` instead."""
    transport = protocol.transport
    if (
        not protocol.handshake_complete or protocol.close_sent or not protocol.writable.is_set()
        or protocol.conn.state is not OPEN or transport is None or transport.is_closing()
        or transport.get_write_buffer_size()
    ):
        return False
    transport.write(frame)
    return True

