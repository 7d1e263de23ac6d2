"""No key outlives its use: with short settings (a key idle time of 4 s), many workspaces are
opened and left, some leases and named locks held, some tabs waiting in line, and one server is
SIGKILLed with its tabs' presence entries, a held lease, a held named lock and a waiter for each
still in Redis. Afterwards, no key of any workspace remains."""

from __future__ import annotations

import asyncio
import time

from procs import RedisServer
from servers import Cluster
from wsclient import Tab, open_tab

IDLE_S = 4.0
ENV = {"PRESENCE_KEY_IDLE_DAYS": str(IDLE_S / 86400)}


def workspace_keys(redis_server: RedisServer, prefix: str) -> list[str]:
    """Every key of a workspace under ``prefix`` (not the global ones: registry, audit stream)."""
    return sorted(k for k in redis_server.client().scan_iter(f"{prefix}:{{*", count=1000)
                  if not k.startswith(f"{prefix}:{{#registry}}"))


async def test_no_workspace_key_outlives_its_use(servers: Cluster, redis_server: RedisServer, prefix: str) -> None:
    a, b = await servers.server_async("a", **ENV), await servers.server_async("b", **ENV)
    tabs: list[Tab] = []
    for i in range(40):
        tab = await open_tab(tabs, a if i % 2 else b, f"u{i % 3}", ws=f"doc-{i}")
        if i % 4 == 0:
            assert (await tab.request("acquire"))["type"] == "acquired"
        if i % 4 == 1:
            for lock in ("title", "cell:B7"):
                assert (await tab.request("acquire", lock=lock))["type"] == "acquired"
    # On server b (to be killed): held leases and waiters in line, as a crash leaves them.
    holder = await open_tab(tabs, b, "hal", ws="crash")
    waiter = await open_tab(tabs, b, "wes", ws="crash")
    for lock in ("", "title"):
        assert (await holder.request("acquire", lock=lock))["type"] == "acquired"
        assert (await waiter.request("acquire", wait=True, lock=lock))["type"] == "queued"
    assert any(":lock:title:" in key for key in workspace_keys(redis_server, prefix))
    assert len(workspace_keys(redis_server, prefix)) > 40 * 3

    for tab in tabs:
        if tab.ws is not None and tab.url == a.ws_url:
            await tab.close()
    await asyncio.to_thread(b.kill)
    for tab in tabs:
        await tab.drop()
    left_at = time.monotonic()

    # Presence entries expire after twice the presence TTL (3 s here), leases after their TTL,
    # counters, holder records and queues after the idle time.
    deadline = left_at + IDLE_S + 2 * 1.5 + 10
    remaining = workspace_keys(redis_server, prefix)
    while remaining and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        remaining = await asyncio.to_thread(workspace_keys, redis_server, prefix)
    assert remaining == [], remaining
    assert time.monotonic() - left_at > IDLE_S - 1  # the counters did live about the idle time
