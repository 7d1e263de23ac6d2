"""Watcher: the life of one ``/ws`` connection whose first frame was ``watch`` (a list page).

It is checked like a tab (a valid token, 4401; admitted against the user's connection limit,
4429; 1012 while stopping), but it joins no workspace: it is nobody's viewer and holds no lease.
The token's ``ws`` claim applies per workspace: the ones it does not allow are left out of
``leases`` and named in an ``error`` with code ``forbidden``. Then it gets ``ping`` every
heartbeat (4408 when it stops answering), its frames are rate limited like a tab's (``error``
``rate_limited``, 4429 when sustained; ten bad frames a minute: 4400), and ``watch`` again
replaces the set. The watching itself is :class:`~presence.engine.watchers.WatchIndex`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
from starlette.websockets import WebSocket

from .. import auth
from ..engine.watchers import WatchIndex
from ..errors import (
    BadMessage,
    BadToken,
    CloseError,
    ProtocolViolation,
    RateLimited,
    RequestError,
    TimedOut,
    TooMany,
    WorkspaceForbidden,
)
from ..settings import Settings
from ..signing import TokenKeys
from ..telemetry import Telemetry
from ..wire.messages import Error, Pong, valid_tab, valid_workspace
from ..wire.watch import MAX_WATCHED, Forbidden, Leases, Watch, decode_watcher, encode
from .abort import ABORT_SCOPE_KEY
from .admission import Admission
from .handshake import close_socket, payload
from .limits import TokenBucket, WindowCounter
from .tab import Tab

log = logging.getLogger("presence.watcher")

BAD_FRAMES_PER_MINUTE = 10


def check_ids(watch: Watch) -> str | None:
    """What is wrong with a ``watch`` frame's ids, or None."""
    if len(watch.workspaces) > MAX_WATCHED:
        return f"at most {MAX_WATCHED} workspaces per watch"
    for ws in watch.workspaces:
        if not valid_workspace(ws):
            return f"invalid workspace id {ws[:200]!r}: 1-200 characters of A-Z a-z 0-9 . _ ~ : @ / -"
    if watch.tab is not None and not valid_tab(watch.tab):
        return "invalid tab id: 1-128 characters of A-Z a-z 0-9 . _ ~ : @ -"
    return None


class Watchers:
    """Serves watcher connections; ``stop`` closes them all (1012 on shutdown)."""

    def __init__(
        self, settings: Settings, admission: Admission, index: WatchIndex, telemetry: Telemetry,
        next_conn: Callable[[], str], tokens: TokenKeys,
    ) -> None:
        self.settings = settings
        self.admission = admission
        self.index = index
        self.telemetry = telemetry
        self.next_conn = next_conn
        self.tokens = tokens
        self.live: set[Tab] = set()

    def __len__(self) -> int:
        return len(self.live)

    async def serve(self, websocket: WebSocket, first: Watch) -> None:
        try:
            if (problem := check_ids(first)) is not None:
                raise ProtocolViolation(problem)
            if not first.token:
                raise BadToken("missing token")
            key = await self.tokens.key_for(first.token)
            s = self.settings
            identity = auth.verify(first.token, key, s.token_issuer, s.token_audience)
            self.admission.admit(identity.user)
        except CloseError as exc:
            self.telemetry.closed(exc.close_code)
            await close_socket(websocket, exc.close_code, str(exc))
            return
        conn = Tab(
            websocket, self.next_conn(), identity.user, "", first.tab or "watch",
            queue_size=self.settings.send_queue_size, abort=websocket.scope.get(ABORT_SCOPE_KEY),
            telemetry=self.telemetry,
        )
        conn.start()
        self.live.add(conn)
        try:
            await WatchSession(self, conn, identity, websocket).run(first)
        finally:
            self.live.discard(conn)
            self.index.unwatch(conn)
            self.admission.dismiss(identity.user)
            await conn.stop()

    def stop(self, close_code: int, reason: str) -> None:
        for conn in list(self.live):
            conn.close(close_code, reason)


class WatchSession:
    def __init__(self, watchers: Watchers, conn: Tab, identity: auth.Identity, websocket: WebSocket) -> None:
        self.watchers = watchers
        self.index = watchers.index
        self.conn = conn
        self.identity = identity
        self.websocket = websocket
        s = watchers.settings
        self.settings = s
        self.bucket = TokenBucket(s.rate_limit, s.rate_burst)
        self.user_budget = watchers.admission.budget(identity.user)
        self.refused = WindowCounter(s.rate_burst, 10.0)
        self.bad = WindowCounter(BAD_FRAMES_PER_MINUTE - 1, 60.0)
        self.throttled = False

    async def run(self, first: Watch) -> None:
        conn = self.conn
        pinger = asyncio.get_running_loop().create_task(self._ping(), name=f"pings {conn.conn}")
        try:
            await self._answer(first)
            log.info("watcher %s of %s watches %d workspaces", conn.conn, conn.user.id, len(first.workspaces))
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if conn.closing is not None:
                    continue
                try:
                    await self._handle(payload(message))
                except CloseError as exc:
                    conn.close(exc.close_code, str(exc))
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
            if conn.closing is not None:
                self.watchers.telemetry.closed(conn.closing.code)

    async def _ping(self) -> None:
        """A ping every heartbeat; silent for PRESENCE_DEAD_AFTER_MS: closed 4408, as a tab."""
        interval = self.settings.heartbeat_ms / 1000
        dead_after = self.settings.dead_after_ms / 1000
        while self.conn.closing is None:
            await asyncio.sleep(interval)
            if time.monotonic() - self.conn.last_seen > dead_after:
                self.conn.close(TimedOut.close_code, "no pong: the connection looks dead")
                return
            self.conn.ping(None)

    async def _answer(self, watch: Watch) -> None:
        allowed: list[str] = []
        forbidden: list[str] = []
        for ws in dict.fromkeys(watch.workspaces):
            try:
                self.identity.check_workspace(ws)
                allowed.append(ws)
            except WorkspaceForbidden:
                forbidden.append(ws)
        try:
            leases = await self.index.watch(self.conn, allowed)
        except RequestError as exc:
            self.conn.send(Error(code=exc.code, message=str(exc), id=watch.id))
            return
        if forbidden:
            why = "the token does not allow these workspaces"
            self.conn.send_frame(encode(Forbidden("forbidden", why, forbidden, id=watch.id)))
        self.conn.send_frame(encode(Leases(leases, id=watch.id)))

    async def _handle(self, frame: str | bytes) -> None:
        if not self.bucket.allow():
            self._throttle("too many messages, slow down")
            return
        try:
            message = decode_watcher(frame)
        except msgspec.MsgspecError as exc:
            self._bad(str(exc))
            return
        if isinstance(message, Pong):
            self.conn.pong(message.n)
            return
        if not self.user_budget.allow():
            self._throttle("too many messages from this user's connections together, slow down")
            return
        self.throttled = False
        if (problem := check_ids(message)) is not None:
            self._bad(problem, message.id)
            return
        await self._answer(message)

    def _throttle(self, why: str) -> None:
        if self.refused.hit():
            raise TooMany("message rate limit exceeded")
        if not self.throttled:
            self.throttled = True
            self.conn.send(Error(code=RateLimited.code, message=why))

    def _bad(self, why: str, request_id: str | int | None = None) -> None:
        if self.bad.hit():
            raise ProtocolViolation(f"too many bad messages; last: {why}")
        self.conn.send(Error(code=BadMessage.code, message=why, id=request_id))
