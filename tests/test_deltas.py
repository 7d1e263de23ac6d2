"""Presence deltas against real server processes and a real Redis.

The property: after the snapshot of ``welcome``, a tab that applies every ``update`` in order holds
exactly the state a new tab is given at that sequence number, whatever happened in between (joins,
leaves, status changes, acquires, waiting in line, takeovers, releases, named locks, handoff requests and
declines), on both server processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from conftest import Cluster
from delta import comparable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsclient import Tab

# Nothing expires while an example runs: every change is one the example made.
# Every status is written before the next frame is read (no coalescing): the example's steps are in order.
SLOW = {"PRESENCE_HEARTBEAT_MS": "1000", "PRESENCE_DEAD_AFTER_MS": "10000", "PRESENCE_LEASE_TTL_MS": "60000",
        "PRESENCE_GRACE_MS": "30000", "PRESENCE_META_INTERVAL_MS": "0"}
USERS = ["ann", "bob", "cat", "dan"]

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.integers(0, len(USERS) - 1), st.integers(0, 1)),
        st.tuples(st.sampled_from(["leave", "acquire", "wait", "takeover", "release", "request", "decline",
                                   "active", "idle", "meta", "lock", "unlock"]), st.integers(0, 99), st.just(0)),
    ),
    min_size=1, max_size=25,
)


async def _run(urls: list[str], ops: list[tuple[str, int, int]]) -> None:
    ws = f"prop-{uuid.uuid4().hex[:8]}"
    opened: list[Tab] = []
    try:
        watchers = [await _open(opened, url, "watcher", ws) for url in urls]
        tabs: list[Tab] = []
        for kind, a, b in ops:
            if kind == "join":
                tabs.append(await _open(opened, urls[b], USERS[a], ws))
                continue
            if not tabs:
                continue
            tab = tabs[a % len(tabs)]
            if kind == "leave":
                tabs.remove(tab)
                await tab.close()
            elif kind in ("active", "idle"):
                await _status(tab, active=kind == "active")
            elif kind == "meta":
                await _status(tab, meta={"cursor": a})
            elif kind == "wait":
                await tab.request("acquire", wait=True)
            elif kind in ("lock", "unlock"):  # a named lock of the workspace
                await tab.request("acquire" if kind == "lock" else "release", lock=f"cell:{a % 3}")
            else:
                await tab.request(kind)
        # A new tab's snapshot: the watchers must reach the same state by their updates alone.
        fresh = await _open(opened, urls[0], "fresh", ws)
        assert fresh.welcome is not None
        snapshot = fresh.welcome["state"]
        for watcher in watchers:
            rebuilt = await watcher.expect("state", lambda m: m["seq"] >= snapshot["seq"], timeout=10)
            assert rebuilt["seq"] == snapshot["seq"]
            assert comparable(rebuilt) == comparable(snapshot)
            assert watcher.gaps == 0, "every update followed on from the one before"
            assert watcher.of("update"), "changes reach a welcomed tab as updates"
    finally:
        for t in opened:
            with contextlib.suppress(Exception):
                await t.drop()


async def _status(tab: Tab, **fields: Any) -> None:
    """``status`` has no reply; a ``sync`` behind it on the same connection answers once it is done."""
    mark = len(tab.messages)
    await tab.send({"type": "status", **fields})
    await tab.send({"type": "sync"})
    await tab.expect("state", lambda m: not m.get("rebuilt"), after=mark)


async def _open(opened: list[Tab], url: str, user: str, ws: str) -> Tab:
    tab = Tab(url, user, ws)
    opened.append(tab)
    return await tab.connect()


def test_updates_rebuild_the_snapshot_across_two_servers(servers: Cluster) -> None:
    urls = [servers.server("a", **SLOW).ws_url, servers.server("b", **SLOW).ws_url]

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=OPS)
    def check(ops: list[tuple[str, int, int]]) -> None:
        asyncio.run(_run(urls, ops))

    check()
