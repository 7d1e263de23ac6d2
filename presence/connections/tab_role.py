"""Tab role: a connection whose first frame was ``hello``, from its join to its leave.

It joins the workspace (``welcome``, with the token's time left), then each request, decoded once,
is dispatched on its type to the lease commands; their errors answer that request only. It
leaves when the connection ends: a clean close (1000/1001 from the client) shortens its lease to
the grace period; anything else (a dropped connection, a close by the server: an expired token,
a dead or slow tab) leaves the lease to expire at its TTL.
"""

from __future__ import annotations

import logging

import msgspec

from .. import logctx
from ..engine.commands import LeaseCommands
from ..engine.workspaces import Workspaces
from ..errors import BadMessage
from ..wire.messages import (
    MAX_META_BYTES,
    MAX_REQUEST_MESSAGE,
    Acquire,
    ClientMessage,
    Decline,
    Hello,
    Pong,
    Release,
    Request,
    Status,
    Sync,
    Takeover,
    decode_client,
)
from .credential import Credential
from .output import Output
from .tab import Tab

log = logging.getLogger("presence.session")


class TabRole:
    __slots__ = ("commands", "credential", "tab", "workspaces")

    def __init__(self, tab: Tab, workspaces: Workspaces, commands: LeaseCommands) -> None:
        self.tab = tab
        self.credential = tab.credential
        self.workspaces = workspaces
        self.commands = commands

    @classmethod
    async def join(
        cls, hello: Hello, credential: Credential, output: Output, workspaces: Workspaces, commands: LeaseCommands
    ) -> TabRole:
        """The tab, in its workspace and welcomed. Raises ``CloseError`` (1013 when Redis is
        unavailable); a join that fails undoes itself (see :meth:`Workspaces.join`)."""
        tab = Tab(output, credential, hello.workspace, hello.tab)
        output.name = repr(tab)
        credential.start()
        try:
            await workspaces.join(
                tab, read_only=credential.identity.read_only, expires_in_ms=credential.expires_in_ms()
            )
        except BaseException:
            credential.stop()
            raise
        log.info("%r joined (client %r)", tab, (hello.client or "?")[:80])  # the client's words: quoted, bounded
        return cls(tab, workspaces, commands)

    decode = staticmethod(decode_client)

    @staticmethod
    def cost(message: ClientMessage) -> int:
        # Pongs are paced by the server; statuses are written at most once per meta interval.
        return 0 if isinstance(message, Pong | Status) else 1

    async def handle(self, message: ClientMessage) -> None:
        """Raises ``RequestError`` (``BadMessage`` for a request that is not valid). A ``refresh``
        is the session's, not the tab's (a watcher sends it too)."""
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
            case Status(active=active, meta=meta):
                if isinstance(meta, dict) and len(msgspec.json.encode(meta)) > MAX_META_BYTES:
                    raise BadMessage(f"meta is larger than {MAX_META_BYTES} bytes")
                await commands.status(tab, active, meta)
            case Request(id=rid, message=text, lock=lock):
                if len(text) > MAX_REQUEST_MESSAGE:
                    raise BadMessage(f"message is longer than {MAX_REQUEST_MESSAGE} characters")
                tab.send(await commands.request(tab, rid, text, lock))
            case Decline(id=rid, lock=lock):
                tab.send(await commands.decline(tab, rid, lock))
            case Sync():
                commands.sync(tab)
            case Hello():
                raise BadMessage("hello was already received")

    async def end(self, clean: bool) -> None:
        self.credential.stop()
        logctx.request_id.set("")
        await self.workspaces.leave(self.tab, clean)
        log.info("%r left (%s)", self.tab, "clean" if clean else "unclean")
