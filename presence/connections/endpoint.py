"""Endpoint: the ``/ws`` route. It checks the Origin (HTTP 403, no upgrade), accepts, gives the
connection its :class:`~presence.connections.output.Output` and runs its
:class:`~presence.connections.session.Session`; it knows every connection open on it, so that
``stop`` closes them all (1012 on shutdown), tabs, watchers and those still in their handshake."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.websockets import WebSocket

from .. import logctx
from ..engine.commands import LeaseCommands
from ..engine.watchers import WatchIndex
from ..engine.workspaces import Workspaces
from ..settings import Settings
from ..signing import TokenKeys
from ..telemetry import Telemetry
from .admission import Admission
from .credential import Verifier
from .origin import origin_allowed
from .output import Output
from .session import Parts, Session
from .transport import TRANSPORT_SCOPE_KEY

log = logging.getLogger("presence.session")


class Endpoint:
    """``serve`` is the route's endpoint; ``watchers`` the outputs of the watchers open now."""

    def __init__(
        self, settings: Settings, admission: Admission, workspaces: Workspaces, commands: LeaseCommands,
        telemetry: Telemetry, next_conn: Callable[[], str], tokens: TokenKeys, watch_index: WatchIndex | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.next_conn = next_conn
        self.live: set[Output] = set()
        self.watchers: set[Output] = set()
        self.parts = Parts(
            settings, admission, Verifier(settings, tokens), workspaces, commands, watch_index, telemetry,
            self.watchers,
        )

    async def serve(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not origin_allowed(self.settings, origin, websocket.headers.get("host")):
            log.info("refused WebSocket from origin %r", origin)
            await websocket.close(code=1008)  # before accept: the server answers HTTP 403
            return
        await websocket.accept()
        s = self.settings
        output = Output(
            websocket, self.next_conn(), queue_size=s.send_queue_size, buffer_bytes=s.send_buffer_bytes,
            transport=websocket.scope.get(TRANSPORT_SCOPE_KEY), telemetry=self.telemetry,
        )
        logctx.conn_id.set(output.conn)  # this connection's task: every later log line carries it
        self.live.add(output)
        try:
            await Session(self.parts, websocket, output).run()
        finally:
            self.live.discard(output)

    def stop(self, close_code: int, reason: str) -> None:
        for output in list(self.live):
            output.close(close_code, reason)
