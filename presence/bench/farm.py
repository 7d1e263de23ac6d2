"""Tab farm: thousands of browser tabs in one process, driven by ``presence bench`` over its stdin
and stdout (one JSON object per line each way). Run as ``python -m presence.bench.farm``.

Commands (``op``): ``open`` (connect tabs, send ``hello``, wait for ``welcome``), ``acquire`` (some
tabs ask for their lease), ``wait_closed`` (until the server closed every tab), ``reconnect``
(every tab again at once, as after a restart: time to all welcomed and every lease rejoined),
``rejoin`` (the tabs of one stopping process, each back as soon as it is closed),
``wait_viewers`` (until every tab sees so many users), ``received`` (bytes per tab), ``status``
(tabs toggle their presence), ``counts`` and ``exit``. Each answer carries ``ok`` or ``error``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .. import auth
from ..settings import DEV_SECRET
from .procs import raise_fd_limit
from .wsclient import Message, WsClient


@dataclass(slots=True)
class FarmTab:
    user: str
    workspace: str
    tab: str
    token: str
    client: WsClient | None = None
    fence: int | None = None  # the lease it was granted, to compare with its rejoin
    rejoined: int | None = None
    server: str = ""  # the id of the server process that welcomed it last
    viewers: set[str] = field(default_factory=set)  # users it knows in its workspace (snapshot + updates)


@dataclass(slots=True)
class Farm:
    tabs: list[FarmTab] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)

    def _on_message(self, tab: FarmTab) -> Any:
        counts = self.counts

        def on_message(client: WsClient, msg: Message) -> None:
            kind = msg.get("type", "?")
            counts[kind] += 1
            if kind == "acquired" and msg.get("rejoined"):
                tab.rejoined = int(msg["fence"])
            elif kind == "welcome":  # the bare server's has no state
                tab.server = str(msg.get("conn", "")).rpartition("-")[0]
                tab.viewers = {v["user"]["id"] for v in (msg.get("state") or {}).get("viewers", ())}
            elif kind == "state":
                tab.viewers = {v["user"]["id"] for v in msg["viewers"]}
            elif kind == "update":  # applied as a client does: left ids out, joined and changed entries in
                tab.viewers.difference_update(msg.get("left", ()))
                tab.viewers.update(v["user"]["id"] for v in (*msg.get("joined", ()), *msg.get("viewers", ())))
        return on_message

    async def _connect(self, tab: FarmTab, host: str, port: int, path: str, sem: asyncio.Semaphore) -> float:
        started = time.perf_counter()
        for attempt in range(3):
            try:
                await self._connect_once(tab, host, port, path, sem)
                return time.perf_counter() - started
            except ConnectionError as exc:
                # 1013: "overloaded, retry later", as presence.js does (with backoff and jitter); so
                # is a connection reset or refused while a process of the port stops.
                resets = isinstance(exc, ConnectionResetError | ConnectionRefusedError)
                if ("(1013)" not in str(exc) and not resets) or attempt == 2:
                    raise
                self.counts["retried_reset" if resets else "retried_1013"] += 1
                await asyncio.sleep(random.uniform(0.5, 1.0) * 2**attempt)
        raise AssertionError("unreachable")

    async def _connect_once(self, tab: FarmTab, host: str, port: int, path: str, sem: asyncio.Semaphore) -> None:
        async with sem:
            client = await WsClient.connect(host, port, path, timeout=60, on_message=self._on_message(tab))
            tab.client = client
            welcome = client.next(lambda m: m.get("type") == "welcome")
            rejoin = client.next(lambda m: m.get("type") == "acquired") if tab.fence is not None else None
            client.send({"type": "hello", "token": tab.token, "workspace": tab.workspace, "tab": tab.tab})
            state = (await asyncio.wait_for(welcome, 60)).get("state") or {}
            holder = state.get("holder") or {}
            if rejoin is not None and holder.get("fence") == tab.fence:
                await asyncio.wait_for(rejoin, 10)  # sent right behind the welcome

    async def _connect_all(self, tabs: list[FarmTab], host: str, port: int, path: str, parallel: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(parallel)
        started = time.perf_counter()
        results = await asyncio.gather(*(self._connect(t, host, port, path, sem) for t in tabs), return_exceptions=True)
        elapsed = time.perf_counter() - started
        errors = Counter(f"{type(r).__name__}: {r}"[:120] for r in results if isinstance(r, BaseException))
        return {"seconds": elapsed, "connected": sum(1 for r in results if not isinstance(r, BaseException)),
                "errors": dict(errors), "retried_1013": self.counts.pop("retried_1013", 0)}

    async def open(self, host: str, port: int, tabs: list[list[str]], path: str = "/ws", parallel: int = 500,
                   ports: list[int] | None = None, **_: Any) -> dict[str, Any]:
        """Connect ``tabs``; with ``ports``, tab i to ``ports[i % len(ports)]`` (several servers)."""
        new = [FarmTab(u, ws, t, auth.mint(DEV_SECRET, u, u, 7200)) for u, ws, t in tabs]
        self.tabs += new
        if not ports:
            return await self._connect_all(new, host, port, path, parallel)
        sem = asyncio.Semaphore(parallel)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(self._connect(t, host, ports[i % len(ports)], path, sem) for i, t in enumerate(new)),
            return_exceptions=True,
        )
        errors = Counter(f"{type(r).__name__}: {r}"[:120] for r in results if isinstance(r, BaseException))
        return {"seconds": time.perf_counter() - started, "errors": dict(errors),
                "connected": sum(1 for r in results if not isinstance(r, BaseException))}

    async def wait_viewers(self, viewers: int, timeout: float = 60.0, **_: Any) -> dict[str, Any]:
        """Until every tab knows of ``viewers`` users in its workspace (seconds waited)."""
        started = time.perf_counter()
        while any(len(t.viewers) != viewers for t in self.tabs):
            if time.perf_counter() - started > timeout:
                behind = sum(1 for t in self.tabs if len(t.viewers) != viewers)
                raise TimeoutError(f"{behind} tabs do not see {viewers} viewers after {timeout:.0f} s")
            await asyncio.sleep(0.01)
        return {"seconds": time.perf_counter() - started}

    async def received(self, **_: Any) -> dict[str, Any]:
        """Payload bytes received by each tab so far (its welcome included)."""
        return {"bytes": [t.client.bytes_in if t.client is not None else 0 for t in self.tabs]}

    async def status(self, indices: list[int], rounds: int, gap_ms: float, **_: Any) -> dict[str, Any]:
        """Each round, every tab of ``indices`` in turn toggles its ``active`` flag (a visible change),
        ``gap_ms`` apart; the number of status messages sent."""
        sent = 0
        for r in range(rounds):
            for i in indices:
                client = self.tabs[i].client
                assert client is not None
                client.send({"type": "status", "active": r % 2 == 1})
                sent += 1
                await asyncio.sleep(gap_ms / 1000)
        return {"sent": sent}

    async def acquire(self, indices: list[int], **_: Any) -> dict[str, Any]:
        async def one(i: int) -> str:
            tab = self.tabs[i]
            assert tab.client is not None
            reply = await tab.client.request({"type": "acquire", "id": i}, timeout=30)
            if reply["type"] == "acquired":
                tab.fence = int(reply["fence"])
            return str(reply["type"])
        replies = await asyncio.gather(*(one(i) for i in indices))
        return {"replies": dict(Counter(replies))}

    async def wait_closed(self, timeout: float = 30.0, **_: Any) -> dict[str, Any]:
        async def one(tab: FarmTab) -> int:
            assert tab.client is not None
            return await tab.client.closed(timeout)
        codes = await asyncio.gather(*(one(t) for t in self.tabs if t.client is not None), return_exceptions=True)
        self.closes = Counter(c if isinstance(c, int) else -1 for c in codes)
        return {"closes": {str(k): v for k, v in self.closes.items()}}

    async def reconnect(self, host: str, port: int, path: str = "/ws", parallel: int = 500,
                        **_: Any) -> dict[str, Any]:
        released_before = self.counts["released"]
        for tab in self.tabs:
            tab.rejoined = None
        result = await self._connect_all(self.tabs, host, port, path, parallel)
        holders = [t for t in self.tabs if t.fence is not None]
        result["holders"] = len(holders)
        result["rejoined_same_fence"] = sum(1 for t in holders if t.rejoined == t.fence)
        result["released"] = self.counts["released"] - released_before
        return result

    async def rejoin(self, server: str, host: str, port: int, path: str = "/ws", parallel: int = 500,
                     timeout: float = 120.0, **_: Any) -> dict[str, Any]:
        """The tabs of process ``server``, which is stopping, each reconnect to ``host:port`` as
        soon as it is closed (as presence.js does on 1012): until every one is back, its lease
        rejoined. Seconds from the first close to the last one back; where the tabs landed."""
        tabs = [t for t in self.tabs if t.server == server and t.client is not None]
        released_before = self.counts["released"]
        sem = asyncio.Semaphore(parallel)
        first_close: list[float] = []
        codes: Counter[int] = Counter()

        async def back(tab: FarmTab) -> float:
            assert tab.client is not None
            codes[await tab.client.closed(timeout)] += 1
            first_close.append(time.perf_counter())
            tab.rejoined = None
            await self._connect(tab, host, port, path, sem)
            return time.perf_counter()

        results = await asyncio.gather(*(back(t) for t in tabs), return_exceptions=True)
        done = [r for r in results if not isinstance(r, BaseException)]
        errors = Counter(f"{type(r).__name__}: {r}"[:120] for r in results if isinstance(r, BaseException))
        holders = [t for t in tabs if t.fence is not None]
        return {"tabs": len(tabs), "back": len(done), "closes": {str(k): v for k, v in codes.items()},
                "seconds": max(done) - min(first_close) if done else 0.0, "errors": dict(errors),
                "holders": len(holders), "rejoined_same_fence": sum(1 for t in holders if t.rejoined == t.fence),
                "released": self.counts["released"] - released_before,
                "landed": dict(Counter(t.server for t in tabs)),
                "retried": self.counts.pop("retried_1013", 0) + self.counts.pop("retried_reset", 0)}

    async def counts_(self, **_: Any) -> dict[str, Any]:
        return {"counts": dict(self.counts), "open": sum(1 for t in self.tabs if t.client and t.client.open)}

    def ops(self) -> dict[str, Callable[..., Awaitable[dict[str, Any]]]]:
        return {
            "open": self.open, "acquire": self.acquire, "wait_closed": self.wait_closed, "reconnect": self.reconnect,
            "counts": self.counts_, "close_all": self.close_all, "wait_viewers": self.wait_viewers,
            "received": self.received, "status": self.status, "rejoin": self.rejoin,
        }

    async def close_all(self, **_: Any) -> dict[str, Any]:
        for tab in self.tabs:
            if tab.client is not None and tab.client.open:
                tab.client.close(1000)
        await asyncio.sleep(0.2)
        for tab in self.tabs:
            if tab.client is not None:
                tab.client.abort()
        self.tabs.clear()
        self.counts.clear()
        return {}


async def serve(farm: Farm) -> None:
    raise_fd_limit()
    ops = farm.ops()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "exit":
            await farm.close_all()
            break
        try:
            answer = {"ok": True, **await ops[op](**cmd)}
        except Exception as exc:
            answer = {"ok": False, "error": f"{exc!r}", "traceback": traceback.format_exc()[-2000:]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main(farm: Farm | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it; without it the farm is just slower
        asyncio.run(serve(farm or Farm()))
        return
    uvloop.run(serve(farm or Farm()))


if __name__ == "__main__":
    main()
