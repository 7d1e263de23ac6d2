"""Session: the life of one ``/ws`` connection, from the Origin check to the last ``leave``.

1. Origin check (HTTP 403, no upgrade); accept.
2. ``hello`` within ``hello_timeout_ms`` (4408), decodable (4400), valid token (4401), workspace
   allowed (4403), under the per-user tab limit (4429), Redis available (1013); ``welcome``.
3. Requests until the client leaves; bad frames get ``error`` (10 a minute: 4400), floods get
   ``rate_limited`` (sustained: 4429).
4. ``leave``: a clean close (1000/1001 from the client) shortens the lease to the grace period;
   anything else leaves it to expire at its TTL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from . import auth, logctx
from .errors import BadMessage, BadToken, CloseError, ProtocolViolation, RateLimited, RequestError, TimedOut, TooMany
from .hub import Hub
from .limits import TokenBucket, WindowCounter
from .protocol import (
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
    Status,
    Takeover,
    decode_client,
    valid_tab,
    valid_workspace,
)
from .settings import Settings
from .tab import Tab

log = logging.getLogger("presence.session")

BAD_FRAMES_PER_MINUTE = 10
CLEAN_CLOSE_CODES = (1000, 1001)


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


def origin_allowed(settings: Settings, origin: str | None, host: str | None) -> bool:
    if origin is None:
        return True  # not a browser: browsers always send Origin on WebSocket upgrades
    origin = origin.rstrip("/")
    if settings.allowed_origins:
        return "*" in settings.allowed_origins or origin in settings.allowed_origins
    if settings.dev_mode:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


async def serve(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    settings = hub.settings
    if not origin_allowed(settings, websocket.headers.get("origin"), websocket.headers.get("host")):
        log.info("refused WebSocket from origin %r", websocket.headers.get("origin"))
        await websocket.close(code=1008)  # before accept: the server answers HTTP 403
        return
    await websocket.accept()
    try:
        tab = await _handshake(websocket, hub)
    except CloseError as exc:
        hub.metrics.closed(exc.close_code)
        await _close(websocket, exc.close_code, str(exc))
        return
    except Exception:  # a bug or an unexpected Redis reply: this connection ends, nobody else's
        log.exception("handshake failed")
        await _close(websocket, 1011, "internal error")
        return
    if tab is None:
        return
    await Session(hub, tab, websocket).run()


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason[:120])
    except Exception:  # the peer may be gone already
        log.debug("close failed", exc_info=True)


async def _handshake(websocket: WebSocket, hub: Hub) -> Tab | None:
    settings = hub.settings
    try:
        message = await asyncio.wait_for(websocket.receive(), settings.hello_timeout_ms / 1000)
    except TimeoutError:
        raise TimedOut(f"no hello within {settings.hello_timeout_ms} ms") from None
    if message["type"] == "websocket.disconnect":
        return None
    try:
        hello = decode_client(_payload(message))
    except msgspec.MsgspecError as exc:
        raise ProtocolViolation(str(exc)) from None
    if not isinstance(hello, Hello):
        raise ProtocolViolation("the first message must be hello")
    if not valid_workspace(hello.workspace):
        raise ProtocolViolation("invalid workspace id: 1-200 characters of A-Z a-z 0-9 . _ ~ : @ / -")
    if not valid_tab(hello.tab):
        raise ProtocolViolation("invalid tab id: 1-128 characters of A-Z a-z 0-9 . _ ~ : @ -")
    if not hello.token:
        raise BadToken("missing token")
    identity = auth.verify(hello.token, settings.signing_key)
    identity.check_workspace(hello.workspace)
    hub.admit(identity.user)
    tab = Tab(
        websocket, hub.next_conn(), identity.user, hello.workspace, hello.tab,
        may_take_over=identity.may_take_over, queue_size=settings.send_queue_size,
        abort=websocket.scope.get(ABORT_SCOPE_KEY),
    )
    tab.on_send = hub.metrics.message_out
    logctx.conn_id.set(tab.conn)  # this connection's task: every later log line carries it
    tab.start()
    try:
        await hub.join(tab)
    except BaseException:
        hub.dismiss(identity.user)
        await tab.stop()
        raise
    log.info("%r joined (client %r)", tab, (hello.client or "?")[:80])  # the client's words: quoted, bounded
    return tab


def _payload(message: Any) -> str | bytes:
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


class Session:
    def __init__(self, hub: Hub, tab: Tab, websocket: WebSocket) -> None:
        self.hub = hub
        self.tab = tab
        self.websocket = websocket
        s = hub.settings
        self.bucket = TokenBucket(s.rate_limit, s.rate_burst)
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
                    await self.handle(_payload(message))
                except CloseError as exc:
                    tab.close(exc.close_code, str(exc))
        finally:
            if tab.closing is not None:
                self.hub.metrics.closed(tab.closing.code)
            await self.hub.leave(tab, clean)
            self.hub.dismiss(tab.user)
            await tab.stop()
            log.info("%r left (%s)", tab, "clean" if clean else "unclean")

    async def handle(self, payload: str | bytes) -> None:
        tab = self.tab
        if not self.bucket.allow():
            if self.refused.hit():
                raise TooMany("message rate limit exceeded")
            if not self.throttled:  # one error per streak: a flood is not answered with a flood
                self.throttled = True
                tab.send(Error(code=RateLimited.code, message="too many messages, slow down"))
            return
        self.throttled = False
        try:
            message = decode_client(payload)
        except msgspec.MsgspecError as exc:
            self._bad(str(exc))
            return
        request_id = getattr(message, "id", None)
        self.hub.metrics.message_in(type(message).__name__.lower())
        logctx.request_id.set("" if request_id is None else str(request_id)[:64])
        try:
            await self.dispatch(message)
        except RequestError as exc:
            tab.send(Error(code=exc.code, message=str(exc), id=request_id))
        except CloseError:
            raise
        except Exception:  # a bug or an unexpected Redis reply (OOM, READONLY...): this request fails
            log.exception("%s request failed", type(message).__name__.lower())
            tab.send(Error(code="internal", message="internal error, try again", id=request_id))

    def _bad(self, why: str, request_id: object = None) -> None:
        if self.bad.hit():
            raise ProtocolViolation(f"too many bad messages; last: {why}")
        self.tab.send(Error(code=BadMessage.code, message=why, id=request_id))  # type: ignore[arg-type]

    async def dispatch(self, message: ClientMessage) -> None:
        hub, tab = self.hub, self.tab
        match message:
            case Pong(n=n):
                tab.pong(n)
            case Acquire(id=rid, wait=wait):
                tab.send(await hub.requests.acquire(tab, rid, wait))
            case Takeover(id=rid):
                tab.send(await hub.requests.takeover(tab, rid))
            case Release(id=rid):
                tab.send(await hub.requests.release(tab, rid))
            case Status(id=rid, active=active, meta=meta):
                if meta is not None and len(msgspec.json.encode(meta)) > MAX_META_BYTES:
                    self._bad(f"meta is larger than {MAX_META_BYTES} bytes", rid)
                    return
                if active is not None:
                    tab.active = active
                if meta is not None:
                    tab.meta = meta
                await hub.requests.status(tab)
            case Request(id=rid, message=text):
                if len(text) > MAX_REQUEST_MESSAGE:
                    self._bad(f"message is longer than {MAX_REQUEST_MESSAGE} characters", rid)
                    return
                tab.send(await hub.requests.request(tab, rid, text))
            case Decline(id=rid):
                tab.send(await hub.requests.decline(tab, rid))
            case Hello():
                self._bad("hello was already received")
