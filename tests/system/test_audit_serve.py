"""The audit log of ``presence serve`` processes: an expiry nobody watches is recorded, and forced
changes outlive a churn that rewrites the whole stream. (The writer itself, in process:
tests/integration/test_audit.py.)"""

from __future__ import annotations

import asyncio
import time

import httpx
from metrics import scrape, value
from procs import RedisServer
from servers import Cluster
from wsclient import Tab


async def test_expiry_after_the_last_tab_left_is_recorded(servers: Cluster, redis_server: RedisServer,
                                                          prefix: str, tabs: list[Tab]) -> None:
    """Nobody watches a workspace whose last tab closed; its grace expiry is still recorded."""
    a = await servers.server_async("a")
    t = await Tab(a.ws_url, "gina", "left-doc").connect()
    tabs.append(t)
    fence = (await t.request("acquire"))["fence"]
    await t.close()  # clean close: the lease ends after the grace period (600 ms in tests)
    r = redis_server.client()
    deadline = time.monotonic() + 5
    while not (expired := [f for _, f in r.xrange(f"{prefix}:audit") if f["kind"] == "expired"]):
        assert time.monotonic() < deadline, "the expiry was never recorded"
        await asyncio.sleep(0.05)
    assert expired[0]["user"] == "gina" and int(expired[0]["fence"]) == fence
    assert 500 <= int(expired[0]["held_ms"]) < 3000


async def test_forced_changes_outlive_acquire_release_churn(servers: Cluster, tabs: list[Tab]) -> None:
    """One user's acquire/release loop rewrites the whole (short) audit stream; the takeover that
    came before it stays on record in the forced stream, which such churn never touches."""
    admin = "audit-admin-token-0123456789"
    a = await servers.server_async("a", PRESENCE_AUDIT_MAX_LEN="100", PRESENCE_RATE_LIMIT="1000",
                                   PRESENCE_USER_RATE_LIMIT="1000", PRESENCE_ADMIN_TOKEN=admin)
    alice = await Tab(a.ws_url, "alice", "prized-doc").connect()
    bob = await Tab(a.ws_url, "bob", "prized-doc").connect()
    churner = await Tab(a.ws_url, "churn", "churn-doc").connect()
    tabs += [alice, bob, churner]
    await alice.request("acquire")
    took = await bob.request("takeover")
    assert took["type"] == "acquired"
    pairs = 300
    for i in range(pairs):  # sent back to back, answered in order
        await churner.send({"type": "acquire", "id": f"a{i}"})
        await churner.send({"type": "release", "id": f"r{i}"})
    last = await churner.expect("released", lambda m: m.get("id") == f"r{pairs - 1}", timeout=20)
    assert last["reason"] == "released"
    deadline = time.monotonic() + 10
    while value(await scrape(a), "presence_audit_written_total") < 2 + 2 * pairs:
        assert time.monotonic() < deadline, "the audit entries were not all written"
        await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=a.http_url, headers={"Authorization": f"Bearer {admin}"}) as http:
        main = (await http.get("/admin/api/audit", params={"limit": 500})).json()["entries"]
        forced = (await http.get("/admin/api/audit", params={"limit": 500, "forced": "1"})).json()["entries"]
    assert len(main) <= 300 and {e["workspace"] for e in main} == {"churn-doc"}  # the takeover is gone there
    assert [e["kind"] for e in forced] == ["taken_over"]
    t = forced[0]
    assert (t["workspace"], t["user"], t["from_user"], t["fence"]) == ("prized-doc", "bob", "alice", took["fence"])
