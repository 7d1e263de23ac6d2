"""The audit log: one stream entry per lease change, written by the process whose script made it,
with the fields operators need; bounded in Redis and in memory; never silently lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from conftest import Cluster
from procs import RedisServer
from script_support import expiry
from wsclient import Tab

from presence.core.events import Event, LeaseGranted
from presence.core.records import HolderRecord
from presence.server import Server
from presence.settings import Settings, SettingsError
from presence.wire.messages import Person

FAST = dict(heartbeat_ms=300, dead_after_ms=900, lease_ttl_ms=1500, grace_ms=600)


def make_hub(url: str, prefix: str, **kw: object) -> Server:
    return Server(Settings(redis_url=url, key_prefix=prefix, **{**FAST, **kw}), server_id="srv1")  # type: ignore[arg-type]


@pytest.fixture
async def hub(redis_server: RedisServer, prefix: str) -> AsyncIterator[Server]:
    h = make_hub(redis_server.url, prefix)
    await h.start()
    yield h
    await h.stop()


async def entries(hub: Server) -> list[dict[str, object]]:
    await asyncio.wait_for(hub.audit.drain(), 5)
    return (await hub.audit.page(None, 100))[::-1]  # oldest first


async def test_lease_changes_are_recorded_with_their_fields(hub: Server) -> None:
    lease = hub.leases
    acquired = await lease.acquire("doc-1", "alice", "Alice", "tab-a", "srv1-1")
    taken = await lease.takeover("doc-1", "bob", "Bob", "tab-b", "srv1-2")
    released = await lease.release("doc-1", taken.reply.fence, "released", "srv1-2")
    assert released.status == "relinquished"
    log = await entries(hub)
    assert [e["kind"] for e in log] == ["acquired", "taken_over", "released"]
    a, t, r = log
    assert a["workspace"] == "doc-1" and a["user"] == "alice" and a["name"] == "Alice" and a["tab"] == "tab-a"
    assert a["fence"] == acquired.reply.fence and a["server"] == "srv1" and a["origin"] == "srv1-1"
    assert "held_ms" not in a
    assert t["user"] == "bob" and t["fence"] == taken.reply.fence > a["fence"]
    assert t["from_user"] == "alice" and t["from_fence"] == a["fence"]
    # held_ms counts from the grant; the acquired event is stamped a moment later in that script
    assert 0 <= t["held_ms"] - (t["at"] - a["at"]) <= 1  # type: ignore[operator]
    assert r["user"] == "bob" and r["fence"] == t["fence"] and r["reason"] == "released"
    assert 0 <= r["held_ms"] - (r["at"] - t["at"]) <= 1  # type: ignore[operator]
    assert all(isinstance(e["at"], int) and e["at"] > 1_600_000_000_000 for e in log)
    assert all("lock" not in e for e in log)  # the workspace's own lease


async def test_a_named_locks_changes_are_recorded_with_the_lock(hub: Server) -> None:
    lease = hub.leases
    got = await lease.acquire("doc-3", "alice", "Alice", "tab-a", "srv1-1", lock="title")
    await lease.release("doc-3", got.reply.fence, "released", "srv1-1", lock="title")  # type: ignore[union-attr]
    log = await entries(hub)
    assert [(e["kind"], e.get("lock")) for e in log] == [("acquired", "title"), ("released", "title")]
    assert log[0]["fence"] == got.reply.fence  # type: ignore[union-attr]


async def test_expiry_and_revocation_are_recorded(hub: Server) -> None:
    lease = hub.leases
    await lease.acquire("doc-2", "carol", "Carol", "t", "srv1-3")
    ttl, _ = expiry(await lease.check_expiry("doc-2"))
    assert ttl is not None and ttl > 0
    await asyncio.sleep(ttl / 1000 + 0.05)  # the lease runs out in Redis: nothing to await but time
    ttl, events = expiry(await lease.check_expiry("doc-2"))
    assert ttl is None and [e.kind for e in events] == ["expired"]

    await lease.acquire("doc-3", "dave", "Dave", "t", "srv1-4")
    out = await lease.release("doc-3", None, "revoked", by=Person("admin", "Ops"))
    assert out.status == "relinquished"
    log = await entries(hub)
    expired = next(e for e in log if e["kind"] == "expired")
    assert expired["user"] == "carol" and expired["workspace"] == "doc-2"
    assert 1400 <= expired["held_ms"] < 5000  # type: ignore[operator]
    revoked = next(e for e in log if e["kind"] == "revoked")
    assert revoked["user"] == "dave" and revoked["by_id"] == "admin" and revoked["by_name"] == "Ops"


def synthetic(n: int) -> list[Event]:
    h = HolderRecord(fence=7, user="u", name="U", tab="t", since=1_700_000_000_000)
    return [LeaseGranted(seq=i + 1, at=1_700_000_000_000 + i, holder=h) for i in range(n)]


async def test_stream_stays_bounded(redis_server: RedisServer, prefix: str) -> None:
    hub = make_hub(redis_server.url, prefix, audit_max_len=100)
    await hub.start()
    try:
        for chunk in range(10):  # several flushes, as in real life
            hub.audit.on_events(f"ws-{chunk}", synthetic(150))
            await asyncio.wait_for(hub.audit.drain(), 5)
        length = redis_server.client().xlen(f"{prefix}:audit")
        # MAXLEN ~ trims whole stream nodes (100 entries each by default): bounded, not exact.
        assert 100 <= length <= 300
        assert hub.audit.written == 1500
    finally:
        await hub.stop()


async def test_full_buffer_drops_oldest_and_counts(redis_server: RedisServer, prefix: str) -> None:
    hub = make_hub(redis_server.url, prefix)  # not started: nothing is written yet
    audit = hub.audit
    audit.capacity = 5
    audit.on_events("ws", synthetic(8))
    assert len(audit.buffer) == 5 and audit.dropped == 3
    assert [e["at"] for e in audit.buffer] == [str(1_700_000_000_000 + i) for i in range(3, 8)]
    assert hub.metrics.audit_dropped._value.get() == 3


async def test_writer_retries_after_redis_comes_back(own_redis: RedisServer, prefix: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    hub = make_hub(own_redis.url, prefix)
    await hub.start()
    try:
        await own_redis.stop_async()
        with caplog.at_level(logging.ERROR, logger="presence.audit"):
            hub.audit.on_events("ws", synthetic(3))
            deadline = asyncio.get_running_loop().time() + 10
            while not any("writing 3 entries failed" in r.getMessage() for r in caplog.records):
                assert asyncio.get_running_loop().time() < deadline, "the failure was not logged"
                await asyncio.sleep(0.05)
        assert any(r.exc_info for r in caplog.records)  # with its traceback
        await own_redis.start_async()
        await asyncio.wait_for(hub.audit.drain(), 15)
        assert own_redis.client().xlen(f"{prefix}:audit") == 3
    finally:
        await hub.stop()


async def test_shutdown_flushes_the_buffer(redis_server: RedisServer, prefix: str) -> None:
    hub = make_hub(redis_server.url, prefix)
    await hub.start()
    await asyncio.wait_for(hub.registry.wait_announced(), 5)  # up and talking to Redis
    hub.audit.on_events("ws", synthetic(50))
    await hub.stop()  # no drain first: stop must write what is buffered
    assert redis_server.client().xlen(f"{prefix}:audit") == 50


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


def test_audit_max_len_setting_is_validated() -> None:
    assert Settings.from_env({"PRESENCE_AUDIT_MAX_LEN": "500"}).audit_max_len == 500
    assert Settings.from_env({}).audit_max_len == 10_000
    for bad in ("5", "lots"):
        with pytest.raises(SettingsError, match="PRESENCE_AUDIT_MAX_LEN"):
            Settings.from_env({"PRESENCE_AUDIT_MAX_LEN": bad})


async def test_forced_changes_outlive_acquire_release_churn(servers: Cluster, tabs: list[Tab]) -> None:
    """One user's acquire/release loop rewrites the whole (short) audit stream; the takeover that
    came before it stays on record in the forced stream, which such churn never touches."""
    import httpx
    from test_metrics import scrape, value

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
