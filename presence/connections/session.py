"""Session: the life of one ``/ws`` connection, from the Origin check to the last ``leave``.

1. Origin check (HTTP 403, no upgrade); accept.
2. The handshake (:mod:`presence.connections.handshake`): ``hello`` in time, a valid token, the
   workspace allowed, admitted, joined; ``welcome``.
3. Requests until the client leaves; bad frames get ``error`` (10 a minute: 4400), floods get
   ``rate_limited`` (sustained: 4429). Each request is decoded once and dispatched on its type to
   the lease commands; their errors answer that request only.
4. ``leave``: a clean close (1000/1001 from the client) shortens the lease to the grace period;
   anything else leaves it to expire at its TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from starlette.websockets import WebSocket

from .. import logctx
from ..engine.commands import LeaseCommands
from ..engine.workspaces import Workspaces
from ..errors import BadMessage, CloseError, ProtocolViolation, RateLimited, RequestError, TooMany
from ..settings import Settings
from ..signing import TokenKeys
from ..telemetry import Telemetry
from ..wire.messages import (
    MAX_META_BYTES,
    MAX_REQUEST_MESSAGE,
    Acquire,
    ClientMessage,
    Decline,
    Error,
    Hello,
    Pong,
    Release,
    Request,
    RequestId,
    Status,
    Sync,
    Takeover,
    decode_client,
)
from ..wire.watch import Watch
from .admission import Admission
from .handshake import Handshake, close_socket, payload
from .limits import TokenBucket, WindowCounter
from .origin import origin_allowed
from .tab import Tab
from .watcher import Watchers

log = logging.getLogger("presence.session")

BAD_FRAMES_PER_MINUTE = 10
CLEAN_CLOSE_CODES = (1000, 1001)


class Endpoint:
    """``/ws``: one :class:`Session` per accepted connection. ``serve`` is the route's endpoint."""

    def __init__(
        self, settings: Settings, admission: Admission, workspaces: Workspaces, commands: LeaseCommands,
        telemetry: Telemetry, next_conn: Callable[[], str], tokens: TokenKeys, watchers: Watchers | None = None,
    ) -> None:
        self.settings = settings
        self.watchers = watchers
        self.admission = admission
        self.workspaces = workspaces
        self.commands = commands
        self.telemetry = telemetry
        self.handshake = Handshake(settings, admission, workspaces, telemetry, next_conn, tokens)

    async def serve(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not origin_allowed(self.settings, origin, websocket.headers.get("host")):
            log.info("refused WebSocket from origin %r", origin)
            await websocket.close(code=1008)  # before accept: the server answers HTTP 403
            return
        await websocket.accept()
        try:
            tab = await self.handshake.run(websocket)
        except CloseError as exc:
            self.telemetry.closed(exc.close_code)
            await close_socket(websocket, exc.close_code, str(exc))
            return
        except Exception:  # a bug or an unexpected reply: this connection ends, nobody else's
            log.exception("handshake failed")
            await close_socket(websocket, 1011, "internal error")
            return
        if isinstance(tab, Watch):
            if self.watchers is None:
                await close_socket(websocket, ProtocolViolation.close_code, "watching is not served here")
                return
            await self.watchers.serve(websocket, tab)
        elif tab is not None:
            await Session(self, tab, websocket).run()


class Session:
    def __init__(self, endpoint: Endpoint, tab: Tab, websocket: WebSocket) -> None:
        self.endpoint = endpoint
        self.commands = endpoint.commands
        self.telemetry = endpoint.telemetry
        self.tab = tab
        self.websocket = websocket
        s = endpoint.settings
        self.bucket = TokenBucket(s.rate_limit, s.rate_burst)
        self.user_budget = endpoint.admission.budget(tab.user)  # shared by the user's tabs here
        self.refused = WindowCounter(s.rate_burst, 10.0)
        self.bad = WindowCounter(BAD_FRAMES_PER_MINUTE - 1, 60.0)
        self.throttled = False  # the last message was refused and told so

    async def run(self) -> None:
        tab = self.tab
        clean = False
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    code = message.get("code", 1005)
                    clean = code in CLEAN_CLOSE_CODES and tab.closing is None
                    break
                if tab.closing is not None:
                    continue  # closing: wait for the peer's close frame, ignore the rest
                try:
                    await self.handle(payload(message))
                except CloseError as exc:
                    tab.close(exc.close_code, str(exc))
        finally:
            if tab.closing is not None:
                self.telemetry.closed(tab.closing.code)
            await self.endpoint.workspaces.leave(tab, clean)
            self.endpoint.admission.dismiss(tab.user)
            await tab.stop()
            log.info("%r left (%s)", tab, "clean" if clean else "unclean")

    async def handle(self, frame: str | bytes) -> None:
        tab = self.tab
        if not self.bucket.allow():
            self._throttle("too many messages, slow down")
            return
        try:
            message = decode_client(frame)
        except msgspec.MsgspecError as exc:
            self._bad(str(exc))
            return
        if not isinstance(message, Pong):  # pongs are paced by the server and cost no Redis call
            if not self.user_budget.allow():
                self._throttle("too many messages from this user's tabs together, slow down")
                return
            self.throttled = False
        request_id = getattr(message, "id", None)
        self.telemetry.message_in(type(message).__name__.lower())
        logctx.request_id.set("" if request_id is None else str(request_id)[:64])
        try:
            await self.dispatch(message)
        except RequestError as exc:
            tab.send(Error(code=exc.code, message=str(exc), id=request_id))
        except CloseError:
            raise
        except Exception:  # a bug or an unexpected reply: this request fails, the connection stays
            log.exception("%s request failed", type(message).__name__.lower())
            tab.send(Error(code="internal", message="internal error, try again", id=request_id))

    def _throttle(self, why: str) -> None:
        if self.refused.hit():
            raise TooMany("message rate limit exceeded")
        if not self.throttled:  # one error per streak: a flood is not answered with a flood
            self.throttled = True
            self.tab.send(Error(code=RateLimited.code, message=why))

    def _bad(self, why: str, request_id: RequestId = None) -> None:
        if self.bad.hit():
            raise ProtocolViolation(f"too many bad messages; last: {why}")
        self.tab.send(Error(code=BadMessage.code, message=why, id=request_id))

    async def dispatch(self, message: ClientMessage) -> None:
        commands, tab = self.commands, self.tab
        match message:
            case Pong(n=n):
                tab.pong(n)
            case Acquire(id=rid, wait=wait, lock=lock):
                tab.send(await commands.acquire(tab, rid, wait, lock))
            case Takeover(id=rid, lock=lock):
                tab.send(await commands.takeover(tab, rid, lock))
            case Release(id=rid, lock=lock):
                tab.send(await commands.release(tab, rid, lock))
            case Status(id=rid, active=active, meta=meta):
                if isinstance(meta, dict) and len(msgspec.json.encode(meta)) > MAX_META_BYTES:
                    self._bad(f"meta is larger than {MAX_META_BYTES} bytes", rid)
                    return
                await commands.status(tab, active, meta)
            case Request(id=rid, message=text, lock=lock):
                if len(text) > MAX_REQUEST_MESSAGE:
                    self._bad(f"message is longer than {MAX_REQUEST_MESSAGE} characters", rid)
                    return
                tab.send(await commands.request(tab, rid, text, lock))
            case Decline(id=rid, lock=lock):
                tab.send(await commands.decline(tab, rid, lock))
            case Sync():
                commands.sync(tab)
            case Hello():
                self._bad("hello was already received")
