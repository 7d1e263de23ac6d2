"""Session: the one loop of a ``/ws`` connection, from its accepted upgrade to its end.

1. The first frame, within ``PRESENCE_HELLO_TIMEOUT_MS`` (4408), decides the role
   (:mod:`~presence.connections.handshake`): ``hello`` a tab, ``watch`` a watcher. Its token is
   verified (4401), a tab's workspace allowed by it (4403), the user admitted (4429; 1012 while
   stopping); then the tab joins its workspace (1013 when Redis is unavailable) or the watcher is
   told its leases. A failure after admission undoes everything done so far: nothing is left behind.
2. Every later frame goes through the same steps, whatever the role: the connection's rate and
   the user's budget (:mod:`~presence.connections.throttle`), decoding by the role (``error``
   ``bad_message``; ten a minute: 4400), then the role's handler, or for ``refresh`` the
   connection's :class:`~presence.connections.credential.Credential`. A request's error answers
   that request only.
3. Once a close is requested (by the server for any reason, by the token running out), frames are
   ignored until the connection ends; then the role ends (a tab leaves its workspace, a watcher
   stops watching) and the admission is returned.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from starlette.websockets import WebSocket

from .. import logctx
from ..engine.commands import LeaseCommands
from ..engine.watchers import WatchIndex
from ..engine.workspaces import Workspaces
from ..errors import BadMessage, CloseError, ProtocolViolation, RequestError, TimedOut
from ..settings import Settings
from ..telemetry import Telemetry
from ..wire.messages import Error, Hello, Refresh, Refreshed
from .admission import Admission
from .credential import Credential, Verifier
from .handshake import first_frame
from .output import Output
from .role import Role
from .tab_role import TabRole
from .throttle import Throttle
from .watcher_role import WatcherRole

log = logging.getLogger("presence.session")

CLEAN_CLOSE_CODES = (1000, 1001)
M = TypeVar("M")


def payload(message: Any) -> str | bytes:
    """The frame of an ASGI ``websocket.receive`` message."""
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


@dataclass(frozen=True, slots=True)
class Parts:
    """What every session uses, built once by the :class:`~presence.connections.endpoint.Endpoint`:
    ``watchers`` is the set of watchers' outputs open now (a session adds and removes its own)."""

    settings: Settings
    admission: Admission
    verifier: Verifier
    workspaces: Workspaces
    commands: LeaseCommands
    watch_index: WatchIndex | None
    telemetry: Telemetry
    watchers: set[Output]


class Session:
    __slots__ = ("output", "parts", "role", "throttle", "websocket")

    def __init__(self, parts: Parts, websocket: WebSocket, output: Output) -> None:
        self.parts = parts
        self.websocket = websocket
        self.output = output
        self.role: TabRole | WatcherRole | None = None
        self.throttle: Throttle | None = None

    async def run(self) -> None:
        output = self.output
        clean = False
        try:
            message = await self._first()
            while message["type"] != "websocket.disconnect":
                if output.closing is None:  # closing: wait for the end, ignore the rest
                    await self._frame(payload(message))
                message = await self.websocket.receive()
            clean = message.get("code", 1005) in CLEAN_CLOSE_CODES and output.closing is None
        finally:
            await self._end(clean)

    async def _first(self) -> Any:
        """The first message; a connection that sends no frame in time is closed (and the next
        message is its end: the output's watchdog sees to it that it comes)."""
        timeout_ms = self.parts.settings.hello_timeout_ms
        try:
            return await asyncio.wait_for(self.websocket.receive(), timeout_ms / 1000)
        except TimeoutError:
            self.output.close(TimedOut.close_code, f"no hello within {timeout_ms} ms")
        return await self.websocket.receive()

    async def _frame(self, frame: str | bytes) -> None:
        try:
            role, throttle = self.role, self.throttle
            if role is None or throttle is None:
                await self._open(frame)
            elif isinstance(role, TabRole):  # (two calls: each role decodes its own message types)
                await self._request(role, throttle, frame)
            else:
                await self._request(role, throttle, frame)
        except CloseError as exc:
            self.output.close(exc.close_code, str(exc))
        except Exception:  # a bug or an unexpected reply: this connection ends, nobody else's
            log.exception("handshake failed" if self.role is None else "frame failed")
            self.output.close(1011, "internal error")

    async def _open(self, frame: str | bytes) -> None:
        e = self.parts
        first = first_frame(frame)
        identity = await e.verifier.verify(first.token)
        index = e.watch_index
        if isinstance(first, Hello):
            identity.check_workspace(first.workspace)
        elif index is None:
            raise ProtocolViolation("watching is not served here")
        e.admission.admit(identity.user)
        try:  # from here on, a failure of any kind undoes everything done so far
            if isinstance(first, Hello):
                credential = Credential(identity, self.output, e.verifier, first.workspace)
                self.role = await TabRole.join(first, credential, self.output, e.workspaces, e.commands)
            else:
                assert index is not None
                credential = Credential(identity, self.output, e.verifier)
                self.role = await WatcherRole.watch(first, credential, self.output, index, e.settings)
                e.watchers.add(self.output)
        except BaseException:
            e.admission.dismiss(identity.user)
            raise
        s = e.settings
        self.throttle = Throttle(s.rate_limit, s.rate_burst, e.admission.budget(identity.user), self.output.send)

    async def _request(self, role: Role[M], throttle: Throttle, frame: str | bytes) -> None:
        if not throttle.admit():
            return
        try:
            message = role.decode(frame)
        except msgspec.MsgspecError as exc:
            throttle.bad(str(exc))
            return
        if not throttle.charge(role.cost(message)):
            return
        request_id = getattr(message, "id", None)
        kind = type(message).__name__.lower()
        self.parts.telemetry.message_in(kind)
        logctx.request_id.set("" if request_id is None else str(request_id)[:64])
        try:
            if isinstance(message, Refresh):
                expires_in_ms = await role.credential.refresh(message.token)
                self.output.send(Refreshed(id=request_id, expires_in_ms=expires_in_ms))
            else:
                await role.handle(message)
        except BadMessage as exc:
            throttle.bad(str(exc), request_id)
        except RequestError as exc:
            self.output.send(Error(code=exc.code, message=str(exc), id=request_id))
        except CloseError:
            raise
        except Exception:  # a bug or an unexpected reply: this request fails, the connection stays
            log.exception("%s request failed", kind)
            self.output.send(Error(code="internal", message="internal error, try again", id=request_id))

    async def _end(self, clean: bool) -> None:
        e, role, output = self.parts, self.role, self.output
        try:
            if role is not None:
                try:
                    await role.end(clean)
                finally:
                    e.watchers.discard(output)
                    e.admission.dismiss(role.credential.identity.user)
            if output.closing is not None:
                e.telemetry.closed(output.closing.code)
        finally:
            await output.stop()
