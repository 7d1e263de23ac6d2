"""End to end over WebSockets: two `presence serve` processes on one real redis-server."""

from __future__ import annotations

import asyncio
import time

from procs import RedisServer
from servers import FAST, GRACE_S, RELAXED, TTL_S, Cluster
from wsclient import Tab, open_tab


async def test_hundred_way_race_across_two_servers_grants_exactly_one(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a", **RELAXED), await servers.server_async("b", **RELAXED)
    contenders = await asyncio.gather(
        *(open_tab(tabs, a if i % 2 else b, f"user{i}", "race") for i in range(100))
    )
    replies = await asyncio.gather(*(t.request("acquire", timeout=20) for t in contenders))
    kinds = [r["type"] for r in replies]
    assert kinds.count("acquired") == 1, kinds
    assert kinds.count("busy") == 99
    winner = contenders[kinds.index("acquired")]
    for r in replies:
        if r["type"] == "busy":
            assert r["holder"]["user"]["id"] == winner.user  # busy names the holder
    # Everyone, on both servers, converges on the same holder.
    for t in contenders:
        await t.expect(
            "state", lambda m: (m.get("holder") or {}).get("user", {}).get("id") == winner.user, timeout=20
        )


async def test_busy_names_holder_and_takeover_reaches_old_holder_on_other_server(
    servers: Cluster, tabs: list[Tab]
) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    carol = await open_tab(tabs, b, "carol")
    got = await alice.request("acquire")
    assert got["type"] == "acquired"
    busy = await bob.request("acquire")
    assert busy["type"] == "busy"
    assert busy["holder"]["user"] == {"id": "alice", "name": "Alice"}
    assert busy["holder"]["tabs"] == 1

    taken = await bob.request("takeover")
    assert taken["type"] == "acquired"
    assert taken["fence"] > got["fence"]
    lost = await alice.expect("released")
    assert lost["reason"] == "taken_over"
    assert lost["by"] == {"id": "bob", "name": "Bob"}
    for t in (alice, bob, carol):
        st = await t.expect("state", lambda m: (m.get("change") or {}).get("kind") == "taken_over")
        assert st["holder"]["user"]["id"] == "bob"
        assert st["holder"]["fence"] == taken["fence"]
        assert st["change"]["from"]["id"] == "alice"


async def test_clean_close_frees_lease_after_grace_not_before(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    assert (await alice.request("acquire"))["type"] == "acquired"
    await bob.expect("state", lambda m: m.get("holder") is not None)
    mark = len(bob.messages)
    closed_at = time.monotonic()
    await alice.close(1000)
    left = await bob.expect("state", lambda m: m["change"]["kind"] == "left", after=mark)
    assert left["holder"]["user"]["id"] == "alice"  # leaving does not end the lease at once
    freed = await bob.expect("state", lambda m: m.get("holder") is None, after=mark, timeout=GRACE_S + 3)
    elapsed = freed["_t"] - closed_at
    assert freed["change"]["kind"] == "expired"
    assert GRACE_S - 0.1 <= elapsed <= GRACE_S + 1.0, elapsed
    assert (await bob.request("acquire"))["type"] == "acquired"


async def test_reload_within_grace_keeps_lease_and_fence(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice", tab="alice-tab")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    await alice.close(1001)  # navigating away / reload
    # The reloaded page reconnects, possibly to the other server, with the same tab id.
    again = await open_tab(tabs, b, "alice", tab="alice-tab")
    rejoin = await again.expect("acquired")
    assert rejoin["rejoined"] is True
    assert rejoin["fence"] == got["fence"]
    assert again.welcome is not None and again.welcome["state"]["holder"]["fence"] == got["fence"]
    # Well past the grace period the lease is still Alice's: the rejoin restored the full TTL
    # and the heartbeat keeps renewing it.
    await asyncio.sleep(GRACE_S * 3)
    busy = await bob.request("acquire")
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "alice"
    assert not [m for m in again.messages if m["type"] == "released"]


async def test_second_tab_of_holder_shares_the_lease_in_user_scope(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    first = await open_tab(tabs, a, "alice")
    got = await first.request("acquire")
    second = await open_tab(tabs, b, "alice")
    shared = await second.expect("acquired")
    assert shared["fence"] == got["fence"]
    released = await second.request("release")
    assert released["type"] == "released"
    # Release in scope user is for all of the user's tabs.
    assert (await first.expect("released"))["reason"] == "released"


async def test_sigkill_of_holders_server_frees_lease_within_ttl(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    await alice.request("acquire")
    await bob.expect("state", lambda m: m.get("holder") is not None)
    mark = len(bob.messages)
    killed_at = time.monotonic()
    await a.kill_async()
    freed = await bob.expect("state", lambda m: m.get("holder") is None, after=mark, timeout=TTL_S + 3)
    assert freed["change"]["kind"] == "expired"
    assert freed["_t"] - killed_at <= TTL_S + 1.0
    got = await bob.request("acquire")
    assert got["type"] == "acquired"
    # Alice's dead server's tab is pruned from presence too.
    await bob.expect("state", lambda m: [v["user"]["id"] for v in m["viewers"]] == ["bob"], timeout=TTL_S + 3)


async def test_holder_learns_lost_before_ttl_when_redis_is_unreachable(
    own_redis: RedisServer, prefix: str, tabs: list[Tab]
) -> None:
    cluster = Cluster(own_redis.url, prefix)
    try:
        a = await cluster.server_async("a")
        alice = await open_tab(tabs, a, "alice")
        got = await alice.request("acquire")
        assert got["type"] == "acquired"
        await alice.expect("ping", lambda m: m.get("ttl_ms") is not None)
        await own_redis.stop_async()
        stopped_at = time.monotonic()
        lost = await alice.expect("released", timeout=TTL_S + 2)
        assert lost["reason"] == "lost"
        # The last renewal happened before Redis stopped, so the Redis TTL cannot have run out
        # before stopped_at + TTL: the holder must be told strictly earlier.
        assert lost["_t"] - stopped_at < TTL_S, lost["_t"] - stopped_at

        # Redis comes back (empty): the server recovers by itself and the lease can be taken again.
        await own_redis.start_async()
        again = await alice.request("acquire", timeout=10)
        for _ in range(40):
            if again["type"] == "acquired":
                break
            await asyncio.sleep(0.25)
            again = await alice.request("acquire", timeout=10)
        assert again["type"] == "acquired"
        assert again["fence"] > got["fence"]  # counter re-seeded from Redis TIME after data loss
    finally:
        cluster.close()


async def test_dead_tab_is_closed_4408_and_its_lease_expires(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    bob = await open_tab(tabs, a, "bob")
    zombie = await open_tab(tabs, a, "alice", answer_pings=False)
    await zombie.request("acquire")
    code = await zombie.closed(timeout=int(FAST["PRESENCE_DEAD_AFTER_MS"]) / 1000 + 3)
    assert code == 4408
    await bob.expect("state", lambda m: m.get("holder") is None, timeout=TTL_S + 3)


async def test_dropped_pubsub_connection_is_followed_by_a_fresh_state(
    servers: Cluster, redis_server: RedisServer, tabs: list[Tab]
) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    mark = len(alice.messages)
    r = redis_server.client()
    killed = r.client_kill_filter(_type="pubsub")
    assert killed >= 2
    # Changes made while the subscriptions are down are not lost: the servers re-read on resubscribe.
    assert (await bob.request("acquire"))["type"] == "acquired"
    st = await alice.expect("state", lambda m: m.get("holder") is not None, after=mark, timeout=5)
    assert st["holder"]["user"]["id"] == "bob"
    # And live updates flow again afterwards.
    await bob.request("release")
    await alice.expect("state", lambda m: m.get("holder") is None and m.get("change", {}).get("kind") == "released",
                       after=mark, timeout=5)


async def test_tab_scope_second_tab_of_same_user_is_busy_and_may_take_over(
    servers: Cluster, tabs: list[Tab]
) -> None:
    a = await servers.server_async("a", PRESENCE_LEASE_SCOPE="tab")
    b = await servers.server_async("b", PRESENCE_LEASE_SCOPE="tab")
    first = await open_tab(tabs, a, "alice", tab="tab-1")
    second = await open_tab(tabs, b, "alice", tab="tab-2")
    assert second.welcome is not None and second.welcome["scope"] == "tab"
    got = await first.request("acquire")
    assert not second.of("acquired")  # not shared: the lease belongs to tab-1 only
    busy = await second.request("acquire")
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "alice"  # "open in another tab"
    taken = await second.request("takeover")
    assert taken["fence"] > got["fence"]
    lost = await first.expect("released")
    assert lost["reason"] == "taken_over" and lost["by"]["id"] == "alice"
    # A reload of tab-1 does not get the lease back: it is tab-2's now.
    await first.close(1001)
    again = await open_tab(tabs, a, "alice", tab="tab-1")
    assert again.welcome is not None and again.welcome["state"]["holder"]["fence"] == taken["fence"]
    assert (await again.request("acquire"))["type"] == "busy"
