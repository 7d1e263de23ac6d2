"""Capacity: at most ``PRESENCE_MAX_CONNECTIONS`` WebSockets open in this process at once.

Every open WebSocket costs memory and a file descriptor whether or not it ever sends a valid
``hello``, so the count covers all of them (tabs, connections still in their handshake, the
dashboard's feed) from the upgrade request until the connection ends. Beyond the limit a new
WebSocket is accepted and closed at once with 1013 ("try again later"): clients back off and
reconnect, through the load balancer, to a process with room. The refusal costs no Redis call and
no task beyond the one uvicorn runs for the request.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Overloaded
from ..telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger("presence.capacity")

LOG_EVERY_S = 10.0  # one warning per streak of refusals, not one per refused connection


class ConnectionLimit:
    """ASGI middleware. ``open`` is the number of WebSockets open now."""

    def __init__(self, app: ASGIApp, max_connections: int, telemetry: Telemetry = NO_TELEMETRY) -> None:
        self.app = app
        self.max_connections = max_connections
        self.telemetry = telemetry
        self.open = 0
        self.refused = 0
        self._logged_at = -LOG_EVERY_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        if self.open >= self.max_connections:
            await self._refuse(receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1

    async def _refuse(self, receive: Receive, send: Send) -> None:
        self.refused += 1
        self.telemetry.closed(Overloaded.close_code)
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("%d WebSockets open (PRESENCE_MAX_CONNECTIONS): refusing new ones with %d (%d so far)",
                        self.open, Overloaded.close_code, self.refused)
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client is gone already
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": Overloaded.close_code, "reason": "server full, retry later"})
