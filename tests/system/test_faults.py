"""Fault injection against real processes: redis-server killed and restarted, pub/sub connections
killed, a TCP proxy adding latency or cutting a server's link to Redis, a server paused with
SIGSTOP for longer than the lease TTL, a server SIGKILLed during a takeover, and SIGTERM.

Lease safety is judged with the same definition of a client's *validity window* as the chaos
soak (``chaos_check.windows``): from receiving ``acquired`` until receiving ``released``, asking
to release, or the local deadline (``ttl_ms`` of the last ``acquired``/``ping``) passing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from chaos_check import windows
from procs import RedisServer, ServerProcess
from servers import FAST, Cluster, http_status
from tcpproxy import TcpProxy
from waiting import until
from wsclient import Tab, open_tab

from presence.gateway.scripts import load_scripts

# Short timings, but with room for a server that the shared 2-core machine stalls for a second.
ENV = {
    "PRESENCE_HEARTBEAT_MS": "500",
    "PRESENCE_DEAD_AFTER_MS": "3000",
    "PRESENCE_LEASE_TTL_MS": "3000",
    "PRESENCE_GRACE_MS": "600",
    "PRESENCE_HELLO_TIMEOUT_MS": "2000",
}
TTL_S = int(ENV["PRESENCE_LEASE_TTL_MS"]) / 1000
HEARTBEAT_S = int(ENV["PRESENCE_HEARTBEAT_MS"]) / 1000
MARGIN_S = max(100, min(2000, int(ENV["PRESENCE_LEASE_TTL_MS"]) // 10)) / 1000
GRACE_S = int(ENV["PRESENCE_GRACE_MS"]) / 1000
API_KEY = "k" * 40


class FaultCluster(Cluster):
    def server(self, name: str = "server", **env: str) -> ServerProcess:
        return super().server(name, **{**ENV, **env})


@pytest.fixture
def cluster(own_redis: RedisServer, prefix: str) -> Iterator[Cluster]:
    c = FaultCluster(own_redis.url, prefix)
    yield c
    c.close()


@pytest.fixture
def proxy(own_redis: RedisServer) -> Iterator[TcpProxy]:
    p = TcpProxy(own_redis.port).start()
    yield p
    p.close()


async def lease_of(server: ServerProcess, workspace: str) -> dict[str, Any]:
    """The lease as Redis has it now, read through the lease API of a server run with ``API_KEY``."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as http:
        r = await http.get(f"/api/v1/workspaces/{workspace}/lease", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def acquire_when_free(tab: Tab, timeout: float) -> dict[str, Any]:
    """Ask for the lease until it is granted: again as soon as the tab hears it is free, and
    every 0.1 s otherwise (under the rate limit)."""
    deadline = time.monotonic() + timeout
    while True:
        mark = len(tab.messages)
        got = await tab.request("acquire", timeout=timeout)
        if got["type"] == "acquired":
            return got
        assert time.monotonic() < deadline, f"never granted: {got}"
        with contextlib.suppress(AssertionError):
            await tab.expect("state", lambda m: m.get("holder") is None, after=mark, timeout=0.1)


def window_of(tab: Tab, fence: int) -> Any:
    ws = [w for w in windows(tab.messages, tab.workspace, tab.user, tab.tab, time.monotonic()) if w.fence == fence]
    assert ws, f"{tab.user} never held fence {fence}"
    return ws[-1]


# -- Redis killed and restarted -----------------------------------------------------------------


async def test_redis_outage_server_stays_up_holder_told_lost_and_all_recovers(
    own_redis: RedisServer, cluster: Cluster, tabs: list[Tab]
) -> None:
    a, b = await cluster.server_async("a"), await cluster.server_async("b")
    alice = await open_tab(tabs, a, "alice", tab="alice-tab")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    assert got["type"] == "acquired"
    await alice.expect("ping", lambda m: m.get("ttl_ms") is not None)

    await own_redis.stop_async()
    stopped = time.monotonic()
    # Holders are told 'lost' by their local deadline, before the lease could have expired.
    lost = await alice.expect("released", timeout=TTL_S + 3)
    assert lost["reason"] == "lost"
    assert window_of(alice, got["fence"]).end - stopped < TTL_S  # told, or its deadline passed, in time
    assert lost["_t"] - stopped < TTL_S + 1  # (a second of slack for a stalled server process)
    # The servers stay up: alive, not ready; new tabs are turned away with 1013.
    await until(lambda: http_status(a, "/readyz") == 503 and http_status(b, "/readyz") == 503, 10, "readyz 503")
    assert await asyncio.to_thread(http_status, a, "/healthz") == 200
    newcomer = Tab(a.ws_url, "carol", "doc")
    await newcomer.connect(expect_welcome=False)
    assert await newcomer.closed(timeout=10) == 1013
    assert alice.closed_code is None and bob.closed_code is None  # connected tabs stay connected

    # Redis returns, empty. Everything recovers by itself: scripts reloaded, subscriptions back,
    # presence re-entered, state re-read and pushed.
    await own_redis.start_async()
    await until(lambda: http_status(a, "/readyz") == 200 and http_status(b, "/readyz") == 200, 20, "readyz 200")
    mark_a, mark_b = len(alice.messages), len(bob.messages)
    again = await acquire_when_free(bob, timeout=10)
    assert again["fence"] > got["fence"]  # fence counter re-seeded above its old values
    st = await alice.expect("state", lambda m: (m.get("holder") or {}).get("user", {}).get("id") == "bob",
                            after=mark_a, timeout=5)
    assert st["holder"]["fence"] == again["fence"]
    both = {"alice", "bob"}
    await alice.expect("state", lambda m: {v["user"]["id"] for v in m["viewers"]} == both, after=mark_a, timeout=10)
    await bob.expect("state", lambda m: {v["user"]["id"] for v in m["viewers"]} == both, after=mark_b, timeout=10)
    # New tabs are welcome again.
    carol = await open_tab(tabs, a, "carol")
    assert carol.welcome is not None and carol.welcome["state"]["holder"]["user"]["id"] == "bob"


async def test_server_started_while_redis_is_down_becomes_ready_by_itself(
    own_redis: RedisServer, prefix: str, tabs: list[Tab]
) -> None:
    """No tab can arrive to load the scripts (a balancer routes none to a process that is not
    ready): the process loads them by itself once Redis answers. Other processes loaded them into
    Redis already, so no NOSCRIPT reply reminds this one."""
    await own_redis.stop_async()
    server = ServerProcess({**FAST, **ENV, "PRESENCE_REDIS_URL": own_redis.url, "PRESENCE_KEY_PREFIX": prefix},
                           name="early")
    try:
        await server.start_async(wait_ready=False)
        assert await asyncio.to_thread(http_status, server, "/readyz") == 503
        await own_redis.start_async()
        r = own_redis.client()
        for script in load_scripts().values():
            r.script_load(script.source)
        await until(lambda: http_status(server, "/readyz") == 200, 15, "ready once Redis answers")
        alice = await open_tab(tabs, server, "alice")
        assert (await alice.request("acquire"))["type"] == "acquired"
    finally:
        server.close()


async def test_redis_refusing_writes_fails_requests_not_connections(
    own_redis: RedisServer, cluster: Cluster, tabs: list[Tab]
) -> None:
    """Redis answers but refuses writes (maxmemory reached): a request that needs one gets an
    ``unavailable`` error and every connection stays open; reads and renewals (PEXPIRE needs no
    memory) go on, so the holder keeps its lease; all works again once Redis accepts writes."""
    a = await cluster.server_async("a")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, a, "bob")
    got = await alice.request("acquire")
    r = own_redis.client()
    r.config_set("maxmemory", "1")
    try:
        assert (await bob.request("acquire"))["type"] == "busy"  # a read
        refused = await bob.request("takeover")  # a write
        assert refused["type"] == "error" and refused["code"] == "unavailable", refused
        for _ in range(2):  # the holder keeps being renewed
            await alice.expect("ping", lambda m: m.get("ttl_ms", 0) > TTL_S * 1000 // 2,
                               after=len(alice.messages))
        assert alice.closed_code is None and bob.closed_code is None and not alice.of("released")
    finally:
        r.config_set("maxmemory", "0")
    taken = await bob.request("takeover")
    assert taken["type"] == "acquired" and taken["fence"] > got["fence"]
    assert "Traceback" not in a.log(), a.log()


