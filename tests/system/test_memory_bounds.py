"""What a client that does not read may cost a real ``presence serve``: at most
``PRESENCE_SEND_BUFFER_BYTES`` of output waiting for it, and not for long.

Each client here reads nothing after the upgrade (or after its ``welcome``), with a small
receive window, so whatever the server answers stays on the server: WebSocket PONGs to a PING
flood (written by the WebSocket protocol below the application), ``leases`` frames to a watcher
that keeps asking. The server must drop such a connection at the byte bound, end a connection
without ``hello`` by the hello timeout whatever it sends, count a ``pong`` only for the latest
``ping``, and charge a ``watch`` by its size. Other ways of ending a connection (dead tabs, the
hello timeout) are set far off where they would hide the bound. The log holds no traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import rawws
import websockets
from procs import ServerProcess, wait_until
from servers import Cluster, assert_no_traceback
from watchclient import Watcher
from wsclient import Tab, open_tab, token

ADMIN = "admin-token-for-memory-bounds-tests"
FAR = {"PRESENCE_HELLO_TIMEOUT_MS": "30000", "PRESENCE_HEARTBEAT_MS": "5000", "PRESENCE_DEAD_AFTER_MS": "60000",
       "PRESENCE_LEASE_TTL_MS": "15000", "PRESENCE_GRACE_MS": "5000"}
PINGS = rawws.frame(rawws.PING, b"p" * 125) * 256  # 33 KB of pings a write, each answered by a 127-byte pong
CLOSE_TIMEOUT_S = 5.0  # the server's (presence.connections.output)


def hello(user: str, workspace: str) -> str:
    return json.dumps({"type": "hello", "token": token(user), "workspace": workspace, "tab": f"{user}-tab"})


def flood(
    port: int, path: str, first: str | None, budget: float, every: float = 0.0, ready: Callable[[], bool] | None = None
) -> float | None:
    """Seconds until the server dropped a PING flood that reads nothing (None: it never did);
    ``first``: a frame sent before, and ``ready`` what to wait for after it."""
    sock = rawws.connect(port, path)
    try:
        if first is not None:
            sock.sendall(rawws.frame(rawws.TEXT, first.encode()))
        if ready is not None:
            wait_until(ready, 5, "the first frame's effect")
        return rawws.send_until_dropped(sock, PINGS, budget, every)
    finally:
        sock.close()


def logged(server: ServerProcess, text: str) -> int:
    return server.log_path.read_text(errors="replace").count(text)


@pytest.mark.parametrize("where", ["before hello", "after hello", "admin live feed"])
async def test_a_ping_flood_that_never_reads_is_dropped_at_the_byte_bound(servers: Cluster, where: str) -> None:
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN, **FAR)
    assert a.proc is not None
    before = rawws.rss_mib(a.proc.pid)
    path = "/admin/api/live" if where == "admin live feed" else "/ws"
    first = hello("pinger", "flood-doc") if where == "after hello" else None
    joined = (lambda: logged(a, "pinger@flood-doc> joined") == 1) if first else None
    dropped = await asyncio.to_thread(flood, a.port, path, first, 20.0, 0.0, joined)
    grown = rawws.rss_mib(a.proc.pid) - before
    assert dropped is not None, f"{where}: still connected after 20 s; the server grew by {grown:.0f} MiB"
    # Dropped once the kernel's buffers and 1 MiB more are full: well before any close watchdog.
    assert dropped < CLOSE_TIMEOUT_S, dropped
    assert grown < 32, f"{where}: the server grew by {grown:.0f} MiB"
    assert logged(a, "(PRESENCE_SEND_BUFFER_BYTES): WebSocket aborted") == 1
    assert_no_traceback(a)


async def test_the_hello_timeout_ends_a_connection_whatever_it_sends(servers: Cluster) -> None:
    """Pings at 33 KB/s, never reading: their answers fill the socket buffers, so the close frame
    of the hello timeout cannot be delivered; the connection is dropped when its closing
    handshake is overdue, long before the byte bound (about 30 s away at this pace)."""
    a = await servers.server_async("a", **{**FAR, "PRESENCE_HELLO_TIMEOUT_MS": "1000"})
    dropped = await asyncio.to_thread(flood, a.port, "/ws", None, 20.0, 1.0)
    assert dropped is not None, "still connected 20 s after the hello timeout"
    assert 1.0 <= dropped < 1.0 + CLOSE_TIMEOUT_S + 3, dropped
    assert logged(a, "did not complete the close within") == 1
    assert_no_traceback(a)


async def test_a_pong_for_an_earlier_ping_does_not_keep_a_tab_alive(servers: Cluster, tabs: list[Tab]) -> None:
    """A tab that stopped reading after its first ping and keeps answering that one is dead."""
    a = await servers.server_async("a", PRESENCE_HEARTBEAT_MS="300", PRESENCE_DEAD_AFTER_MS="900")
    olga = await open_tab(tabs, a, "olga", "pong-doc")
    ws = await websockets.connect(a.ws_url, ping_interval=None, max_size=None)
    try:
        await ws.send(hello("silas", "pong-doc"))
        first_ping: dict[str, Any] = {}
        while first_ping.get("type") != "ping":
            first_ping = json.loads(await ws.recv())
        ws.transport.pause_reading()
        mark = len(olga.messages)
        started = time.monotonic()

        def silas_left(m: dict[str, Any]) -> bool:
            return all(v["user"]["id"] != "silas" for v in m["viewers"])

        async def keep_answering_the_first_ping() -> None:
            while True:
                await ws.send(json.dumps({"type": "pong", "n": first_ping["n"]}))
                await asyncio.sleep(0.1)

        answering = asyncio.get_running_loop().create_task(keep_answering_the_first_ping())
        try:
            await olga.expect("state", silas_left, after=mark, timeout=5)
        finally:
            answering.cancel()
        assert time.monotonic() - started < 0.9 + 2
    finally:
        ws.transport.abort()
    assert logged(a, "no pong for") == 1
    assert_no_traceback(a)


IDS = [f"list-page-item-{i:04d}-abcdef" for i in range(500)]  # 26 characters: a 14 KB watch, 31 KB leases


def watcher_flood(port: int, user: str, budget: float) -> float | None:
    """A watcher that re-sends its 500-id watch every 20 ms (within its rate) and reads nothing."""
    sock = rawws.connect(port)
    try:
        sock.sendall(rawws.frame(rawws.TEXT, json.dumps({"type": "watch", "token": token(user),
                                                          "workspaces": IDS}).encode()))
        again = rawws.frame(rawws.TEXT, json.dumps({"type": "watch", "workspaces": IDS}).encode())
        return rawws.send_until_dropped(sock, again, budget, every=0.02)
    finally:
        sock.close()


async def test_watchers_that_never_read_their_leases_are_closed_at_the_byte_bound(servers: Cluster) -> None:
    """Five watchers (five users) asking for 31 KB answers 50 times a second: each is closed
    (1013, then dropped when the close cannot get through) once about 1 MiB waits for it, and
    the server's memory stays within a few MiB of that; the message-count bound is set too high
    to matter."""
    a = await servers.server_async("a", PRESENCE_RATE_LIMIT="1000", PRESENCE_USER_RATE_LIMIT="1000",
                                   PRESENCE_SEND_QUEUE_SIZE="100000", **FAR)
    assert a.proc is not None
    before = rawws.rss_mib(a.proc.pid)
    dropped = await asyncio.gather(*(asyncio.to_thread(watcher_flood, a.port, f"lister{i}", 30.0) for i in range(5)))
    grown = rawws.rss_mib(a.proc.pid) - before
    assert all(d is not None for d in dropped), f"still connected after 30 s: {dropped}; grew {grown:.0f} MiB"
    assert grown < 48, f"the server grew by {grown:.0f} MiB"
    assert logged(a, "send queue full") == 5
    assert_no_traceback(a)


async def test_a_watch_costs_rate_tokens_by_its_size(servers: Cluster) -> None:
    """Rate 20/s, burst 40: a 500-id watch costs ten tokens, so of six sent at once at most four
    are answered; six of 50 ids (one token each) all are."""
    a = await servers.server_async("a")
    big = Watcher(a.ws_url, "big")
    small = Watcher(a.ws_url, "small")
    try:
        await big.connect(IDS)
        await small.connect(IDS[:50])
        await big.expect("leases")
        await small.expect("leases")
        for i in range(6):
            await big.send({"type": "watch", "workspaces": IDS, "id": f"big{i}"})
            await small.send({"type": "watch", "workspaces": IDS[:50], "id": f"small{i}"})
        await big.expect("error", lambda m: m["code"] == "rate_limited")
        await small.expect("leases", lambda m: m.get("id") == "small5")
        answered = [m["id"] for m in big.messages if m["type"] == "leases" and "id" in m]
        assert len(answered) <= 4, answered
        assert not [m for m in small.messages if m["type"] == "error"]
    finally:
        await big.close()
        await small.close()
    assert_no_traceback(a)
