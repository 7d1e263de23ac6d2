"""A chaos-soak client: one browser tab (user, workspace, tab id) that reconnects across servers and
keeps one message log across its connections, for ``chaos_check``. It acquires, takes over and
releases the workspace's locks it is given (``""``: the workspace's own lease, or named locks),
each on its own, and may hold several at once.

Every received message is logged with its receipt time (``_t``, monotonic). The client adds two
marks of its own: ``_release_sent`` with ``lock`` when it asks to release a lock (it stops editing
under it then), and ``_closed`` with ``voluntary`` when a connection ends (true: the tab closed it
itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from wsclient import token

from presence.bench.wsclient import hello

Msg = dict[str, Any]
_ids = itertools.count(1)


class ChaosClient:
    def __init__(self, user: str, workspace: str, tab: str, urls: Callable[[], list[str]], rng: random.Random,
                 locks: Sequence[str] = ("",)) -> None:
        self.user = user
        self.workspace = workspace
        self.tab = tab
        self.urls = urls
        self.rng = rng
        self.locks = list(locks)
        self.log: list[Msg] = []
        self.ops: Counter[str] = Counter()
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[Msg]] = {}
        self._welcomed: asyncio.Future[Msg] | None = None
        self._voluntary = False

    @property
    def connected(self) -> bool:
        return self._reader is not None and not self._reader.done()

    def holding(self) -> list[str]:
        """The locks the client believes it holds (its last acquired/released of each), ignoring
        deadlines."""
        last: dict[str, bool] = {}
        for m in reversed(self.log):
            if m["type"] in ("acquired", "released", "_release_sent"):
                last.setdefault(m.get("lock") or "", m["type"] == "acquired")
                if len(last) == len(self.locks):
                    break
        return [lock for lock in self.locks if last.get(lock)]

    def mark(self, kind: str, **fields: Any) -> None:
        self.log.append({"type": kind, "_t": time.monotonic(), **fields})

    async def connect(self) -> bool:
        url = self.rng.choice(self.urls())
        try:
            async with asyncio.timeout(3):
                ws = await websockets.connect(url, max_size=None, open_timeout=3, close_timeout=1)
        except (OSError, TimeoutError, websockets.WebSocketException):
            return False
        self.ws = ws
        self._voluntary = False
        self._welcomed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))
        try:
            await ws.send(json.dumps(hello(token(self.user), self.workspace, self.tab, client="chaos")))
            async with asyncio.timeout(3):
                await asyncio.shield(self._welcomed)
        except (TimeoutError, websockets.WebSocketException, OSError):
            await self.drop(voluntary=False)
            return False
        self.ops["connect"] += 1
        return True

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                msg["_t"] = time.monotonic()
                self.log.append(msg)
                kind = msg["type"]
                if kind == "ping":
                    with contextlib.suppress(websockets.WebSocketException):
                        await ws.send(json.dumps({"type": "pong", "n": msg["n"]}))
                elif kind == "welcome" and self._welcomed is not None and not self._welcomed.done():
                    self._welcomed.set_result(msg)
                rid = msg.get("id")
                if isinstance(rid, int) and rid in self._replies:
                    fut = self._replies.pop(rid)
                    if not fut.done():
                        fut.set_result(msg)
        except (websockets.WebSocketException, OSError):
            pass
        finally:
            self.mark("_closed", voluntary=self._voluntary, code=ws.close_code)
            for fut in self._replies.values():
                if not fut.done():
                    fut.cancel()
            self._replies.clear()

    async def request(self, kind: str, lock: str = "", timeout: float = 2.0) -> Msg | None:
        if self.ws is None or not self.connected:
            return None
        rid = next(_ids)
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        if kind == "release":
            self.mark("_release_sent", lock=lock)
        self.ops[kind] += 1
        if lock:
            self.ops[f"{kind} named"] += 1
        try:
            await self.ws.send(json.dumps({"type": kind, "id": rid, **({"lock": lock} if lock else {})}))
            async with asyncio.timeout(timeout):
                return await fut
        except (TimeoutError, asyncio.CancelledError, websockets.WebSocketException, OSError):
            if not fut.done():
                fut.cancel()
            self._replies.pop(rid, None)
            return None

    async def drop(self, voluntary: bool, clean: bool = True) -> None:
        """End the connection. ``voluntary``: the tab itself goes away (it edits no more);
        ``clean``: with a close frame (a closed tab) rather than vanishing (a crashed one)."""
        ws, reader = self.ws, self._reader
        self.ws = None
        if ws is None:
            return
        self._voluntary = voluntary
        if voluntary and clean:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close(1001)
        ws.transport.abort()
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(2):
                    await reader
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def run(self, until: float) -> None:
        """Random acquire/takeover/release/close/reconnect until ``until`` (monotonic)."""
        rng = self.rng
        while time.monotonic() < until:
            if not self.connected and not await self.connect():
                await asyncio.sleep(rng.uniform(0.1, 0.4))
                continue
            r = rng.random()
            if r < 0.35:
                await self.request("acquire", rng.choice(self.locks))
            elif r < 0.43:
                await self.request("takeover", rng.choice(self.locks))
            elif r < 0.60:
                if held := self.holding():
                    await self.request("release", rng.choice(held))
            elif r < 0.65:
                self.ops["close"] += 1
                await self.drop(voluntary=True)
            elif r < 0.67:
                self.ops["crash"] += 1
                await self.drop(voluntary=True, clean=False)  # no close frame: the lease keeps its TTL
            await asyncio.sleep(rng.uniform(0.05, 0.4))