# -- pub/sub connections killed -----------------------------------------------------------------


async def test_takeover_while_pubsub_is_down_still_reaches_the_old_holder(
    own_redis: RedisServer, cluster: Cluster, tabs: list[Tab]
) -> None:
    a, b = await cluster.server_async("a"), await cluster.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    await bob.expect("state", lambda m: m.get("holder") is not None)
    r = own_redis.client()
    for round_ in range(4):
        taker, victim = (bob, alice) if round_ % 2 == 0 else (alice, bob)
        mark = len(victim.messages)
        await until(lambda: http_status(a, "/readyz") == http_status(b, "/readyz") == 200, 10, "pub/sub up")
        assert r.client_kill_filter(_type="pubsub") >= 2
        # The takeover is published while (some) subscriptions are down: the old holder learns it
        # from the resubscription's re-read, or its next renewal failing; either way within a
        # heartbeat or two, and long before its deadline.
        taken = await taker.request("takeover")
        assert taken["type"] == "acquired" and taken["fence"] > got["fence"]
        lost = await victim.expect("released", after=mark, timeout=TTL_S)
        assert lost["reason"] == "taken_over"
        assert lost["_t"] - taken["_t"] < 3 * HEARTBEAT_S + 1.0
        fence = taken["fence"]
        await victim.expect("state", lambda m, f=fence: (m.get("holder") or {}).get("fence") == f, after=mark)
        got = taken


