"""Worker: one ``presence serve`` process on uvicorn, alone or as one of the workers of
``presence serve --workers`` (:mod:`presence.supervisor`).

On SIGTERM (or SIGINT) uvicorn stops, and left to itself would drop every WebSocket with a bare
1012 before the app hears of it. :class:`WorkerServer` first stops accepting, then has the
server drain (:mod:`presence.drain`: the leases of its tabs kept for the restart grace, each tab
closed with a reason that says so) and waits for the tabs to leave; then uvicorn shuts down as
before, and the app's lifespan stops the rest.

A worker of a supervisor also, over the socket pair the supervisor handed it:

- says ``ready`` once its ``/readyz`` would answer 200 (Redis answers, scripts loaded, pub/sub
  up): a rolling restart stops the next old worker only then;
- stops, as on SIGTERM, when the socket closes: its supervisor is gone, and nobody would stop or
  restart it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import uvicorn

from .connections.output import CLOSE_TIMEOUT_S
from .server import Server

log = logging.getLogger("presence.worker")

READY = b"ready\n"
READY_POLL_S = 0.05


class WorkerServer(uvicorn.Server):
    """uvicorn's server, draining the presence server before it drops the connections."""

    def __init__(self, config: Any, server: Server, channel: socket.socket | None = None) -> None:
        super().__init__(config)
        self.presence = server
        self.channel = channel
        self._ready: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.channel is not None and not self.should_exit:
            self.channel.setblocking(False)
            asyncio.get_running_loop().add_reader(self.channel.fileno(), self._on_channel)
            self._ready = asyncio.get_running_loop().create_task(self._tell_ready(), name="tell ready")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listener in getattr(self, "servers", ()):
            listener.close()  # take no more connections first (uvicorn's shutdown repeats it)
        if self.channel is not None:
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        if self._ready is not None:
            self._ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ready
        try:
            await self.presence.drain()
            if not await self.presence.drainer.gone(CLOSE_TIMEOUT_S):
                log.warning("some tabs had not left %.0f s after their close; dropped", CLOSE_TIMEOUT_S)
        except Exception:  # whatever failed, uvicorn must still shut down
            log.exception("draining the tabs failed")
        await super().shutdown(sockets)

    async def _tell_ready(self) -> None:
        # Polled, as a balancer polls /readyz: Redis answering is no event of this process.
        while True:
            if (await self.presence.readiness())["ok"]:
                break
            await asyncio.sleep(READY_POLL_S)
        assert self.channel is not None
        try:
            self.channel.send(READY)  # a few bytes into an empty socket buffer: never blocks
        except OSError:
            return  # the supervisor is gone: _on_channel stops this process
        log.info("ready")

    def _on_channel(self) -> None:
        assert self.channel is not None
        try:
            data = self.channel.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
            log.warning("the supervisor is gone: stopping")
            self.should_exit = True


def run(config: Any, server: Server, sockets: list[socket.socket], channel: socket.socket | None = None) -> None:
    """Serve on ``sockets`` until SIGTERM or SIGINT (or, under a supervisor, until it is gone)."""
    WorkerServer(config, server, channel).run(sockets=sockets)
