"""Per-process limits against a real ``presence serve``: open WebSockets, connections that never
finish their request headers, and one user's share of the process whatever their number of tabs."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import websockets
from metrics import scrape, value
from servers import Cluster
from wsclient import Tab, open_tab


async def test_websockets_beyond_max_connections_are_closed_1013(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_MAX_CONNECTIONS="5", PRESENCE_HELLO_TIMEOUT_MS="20000")
    joined = [await open_tab(tabs, a, f"user{i}", "full-doc") for i in range(3)]
    silent = [await websockets.connect(a.ws_url) for _ in range(2)]  # no hello yet: they count too
    try:
        refused = await websockets.connect(a.ws_url)  # the upgrade succeeds, then the close comes
        async with asyncio.timeout(5):
            try:
                async for raw in refused:
                    raise AssertionError(f"the sixth connection was served: {raw}")
            except websockets.ConnectionClosed:
                pass
        assert refused.close_code == 1013 and refused.close_reason == "server full, retry later"
        assert value(await scrape(a), "presence_closes_total", code="1013") == 1
        assert (await joined[0].request("acquire"))["type"] == "acquired"  # the ones inside are served
        # Room again once one leaves: as soon as the server has ended that connection (its close
        # handshake completes a moment before the server's side of it is done), polled.
        await silent[0].close()
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            again = Tab(a.ws_url, "late", "full-doc")
            tabs.append(again)
            try:
                await asyncio.wait_for(again.connect(), 5)
                break
            except (AssertionError, websockets.ConnectionClosed):
                assert again.closed_code == 1013, again.closed_code  # full for a moment: nothing else
                assert asyncio.get_running_loop().time() < deadline, "no room after a connection left"
                await asyncio.sleep(0.05)
    finally:
        for ws in silent:
            await ws.close()
    # HTTP is not counted against the WebSockets: probes still answer.
    async with httpx.AsyncClient() as http:
        assert (await http.get(a.http_url + "/healthz")).status_code == 200


def _closed_after(port: int, send_every: float | None, budget: float = 10.0) -> float:
    """Opens a TCP connection and starts a request whose headers never end (one more header line
    every ``send_every`` seconds; None: nothing at all). Returns when the server closed it."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(send_every or budget)
        if send_every is not None:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        n = 0
        while time.monotonic() - started < budget:
            try:
                data = sock.recv(1024)
            except TimeoutError:
                n += 1
                sock.sendall(b"X-Slow-%d: still here\r\n" % n)
                continue
            except ConnectionResetError:
                data = b""
            assert data == b"", f"the server answered a request it never fully got: {data!r}"
            return time.monotonic() - started
    raise AssertionError(f"the connection was still open after {budget}s")


async def test_connections_that_never_finish_their_headers_are_closed(servers: Cluster) -> None:
    a = await servers.server_async("a", PRESENCE_HELLO_TIMEOUT_MS="1000")
    trickle, idle = await asyncio.gather(
        asyncio.to_thread(_closed_after, a.port, 0.2),  # a header line every 0.2 s: never done
        asyncio.to_thread(_closed_after, a.port, None),  # connects and says nothing
    )
    assert 0.9 <= trickle < 4 and 0.9 <= idle < 4, (trickle, idle)
    async with httpx.AsyncClient() as http:  # a request that arrives whole is served as always
        assert (await http.get(a.http_url + "/healthz")).status_code == 200


async def test_one_user_cannot_take_more_than_a_bounded_share(servers: Cluster, tabs: list[Tab]) -> None:
    """Ten tabs of one user, each sending `sync` within its own rate limit (15/s of 20/s):
    together they are held to the user's budget (10/s, burst 20); another user is unaffected.
    (Not `status`: a tab's presence costs no request token, it is written at most once per meta
    interval whatever the tab sends.)"""
    a = await servers.server_async("a", PRESENCE_USER_RATE_LIMIT="10")
    ws = "share-doc"
    alice = await open_tab(tabs, a, "alice", ws)
    mallory = [await open_tab(tabs, a, "mallory", ws) for _ in range(10)]
    before = value(await scrape(a), "presence_messages_in_total", type="sync")
    seconds, per_tab_rate = 3.0, 15
    started = time.monotonic()

    async def flood(t: Tab) -> None:
        for i in range(int(seconds * per_tab_rate)):
            try:
                await t.send({"type": "sync"})
            except websockets.ConnectionClosed:
                return  # refused for long enough: closed 4429, as a flood is
            await asyncio.sleep(max(0.0, started + (i + 1) / per_tab_rate - time.monotonic()))

    async def meanwhile() -> list[float]:
        took = []
        while time.monotonic() - started < seconds:
            t0 = time.monotonic()
            reply = await alice.request("acquire", timeout=5)
            assert reply["type"] in ("acquired", "busy"), reply
            took.append(time.monotonic() - t0)
            await alice.request("release", timeout=5)
            await asyncio.sleep(0.25)  # within her own budget: two requests, 7 a second
        return took

    *_, took = await asyncio.gather(*(flood(t) for t in mallory), meanwhile())
    elapsed = time.monotonic() - started
    served = value(await scrape(a), "presence_messages_in_total", type="sync") - before
    offered = len(mallory) * int(seconds * per_tab_rate)
    assert served <= 10 * elapsed + 20 + 5, (served, offered, elapsed)  # the user's budget, not 10 tabs' worth
    assert served >= 10 * seconds * 0.5, served  # and the budget is served, not starved
    errors = [m for t in mallory for m in t.of("error")]
    assert errors and {e["code"] for e in errors} == {"rate_limited"}
    assert any("this user's connections together" in e["message"] for e in errors)
    assert max(took) < 1.0, took  # alice's requests went through all along
    assert alice.closed_code is None
    assert {t.closed_code for t in mallory} <= {None, 4429}