# -- a TCP proxy between a server and Redis: latency and cut links ------------------------------


async def test_holder_behind_a_slow_link_is_told_lost_before_anyone_else_can_hold(
    own_redis: RedisServer, proxy: TcpProxy, cluster: Cluster, tabs: list[Tab]
) -> None:
    """Alice's server hears back from Redis through a link slower than the safety margin. Her
    local deadline must count from when the acquire was *sent*, not from when the answer came
    back: the link is cut right after she is granted the lease, and Bob (on a server with a direct
    link) is granted it the moment it expires; her validity window must end first."""
    # A 1 s heartbeat gives the server a 1 s Redis socket timeout: room for the slow replies.
    a = await cluster.server_async("a", PRESENCE_REDIS_URL=proxy.url, PRESENCE_HEARTBEAT_MS="1000")
    b = await cluster.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    latency = 2 * MARGIN_S  # Redis -> server only; within the server's Redis socket timeout
    proxy.set_latency(0.0, down=latency)
    got = await alice.request("acquire", timeout=10)
    assert got["type"] == "acquired", got
    proxy.cut()  # no renewal gets through from now on
    assert got["ttl_ms"] / 1000 <= TTL_S - MARGIN_S - latency + 0.05, got  # the round trip is taken off
    bob_got = await acquire_when_free(bob, timeout=TTL_S + 5)
    assert bob_got["fence"] > got["fence"]
    ended = window_of(alice, got["fence"])
    assert ended.end <= bob_got["_t"], f"alice still held it {ended.end - bob_got['_t']:.3f}s into bob's lease"
    lost = await alice.expect("released", timeout=5)
    assert lost["reason"] == "lost"

    proxy.heal()
    await until(lambda: http_status(a, "/readyz") == 200, 20, "a ready again")
    await alice.expect("state", lambda m: (m.get("holder") or {}).get("fence") == bob_got["fence"], timeout=10)


async def test_partitioned_server_recovers_and_its_holder_is_told(
    own_redis: RedisServer, proxy: TcpProxy, cluster: Cluster, tabs: list[Tab]
) -> None:
    """A partition (packets vanish, nothing is reset): the holder is told 'lost' before its lease
    expires; meanwhile the other server grants it; after healing, the partitioned server
    reconnects, re-subscribes, re-reads and shows the new holder, and its tabs can act again."""
    a = await cluster.server_async("a", PRESENCE_REDIS_URL=proxy.url)
    b = await cluster.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    await alice.expect("ping", lambda m: m.get("ttl_ms") is not None)
    proxy.blackhole()
    cut = time.monotonic()
    lost = await alice.expect("released", timeout=TTL_S + 2)
    assert lost["reason"] == "lost" and lost["_t"] - cut < TTL_S + 1
    assert window_of(alice, got["fence"]).end - cut < TTL_S
    bob_got = await acquire_when_free(bob, timeout=TTL_S + 5)
    assert bob_got["fence"] > got["fence"]
    assert window_of(alice, got["fence"]).end <= bob_got["_t"]
    await until(lambda: http_status(a, "/readyz") == 503, 15, "a not ready while partitioned")
    # Readiness bounds its own wait on Redis: a probe of a partitioned server answers at once.
    started = time.monotonic()
    assert await asyncio.to_thread(http_status, a, "/readyz") == 503
    assert time.monotonic() - started < 1.5

    proxy.heal()
    await until(lambda: http_status(a, "/readyz") == 200, 20, "a ready again")
    await alice.expect("state", lambda m: (m.get("holder") or {}).get("fence") == bob_got["fence"], timeout=10)
    busy = await alice.request("acquire", timeout=10)
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "bob"
    await bob.request("release")
    assert (await alice.request("acquire", timeout=10))["type"] == "acquired"


