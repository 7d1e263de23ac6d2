"""Watcher role: a connection whose first frame was ``watch`` (a list page).

It is checked like a tab (a valid token, 4401; admitted against the user's connection limit,
4429; 1012 while stopping), but it joins no workspace: it is nobody's viewer and holds no lease.
The token's ``ws`` claim applies per workspace: the ones it does not allow are left out of
``leases`` and named in an ``error`` with code ``forbidden``. Then it gets ``ping`` every
heartbeat (4408 when it stops answering), and ``watch`` again replaces the set; a ``watch`` costs
one rate token per :data:`IDS_PER_TOKEN` ids. The watching itself is
:class:`~presence.engine.watchers.WatchIndex`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..engine.watchers import WatchIndex
from ..errors import BadMessage, RequestError, TimedOut, WorkspaceForbidden
from ..settings import Settings
from ..wire.messages import Error, Ping, Pong
from ..wire.watch import Forbidden, Leases, Watch, WatcherMessage, decode_watcher, encode
from .credential import Credential
from .handshake import watch_problem
from .keepalive import Keepalive
from .output import Output

log = logging.getLogger("presence.watcher")

IDS_PER_TOKEN = 50
"""A ``watch`` of n workspace ids costs ceil(n / 50) rate tokens (at least one)."""


class WatcherRole:
    def __init__(self, output: Output, credential: Credential, index: WatchIndex, settings: Settings) -> None:
        self.output = output
        self.credential = credential
        self.index = index
        self.settings = settings
        self.keepalive = Keepalive()
        self._pinger: asyncio.Task[None] | None = None

    @classmethod
    async def watch(
        cls, first: Watch, credential: Credential, output: Output, index: WatchIndex, settings: Settings
    ) -> WatcherRole:
        """The watcher, told the leases of its first ``watch``."""
        self = cls(output, credential, index, settings)
        output.name = f"<Watcher {output.conn} {credential.identity.user.id}>"
        credential.start()
        self._pinger = asyncio.get_running_loop().create_task(self._ping(), name=f"pings {output.conn}")
        try:
            await self._answer(first)
        except BaseException:
            await self.end(clean=False)
            raise
        log.info("%r watches %d workspaces", output, len(first.workspaces))
        return self

    decode = staticmethod(decode_watcher)

    @staticmethod
    def cost(message: WatcherMessage) -> int:
        match message:
            case Pong():
                return 0
            case Watch(workspaces=ids):
                return max(1, -(-len(ids) // IDS_PER_TOKEN))
            case _:
                return 1

    async def handle(self, message: WatcherMessage) -> None:
        """Raises ``RequestError`` (``BadMessage`` for ids that are not valid)."""
        match message:
            case Pong(n=n):
                self.keepalive.pong(n)
            case Watch():
                if (problem := watch_problem(message)) is not None:
                    raise BadMessage(problem)
                await self._answer(message)

    async def _ping(self) -> None:
        """A ping every heartbeat; silent for PRESENCE_DEAD_AFTER_MS: closed 4408, as a tab."""
        interval = self.settings.heartbeat_ms / 1000
        dead_after = self.settings.dead_after_ms / 1000
        while self.output.closing is None:
            await asyncio.sleep(interval)
            if time.monotonic() - self.keepalive.last_seen > dead_after:
                self.output.close(TimedOut.close_code, "no pong: the connection looks dead")
                return
            self.output.send(Ping(n=self.keepalive.next_ping()))

    async def _answer(self, watch: Watch) -> None:
        allowed: list[str] = []
        forbidden: list[str] = []
        identity = self.credential.identity
        for ws in dict.fromkeys(watch.workspaces):
            try:
                identity.check_workspace(ws)
                allowed.append(ws)
            except WorkspaceForbidden:
                forbidden.append(ws)
        try:
            leases = await self.index.watch(self.output, allowed)
        except RequestError as exc:
            self.output.send(Error(code=exc.code, message=str(exc), id=watch.id))
            return
        if forbidden:
            why = "the token does not allow these workspaces"
            self.output.send_frame(encode(Forbidden("forbidden", why, forbidden, id=watch.id)))
        self.output.send_frame(encode(Leases(leases, id=watch.id, expires_in_ms=self.credential.expires_in_ms())))

    async def end(self, clean: bool) -> None:
        self.credential.stop()
        self.index.unwatch(self.output)
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
