"""Presence meta against real server processes and Redis: what each tab shares reaches every
other tab, coalesced, the latest winning; bad metas and floods hurt nobody else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import websockets
from servers import Cluster
from wsclient import Tab, open_tab

Msg = dict[str, Any]


def meta_of(view: Msg | None, conn: str) -> Any:
    """The meta a tab's view of the workspace shows for connection ``conn`` (None: not there)."""
    for viewer in (view or {}).get("viewers", []):
        for p in viewer.get("presence", []):
            if p["conn"] == conn:
                return p["meta"]
    return None


async def test_a_cursor_at_60_hz_is_applied_coalesced_and_every_tab_ends_with_the_last_meta(
    servers: Cluster, tabs: list[Tab]
) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    mover = await open_tab(tabs, a, "mia", "meta-doc")
    watcher = await open_tab(tabs, b, "wes", "meta-doc")
    assert mover.welcome is not None
    conn = mover.welcome["conn"]
    mark = len(watcher.messages)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 2.0:  # 60 frames a second for two seconds
        sent += 1
        await mover.send({"type": "status", "meta": {"cursor": sent}})
        await asyncio.sleep(1 / 60)
    await watcher.expect("update", lambda m: meta_of(watcher.view, conn) == {"cursor": sent}, after=mark, timeout=5)
    assert not [m for m in mover.messages if m["type"] == "error"], "a cursor is never refused"
    updates = [m for m in watcher.messages[mark:] if m["type"] == "update"]
    # Written at most once per meta interval (50 ms) and merged by the update window: far fewer
    # updates than frames, yet the last meta always lands.
    assert sent >= 100 and len(updates) <= sent // 2, (sent, len(updates))
    # A tab that joins now sees the latest meta in its snapshot.
    late = await open_tab(tabs, a, "lou", "meta-doc")
    assert meta_of(late.welcome["state"] if late.welcome else None, conn) == {"cursor": sent}


async def test_null_clears_the_meta_and_an_identical_status_tells_nobody(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    mover = await open_tab(tabs, a, "mia", "meta-clear")
    other = await open_tab(tabs, a, "oli", "meta-clear")
    assert mover.welcome is not None
    conn = mover.welcome["conn"]
    await mover.send({"type": "status", "meta": {"field": "title"}})
    await other.expect("update", lambda m: meta_of(other.view, conn) == {"field": "title"})
    await mover.send({"type": "status", "meta": None})
    await other.expect("update", lambda m: meta_of(other.view, conn) is None and m.get("viewers"))
    mark = len(other.messages)
    await mover.send({"type": "status", "meta": None})  # the same again
    await mover.send({"type": "status", "active": True})
    sync_mark = len(mover.messages)
    await mover.send({"type": "sync"})  # behind them on the same connection
    await mover.expect("state", after=sync_mark)
    assert not [m for m in other.messages[mark:] if m["type"] == "update"]


async def test_bad_metas_and_a_flood_close_only_the_offender_and_leave_nothing_behind(
    servers: Cluster, tabs: list[Tab], redis_server: Any, prefix: str
) -> None:
    a = await servers.server_async("a")
    bystander = await open_tab(tabs, a, "bea", "meta-bad")
    offender = await open_tab(tabs, a, "ofo", "meta-bad")
    big = await offender.request("status", meta={"x": "y" * 1100})
    assert big["type"] == "error" and big["code"] == "bad_message" and "1024" in big["message"]
    mark = len(offender.messages)
    await offender.send({"type": "status", "meta": [1, 2]})  # not an object: not even decoded
    wrong = await offender.expect("error", after=mark)
    assert wrong["code"] == "bad_message" and "meta" in wrong["message"]
    with contextlib.suppress(websockets.ConnectionClosed):
        for n in range(2000):  # far over 100 frames a second, sustained
            await offender.send({"type": "status", "meta": {"n": n}})
            if n % 200 == 0:
                await asyncio.sleep(0)
    assert await offender.closed(timeout=15) == 4429
    assert any(m["type"] == "error" and m["code"] == "rate_limited" for m in offender.messages)
    assert bystander.closed_code is None
    assert (await bystander.request("acquire"))["type"] == "acquired"
    await bystander.close()
    r = redis_server.client()
    deadline = time.monotonic() + 10  # polled: nothing announces that a key is gone
    while await asyncio.to_thread(r.exists, f"{prefix}:{{meta-bad}}:info"):
        assert time.monotonic() < deadline, "a presence entry was left behind"
        await asyncio.sleep(0.1)