# -- a server paused for longer than the TTL ----------------------------------------------------


async def test_sigstop_longer_than_ttl_then_sigcont_holder_learns_it_lost(
    cluster: Cluster, tabs: list[Tab]
) -> None:
    a, b = await cluster.server_async("a"), await cluster.server_async("b")
    alice = await open_tab(tabs, a, "alice")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    await alice.expect("ping", lambda m: m.get("ttl_ms") is not None)
    a.signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        bob_got = await acquire_when_free(bob, timeout=TTL_S + 5)
        assert bob_got["fence"] > got["fence"]
        # Alice's client saw nothing (her server is frozen), but her own deadline already ended
        # her window before Bob's began.
        assert window_of(alice, got["fence"]).end <= bob_got["_t"]
        await asyncio.sleep(max(0.0, stopped + TTL_S + 1 - time.monotonic()))  # paused > TTL
        mark = len(alice.messages)
    finally:
        a.signal(signal.SIGCONT)
    lost = await alice.expect("released", after=mark, timeout=5)
    assert lost["reason"] in ("lost", "taken_over", "expired")
    after = alice.messages[mark:]
    # Nothing she received after waking up tells her she still holds it: a ping or acquired queued
    # before the pause carries the time left *now* (none), not the time left before the pause.
    for m in after:
        if m["type"] in ("ping", "acquired") and m.get("ttl_ms"):
            assert m["_t"] > lost["_t"] or m["ttl_ms"] == 0 or m.get("fence") not in (None, got["fence"]), m
    st = await alice.expect("state", lambda m: (m.get("holder") or {}).get("fence") == bob_got["fence"],
                            after=mark, timeout=5)
    assert st["holder"]["user"]["id"] == "bob"
    assert window_of(alice, got["fence"]).end <= bob_got["_t"]


# -- a server killed during a takeover ----------------------------------------------------------


