"""Handshake: from an accepted WebSocket to a tab in its workspace.

``hello`` within ``hello_timeout_ms`` (4408), decodable (4400), valid ids (4400), a valid token
(4401), the workspace allowed by it (4403), admitted (4429; 1012 while stopping), joined (1013
when Redis is unavailable). A handshake that fails after admission, for whatever reason, undoes
everything it did: the admission, the tab's writer, and (in :meth:`Workspaces.join`) the
workspace entry, the subscription and the Redis presence entry, so no ghost is left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.websockets import WebSocket

from .. import auth, logctx
from ..engine.workspaces import Workspaces
from ..errors import BadToken, ProtocolViolation, TimedOut
from ..settings import Settings
from ..signing import TokenKeys
from ..telemetry import Telemetry
from ..wire.messages import decode_client, valid_tab, valid_workspace
from ..wire.watch import Watch, decode_first
from .abort import ABORT_SCOPE_KEY, DIRECT_SCOPE_KEY
from .admission import Admission
from .tab import Tab

log = logging.getLogger("presence.session")


def payload(message: Any) -> str | bytes:
    """The frame of an ASGI ``websocket.receive`` message."""
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def close_socket(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason[:120])
    except Exception:  # the peer may be gone already
        log.debug("close failed", exc_info=True)


class Handshake:
    def __init__(
        self, settings: Settings, admission: Admission, workspaces: Workspaces, telemetry: Telemetry,
        next_conn: Callable[[], str], tokens: TokenKeys,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.admission = admission
        self.workspaces = workspaces
        self.telemetry = telemetry
        self.next_conn = next_conn

    async def run(self, websocket: WebSocket) -> Tab | Watch | None:
        """The joined tab, the first frame of a watcher, or None when the client left first.
        Raises ``CloseError``."""
        settings = self.settings
        try:
            message = await asyncio.wait_for(websocket.receive(), settings.hello_timeout_ms / 1000)
        except TimeoutError:
            raise TimedOut(f"no hello within {settings.hello_timeout_ms} ms") from None
        if message["type"] == "websocket.disconnect":
            return None
        frame = payload(message)
        try:
            hello = decode_first(frame)
        except msgspec.MsgspecError as exc:
            try:
                decode_client(frame)
            except msgspec.MsgspecError:
                raise ProtocolViolation(str(exc)) from None
            raise ProtocolViolation("the first message must be hello") from None  # (or watch)
        if isinstance(hello, Watch):
            return hello  # a watcher (a list page): served by presence.connections.watcher
        if not valid_workspace(hello.workspace):
            raise ProtocolViolation(
                "invalid workspace id: 1-200 characters of A-Z a-z 0-9 . _ ~ : @ / -, no . or .. segment"
            )
        if not valid_tab(hello.tab):
            raise ProtocolViolation("invalid tab id: 1-128 characters of A-Z a-z 0-9 . _ ~ : @ -")
        if not hello.token:
            raise BadToken("missing token")
        key = await self.tokens.key_for(hello.token)
        identity = auth.verify(hello.token, key, settings.token_issuer, settings.token_audience)
        identity.check_workspace(hello.workspace)
        self.admission.admit(identity.user)
        tab: Tab | None = None
        try:  # from here on, a failure of any kind undoes everything done so far
            tab = Tab(
                websocket, self.next_conn(), identity.user, hello.workspace, hello.tab,
                may_take_over=identity.may_take_over, queue_size=settings.send_queue_size,
                abort=websocket.scope.get(ABORT_SCOPE_KEY), telemetry=self.telemetry,
            direct=websocket.scope.get(DIRECT_SCOPE_KEY),
            )
            logctx.conn_id.set(tab.conn)  # this connection's task: every later log line carries it
            tab.start()
            await self.workspaces.join(tab, read_only=identity.read_only)  # undoes its own part when it fails
        except BaseException:
            self.admission.dismiss(identity.user)
            if tab is not None:
                await tab.stop()
            raise
        log.info("%r joined (client %r)", tab, (hello.client or "?")[:80])  # the client's words: quoted, bounded
        return tab
