"""Test WebSocket clients that speak the presence protocol like a browser would: a
:class:`Connection` answers pings by itself (unless told to play dead), records every message it
receives, and lets a test await the first message matching a type and predicate, so tests
synchronise on events rather than sleeps. :class:`Tab` is a browser tab; the watcher of many
workspaces is in watchclient.py. Their tokens and hello frames are the bench's
(presence/bench/wsclient.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import websockets
from delta import apply_update
from websockets.asyncio.client import ClientConnection

from presence.bench.wsclient import dev_token as token
from presence.bench.wsclient import hello
from presence.settings import DEV_SECRET

if TYPE_CHECKING:
    from procs import ServerProcess

__all__ = ["Connection", "Msg", "Tab", "close_of", "open_tab", "token"]

Msg = dict[str, Any]
_ids = itertools.count(1)


class Connection:
    """One WebSocket connection of a test client, opened with its first frame."""

    def __init__(self, url: str, token: str, answer_pings: bool = True) -> None:
        self.url = url
        self.token = token
        self.answer_pings = answer_pings
        self.messages: list[Msg] = []
        self.ws: ClientConnection | None = None
        self._new = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.closed_code: int | None = None
        self.closed_reason: str | None = None

    async def open(self, first: Msg, **kw: Any) -> None:
        self.ws = await websockets.connect(self.url, max_size=None, **kw)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.send(first)

    async def send(self, msg: Msg | str) -> None:
        assert self.ws is not None
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def _received(self, msg: Msg) -> list[Msg]:
        """What to record of ``msg`` (a subclass may add what follows from it)."""
        return [msg]

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg["type"] == "ping" and self.answer_pings:
                    await self.ws.send(json.dumps({"type": "pong", "n": msg["n"]}))
                recorded = await self._received(msg)
                async with self._new:
                    self.messages.extend(recorded)
                    self._new.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_code = self.ws.close_code
            self.closed_reason = self.ws.close_reason
            async with self._new:
                self._new.notify_all()

    def of(self, kind: str) -> list[Msg]:
        return [m for m in self.messages if m["type"] == kind]

    async def expect(self, kind: str, where: Callable[[Msg], bool] = lambda m: True,
                     timeout: float = 5.0, after: int = 0) -> Msg:
        """The first message of ``kind`` (from index ``after`` on) for which ``where`` holds."""
        deadline = time.monotonic() + timeout
        async with self._new:
            while True:
                for m in self.messages[after:]:
                    if m["type"] == kind and where(m):
                        return m
                if self._reader is not None and self._reader.done():
                    raise AssertionError(
                        f"{self}: connection closed ({self.closed_code} {self.closed_reason}) "
                        f"before a {kind!r}; got {[m['type'] for m in self.messages]}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self}: no {kind!r} within {timeout}s; got "
                        f"{[(m['type'], m.get('reason') or m.get('change')) for m in self.messages[after:]]}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new.wait(), left)

    async def closed(self, timeout: float = 5.0) -> int | None:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.closed_code

    async def close(self, code: int = 1000) -> None:
        if self.ws is not None:
            await self.ws.close(code)
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()

    async def drop(self) -> None:
        """Vanish without a close frame (network died, tab crashed)."""
        if self.ws is not None:
            self.ws.transport.abort()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


class Tab(Connection):
    def __init__(self, url: str, user: str, workspace: str, tab: str | None = None,
                 secret: str = DEV_SECRET, answer_pings: bool = True, **token_kw: Any) -> None:
        super().__init__(url, token(user, secret=secret, **token_kw), answer_pings)
        self.user = user
        self.workspace = workspace
        self.tab = tab or f"{user}-{next(_ids)}"
        self.welcome: Msg | None = None
        self.view: Msg | None = None  # the workspace as this tab knows it (see _received)
        self.gaps = 0  # updates that did not follow on from the view: answered with sync

    def __str__(self) -> str:
        return f"{self.user}/{self.tab}"

    async def connect(self, expect_welcome: bool = True, **kw: Any) -> Tab:
        await self.open(hello(self.token, self.workspace, self.tab), **kw)
        if expect_welcome:
            self.welcome = await self.expect("welcome")
        return self

    async def _received(self, msg: Msg) -> list[Msg]:
        """Each message with its receipt time (``_t``, monotonic). The tab keeps its view like a
        browser client does: the snapshot of ``welcome`` or ``state``, with every ``update`` applied
        in order (on a gap it asks for ``sync``). Each applied update is recorded after it as the
        ``state`` it leads to (``"rebuilt": True``), so tests wait for what a page would see."""
        assert self.ws is not None
        msg["_t"] = time.monotonic()
        if msg["type"] == "welcome":
            self.view = dict(msg["state"])
        elif msg["type"] == "state":
            self.view = {k: v for k, v in msg.items() if not k.startswith("_") and k != "type"}
        elif msg["type"] == "update":
            if self.view is None or msg["base"] != self.view["seq"]:
                self.gaps += 1
                await self.ws.send(json.dumps({"type": "sync"}))
                return [msg]
            self.view = apply_update(self.view, msg)
            return [msg, {"type": "state", **self.view, "rebuilt": True, "_t": msg["_t"]}]
        return [msg]

    async def request(self, kind: str, timeout: float = 5.0, **fields: Any) -> Msg:
        """Send a request with a fresh id and return the reply carrying that id."""
        rid = next(_ids)
        mark = len(self.messages)
        await self.send({"type": kind, "id": rid, **fields})
        async with self._new:
            pass
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages[mark:]:
                if m.get("id") == rid:
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply to {kind} #{rid}; got {[m['type'] for m in self.messages[mark:]]}")
            async with self._new:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new.wait(), min(left, 0.5))

    def state(self) -> Msg:
        """The latest state this tab was told about (welcome's or a state message)."""
        for m in reversed(self.messages):
            if m["type"] == "state":
                return m
            if m["type"] == "welcome":
                return m["state"]  # type: ignore[no-any-return]
        raise AssertionError("no state yet")


async def open_tab(tabs: list[Tab], server: ServerProcess, user: str, ws: str = "doc", **kw: Any) -> Tab:
    """Connect a tab of ``user`` to ``server``; it is added to ``tabs`` so the fixture drops it."""
    tab = Tab(server.ws_url, user, ws, **kw)
    tabs.append(tab)
    return await tab.connect()


async def close_of(url: str, frame: str, **kw: Any) -> tuple[int | None, str | None, list[dict[str, Any]]]:
    """Send one frame on a fresh connection; the messages received and the close code and reason."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None, **kw) as ws:
        await ws.send(frame)
        try:
            async with asyncio.timeout(10):
                async for raw in ws:
                    messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason, messages