@pytest.mark.parametrize("victim", ["taker", "holder"])
async def test_sigkill_during_takeover(cluster: Cluster, tabs: list[Tab], victim: str) -> None:
    """The server of the taker (or of the holder) is SIGKILLed while the takeover is in flight.
    Whatever got through, the outcome is consistent everywhere: either the takeover happened
    (higher fence; the holder is told 'taken_over'; the dead taker's lease then expires by itself)
    or it did not (the holder keeps lease and fence and is told nothing)."""
    servers = {"a": await cluster.server_async("a"), "b": await cluster.server_async("b")}
    w = await cluster.server_async("w", PRESENCE_API_KEY=API_KEY)
    for attempt, delay in enumerate((0.0, 0.003, 0.02)):
        ws = f"doc{attempt}"
        alice = await open_tab(tabs, servers["a"], "alice", ws)
        bob = await open_tab(tabs, servers["b"], "bob", ws)
        watch = await open_tab(tabs, w, "watcher", ws)
        got = await alice.request("acquire")
        await watch.expect("state", lambda m, f=got["fence"]: (m.get("holder") or {}).get("fence") == f)
        await bob.send({"type": "takeover", "id": "t"})
        await asyncio.sleep(delay)
        dead = "b" if victim == "taker" else "a"
        await servers[dead].kill_async()
        if victim == "holder":
            taken = await watch.expect("state", lambda m: (m.get("holder") or {}).get("user", {}).get("id") == "bob")
            assert taken["holder"]["fence"] > got["fence"]
            assert (await bob.expect("acquired"))["fence"] == taken["holder"]["fence"]
        else:
            # The taker's process is dead and reaped: nothing more of its can reach Redis, so what
            # Redis holds now (read through w, after the kill) is the outcome, and it was published
            # with the change (the takeover script changes and publishes atomically).
            truth = await lease_of(w, ws)
            assert truth["holder"] is not None, truth  # Alice's is renewed; Bob's cannot have expired yet
            if truth["holder"]["user"]["id"] == "bob":
                assert truth["fence"] > got["fence"]
                # The watcher, on a live server, is shown the new holder, and the old holder is told.
                st = await watch.expect("state", lambda m, f=truth["fence"]: (m.get("holder") or {}).get("fence") == f)
                holder = st["holder"]
                assert holder["user"]["id"] == "bob" and holder["fence"] > got["fence"]
                assert (await alice.expect("released"))["reason"] == "taken_over"
                # Nobody renews the dead taker's lease: it expires and is announced.
                # (The within-TTL+1s bound is test_e2e's; here, on a loaded machine, that it happens.)
                await watch.expect("state", lambda m: m.get("holder") is None, timeout=TTL_S + 10)
            else:
                assert truth["holder"]["user"]["id"] == "alice" and truth["fence"] == got["fence"], truth
                holder = watch.state()["holder"]
                assert holder is not None and holder["fence"] == got["fence"]
                assert not alice.of("released")
                busy = await watch.request("acquire")
                assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "alice", busy
                # Still Alice's after that round trip: nobody was shown or told anything else.
                assert not alice.of("released")
                assert all((m.get("holder") or {}).get("fence") in (None, got["fence"]) for m in watch.of("state"))
        old = servers[dead]
        old.proc = None
        servers[dead] = ServerProcess(old.settings, port=old.port, name=old.name)
        cluster.servers.append(servers[dead])
        await servers[dead].start_async()


# -- SIGTERM ------------------------------------------------------------------------------------


async def test_sigterm_closes_tabs_1012_keeps_leases_and_exits_in_time(cluster: Cluster, tabs: list[Tab]) -> None:
    a, b = await cluster.server_async("a"), await cluster.server_async("b")
    alice = await open_tab(tabs, a, "alice", tab="alice-tab")
    viewer = await open_tab(tabs, a, "viewer")
    bob = await open_tab(tabs, b, "bob")
    got = await alice.request("acquire")
    await bob.expect("state", lambda m: (m.get("holder") or {}).get("fence") == got["fence"])
    mark = len(bob.messages)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGTERM)
    termed = time.monotonic()
    assert await alice.closed(timeout=5) == 1012
    assert await viewer.closed(timeout=5) == 1012
    # It stopped accepting (the listening socket closes before the tabs are closed).
    with pytest.raises(OSError):
        await Tab(a.ws_url, "late", "doc").connect()
    rc = await asyncio.to_thread(a.proc.wait, 15)
    assert time.monotonic() - termed < 8, "shutdown took too long"
    assert rc in (0, -signal.SIGTERM), rc
    assert "Traceback" not in a.log() and "did not stop" not in a.log(), a.log()
    # The lease was kept (no grace shortening): the reloaded tab reconnects to the other server
    # well after the grace period and rejoins the same lease with the same fence.
    await asyncio.sleep(GRACE_S + 0.2)
    again = await open_tab(tabs, b, "alice", tab="alice-tab")
    rejoin = await again.expect("acquired")
    assert rejoin["rejoined"] is True and rejoin["fence"] == got["fence"]
    assert not [m for m in bob.messages[mark:] if m["type"] == "state" and m.get("holder") is None], \
        "observers saw the lease end during the restart"
    assert (await bob.request("acquire"))["type"] == "busy"


async def test_sigterm_with_redis_down_still_exits_in_time(own_redis: RedisServer, cluster: Cluster,
                                                           tabs: list[Tab]) -> None:
    a = await cluster.server_async("a")
    alice = await open_tab(tabs, a, "alice")
    await alice.request("acquire")
    await own_redis.stop_async()
    await until(lambda: http_status(a, "/readyz") == 503, 10, "not ready")
    assert a.proc is not None
    termed = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    assert await alice.closed(timeout=5) == 1012
    rc = await asyncio.to_thread(a.proc.wait, 30)
    assert time.monotonic() - termed < 15, "shutdown took too long"
    assert rc in (0, -signal.SIGTERM), rc
