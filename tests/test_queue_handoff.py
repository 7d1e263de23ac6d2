"""Wait queue, polite handoff, fences for app backends, idle release and takeover cooldown."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import Cluster
from procs import RedisServer
from script_support import expiry
from wsclient import Tab, open_tab

from presence.core.records import TabInfo
from presence.fencing import FenceGuard, HttpFenceGuard, StaleFence
from presence.gateway.gateway import Gateway
from presence.gateway.keys import Keys
from presence.gateway.leases import LeaseScripts
from presence.settings import Settings

# -- the scripts ------------------------------------------------------------------------------


@pytest.fixture
async def lease(redis_server: RedisServer) -> AsyncIterator[LeaseScripts]:
    settings = Settings(
        redis_url=redis_server.url, heartbeat_ms=300, dead_after_ms=900, lease_ttl_ms=1500, grace_ms=400,
        handoff_timeout_ms=1000, key_prefix=f"t{uuid.uuid4().hex[:8]}", dev=True,
    ).validate()
    store = Gateway(settings)
    await store.start()
    yield LeaseScripts(store, settings, Keys(settings.key_prefix))
    await store.close()


def info(user: str) -> TabInfo:
    return TabInfo(user, user.title(), f"{user}-tab", True, None, "test")


async def test_release_hands_the_lease_to_the_first_live_waiter(lease: LeaseScripts) -> None:
    for user in ("alice", "bob", "carol", "dave"):
        await lease.join("doc", f"c-{user}", info(user))
    fence = (await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice")).reply.fence
    for user in ("bob", "carol", "dave"):
        out = await lease.acquire("doc", user, user.title(), f"{user}-tab", f"c-{user}", wait=True)
        assert out.status == "waiting"
    assert out.reply.position == 3
    # Bob's tab died without leaving: its presence entry is stale. He is skipped, Carol is next.
    await lease.gateway.client.zadd(lease.keys.workspace("doc").tabs, {"c-bob": 1})
    out = await lease.release("doc", fence, origin="c-alice")
    assert out.status == "relinquished"
    assert out.reply.next.id == "carol"
    granted = out.events[-1]
    assert granted.kind == "acquired" and granted.handoff == "c-carol"
    assert granted.holder is not None and granted.holder.user == "carol" and granted.holder.fence > fence
    assert granted.queue == {"c-dave": 1}
    assert await lease.gateway.client.lrange(lease.keys.workspace("doc").queue, 0, -1) == ["c-dave"]


async def test_expiry_hands_the_lease_on_too(lease: LeaseScripts) -> None:
    await lease.join("doc", "c-bob", info("bob"))
    await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice")
    await lease.acquire("doc", "bob", "Bob", "bob-tab", "c-bob", wait=True)
    await lease.gateway.client.pexpire(lease.keys.workspace("doc").lease, 1)
    await asyncio.sleep(0.05)
    ttl, events = expiry(await lease.check_expiry("doc"))
    assert ttl is not None and ttl > 1000  # held again at once: by Bob
    assert [e.kind for e in events] == ["expired", "acquired"]
    assert events[1].holder is not None and events[1].holder.user == "bob"


async def test_request_decline_cancel_and_timeout(lease: LeaseScripts) -> None:
    await lease.join("doc", "c-bob", info("bob"))
    fence = (await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice")).reply.fence
    asked = await lease.request("doc", "bob", "Bob", "bob-tab", "c-bob", "may I?")
    assert asked.status == "asked" and asked.reply.deadline_ms == 1000
    assert asked.events[-1].request is not None and asked.events[-1].request.message == "may I?"
    other = await lease.request("doc", "carol", "Carol", "carol-tab", "c-carol", "")
    assert other.status == "pending"  # Bob's request comes first
    assert (await lease.handoff("doc", "decline", fence - 1)).status == "no_request"  # only the holder declines
    declined = await lease.handoff("doc", "decline", fence)
    assert declined.status == "ended" and declined.events[-1].target == "c-bob"

    await lease.request("doc", "bob", "Bob", "bob-tab", "c-bob", "")
    assert (await lease.handoff("doc", "cancel", "c-bob")).reply.reason == "cancelled"

    await lease.request("doc", "bob", "Bob", "bob-tab", "c-bob", "")
    early = await lease.handoff("doc", "timeout", "c-bob", may_take_over=True)
    assert early.status == "early" and 0 < early.reply.left_ms <= 1000
    await asyncio.sleep(early.reply.left_ms / 1000 + 0.05)
    taken = await lease.handoff("doc", "timeout", "c-bob", may_take_over=True)
    assert taken.status == "taken_over" and taken.reply.fence > fence
    assert taken.events[-1].from_ is not None and taken.events[-1].from_.id == "alice"


async def test_takeover_cooldown(lease: LeaseScripts) -> None:
    lease.settings = Settings(**{**{f: getattr(lease.settings, f) for f in lease.settings.__dataclass_fields__},
                                 "takeover_cooldown_ms": 5000})
    await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice")
    assert (await lease.takeover("doc", "bob", "Bob", "bob-tab", "c-bob")).status == "taken_over"
    back = await lease.takeover("doc", "alice", "Alice", "alice-tab", "c-alice")
    assert back.status == "cooldown" and 0 < back.reply.retry_ms <= 5000


# -- end to end over two server processes -------------------------------------------------------


async def test_queue_order_across_two_servers(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    carol = await open_tab(tabs, a, "carol")
    got = await alice.request("acquire")
    first = await bob.request("acquire", wait=True)
    assert first == {**first, "type": "queued", "position": 1}
    second = await carol.request("acquire", wait=True)
    assert second["type"] == "queued" and second["position"] == 2
    st = await alice.expect("state", lambda m: len(m["queue"]) == 2)
    assert [p["id"] for p in st["queue"]] == ["bob", "carol"]

    mark = len(carol.messages)
    await alice.request("release")
    won = await bob.expect("acquired")
    assert won["fence"] > got["fence"]
    assert (await carol.expect("queued", after=mark))["position"] == 1
    await carol.expect("state", lambda m: (m["holder"] or {}).get("user", {}).get("id") == "bob", after=mark)

    await bob.request("release")
    assert (await carol.expect("acquired"))["fence"] > won["fence"]


async def test_leaving_or_releasing_removes_a_waiter(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob")
    carol = await open_tab(tabs, a, "carol")
    await alice.request("acquire")
    await bob.request("acquire", wait=True)
    await carol.request("acquire", wait=True)
    out = await bob.request("release")  # a waiter's release leaves the queue
    assert out["type"] == "released"
    assert (await carol.expect("queued", lambda m: m["position"] == 1))["position"] == 1
    await carol.close()
    await alice.expect("state", lambda m: m["queue"] == [] and m["change"]["kind"] == "left")
    await alice.request("release")
    await alice.expect("state", lambda m: m["holder"] is None)
    assert not bob.of("acquired")


async def test_dead_waiters_server_is_skipped(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    carol = await open_tab(tabs, a, "carol")
    got = await alice.request("acquire")
    await bob.request("acquire", wait=True)
    await carol.request("acquire", wait=True)
    await b.kill_async()  # Bob's server dies: nobody removes him from the queue but the prune of his presence
    await alice.expect("state", lambda m: [p["id"] for p in m["queue"]] == ["carol"], timeout=5)
    mark = len(alice.messages)
    await alice.request("release")
    # The release hands the lease to Carol, first in line once Bob's dead tab is pruned: a new grant she
    # did not ask for again (no request id), and the others are shown her with that fence, nobody in line.
    won = await carol.expect("acquired")
    assert won["fence"] > got["fence"] and won["ttl_ms"] > 0 and "id" not in won, won
    st = await alice.expect("state", lambda m: m["holder"] is not None, after=mark)
    assert st["holder"]["user"]["id"] == "carol" and st["holder"]["fence"] == won["fence"], st
    assert st["queue"] == []


async def test_handoff_accepted(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    asked = await bob.request("request", message="can I fix a typo?")
    assert asked["type"] == "asked" and asked["holder"]["user"]["id"] == "alice"
    req = await alice.expect("requested")
    assert req["by"] == {"id": "bob", "name": "Bob"} and req["message"] == "can I fix a typo?"
    assert req["deadline_ms"] > 0
    st = await alice.expect("state", lambda m: m["request"] is not None)
    assert st["request"]["by"]["id"] == "bob"
    await alice.request("release")  # "Give it"
    won = await bob.expect("acquired")
    assert won["fence"] > got["fence"]
    await bob.expect("state", lambda m: m["request"] is None and m["holder"]["user"]["id"] == "bob")


async def test_handoff_declined(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    await bob.request("request")
    await alice.expect("requested")
    out = await alice.request("decline")  # "Keep it"
    assert out["type"] == "declined"
    told = await bob.expect("declined")
    assert told["reason"] == "declined" and told["by"]["id"] == "alice"
    assert (await bob.request("acquire"))["type"] == "busy"
    assert (await alice.request("acquire"))["fence"] == got["fence"]


async def test_requester_withdraws_its_request_with_release(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob")
    await alice.request("acquire")
    await bob.request("request")
    await alice.expect("state", lambda m: m["request"] is not None)
    out = await bob.request("release")
    assert out["type"] == "declined" and out["reason"] == "cancelled"
    await alice.expect("state", lambda m: m["request"] is None)
    assert (await bob.request("release"))["code"] == "not_holder"  # nothing left to give up
    assert not alice.of("released")


async def test_handoff_times_out_into_a_takeover(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b", PRESENCE_HANDOFF_TIMEOUT_MS="1000")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    asked = await bob.request("request")
    assert asked["deadline_ms"] == 1000
    start = time.monotonic()
    won = await bob.expect("acquired", timeout=5)
    assert time.monotonic() - start >= 0.9
    assert won["fence"] > got["fence"]
    lost = await alice.expect("released")
    assert lost["reason"] == "taken_over" and lost["by"]["id"] == "bob"


async def test_handoff_times_out_without_takeover_when_the_token_forbids_it(
    servers: Cluster, tabs: list[Tab]
) -> None:
    a = await servers.server_async("a", PRESENCE_HANDOFF_TIMEOUT_MS="1000")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob", takeover=False)
    await alice.request("acquire")
    await bob.request("request")
    told = await bob.expect("declined", timeout=5)
    assert told["reason"] == "timeout"
    assert not alice.of("released")
    assert (await bob.request("takeover"))["code"] == "takeover_forbidden"


async def test_idle_holder_releases(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_IDLE_RELEASE_MS="500")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob")
    await alice.request("acquire")
    await alice.send({"type": "status", "active": True})
    await asyncio.sleep(0.8)  # an active holder keeps the lease past the idle limit
    assert not alice.of("released")
    started = time.monotonic()
    await alice.send({"type": "status", "active": False})
    lost = await alice.expect("released", timeout=5)
    assert lost["reason"] == "idle"
    assert time.monotonic() - started >= 0.45
    st = await bob.expect("state", lambda m: (m.get("change") or {}).get("kind") == "idle")
    assert st["holder"] is None


async def test_takeover_cooldown_stops_takeover_wars(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_TAKEOVER_COOLDOWN_MS="5000")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob")
    await alice.request("acquire")
    assert (await bob.request("takeover"))["type"] == "acquired"
    back = await alice.request("takeover")
    assert back["type"] == "error" and back["code"] == "takeover_cooldown"
    assert (await bob.request("acquire"))["type"] == "acquired"  # still Bob's


async def test_lease_api_and_fence_helpers(
    servers: Cluster, redis_server: RedisServer, prefix: str, tabs: list[Tab]
) -> None:
    key = "k" * 40
    a = await servers.server_async("a", PRESENCE_API_KEY=key)
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob")
    old = (await alice.request("acquire"))["fence"]
    async with httpx.AsyncClient(base_url=a.http_url) as http:
        assert (await http.get("/api/v1/workspaces/doc/lease")).status_code == 401
        wrong = await http.get("/api/v1/workspaces/doc/lease", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        body = (await http.get("/api/v1/workspaces/doc/lease", headers={"Authorization": f"Bearer {key}"})).json()
    assert body["fence"] == old and body["holder"]["user"]["id"] == "alice" and 0 < body["ttl_ms"] <= 1500

    new = (await bob.request("takeover"))["fence"]
    guard = FenceGuard(redis_server.client(), prefix=prefix)
    guard.check("doc", new)
    with pytest.raises(StaleFence) as err:
        guard.check("doc", old)  # Alice's save after the takeover is rejected
    assert err.value.current == new
    http_guard = HttpFenceGuard(a.http_url, key)
    await asyncio.to_thread(http_guard.check, "doc", new)
    with pytest.raises(StaleFence):
        await asyncio.to_thread(http_guard.check, "doc", old)
