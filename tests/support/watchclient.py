"""A watcher connection for tests: sends ``watch`` first, records every frame, answers pings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from wsclient import token

Msg = dict[str, Any]


class Watcher:
    def __init__(self, url: str, user: str, answer_pings: bool = True, **token_kw: Any) -> None:
        self.url = url
        self.token = token(user, **token_kw)
        self.answer_pings = answer_pings
        self.messages: list[Msg] = []
        self.ws: ClientConnection | None = None
        self._new = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.closed_code: int | None = None

    async def connect(self, workspaces: list[str], **extra: Any) -> Watcher:
        self.ws = await websockets.connect(self.url, max_size=None)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.send({"type": "watch", "token": self.token, "workspaces": workspaces, **extra})
        return self

    async def send(self, msg: Msg | str) -> None:
        assert self.ws is not None
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg["type"] == "ping" and self.answer_pings:
                    await self.send({"type": "pong", "n": msg["n"]})
                async with self._new:
                    self.messages.append(msg)
                    self._new.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.closed_code = self.ws.close_code
            async with self._new:
                self._new.notify_all()

    async def expect(self, kind: str, where: Callable[[Msg], bool] = lambda m: True, timeout: float = 5.0,
                     after: int = 0) -> Msg:
        """The first message of ``kind`` (from index ``after`` on) that matches ``where``."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages[after:]:
                if m["type"] == kind and where(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0 or (self._reader is not None and self._reader.done()):
                raise AssertionError(f"no {kind} within {timeout}s; got {self.messages[after:]}")
            async with self._new:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new.wait(), min(left, 0.5))

    async def watch(self, workspaces: list[str], rid: str) -> Msg:
        await self.send({"type": "watch", "workspaces": workspaces, "id": rid})
        return await self.expect("leases", lambda m: m.get("id") == rid)

    async def closed(self, timeout: float = 5.0) -> int | None:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.closed_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
