"""Abort: reaching a stuck connection's transport, which ASGI does not expose."""

from __future__ import annotations

import functools
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

ABORT_SCOPE_KEY = "presence.abort"


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
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            # Duck-typed: uvloop's transports are not asyncio.WriteTransport subclasses.
            if all(callable(getattr(transport, m, None)) for m in ("abort", "is_closing", "get_write_buffer_size")):
                scope[ABORT_SCOPE_KEY] = functools.partial(_abort_if_stuck, transport)
        await self.app(scope, receive, send)


def _abort_if_stuck(transport: Any) -> bool:
    """Abort a connection that is still open or still has unsent data; True if it did."""
    if transport.is_closing() and transport.get_write_buffer_size() == 0:
        return False  # closed, or closing with nothing left to send
    transport.abort()
    return True
