"""List views and backend jobs: the batch lease API, service holders over HTTP, watching many
workspaces on one socket (issue 15), against real server processes and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from metrics import scrape, value
from procs import LocalRedisCluster, RedisServer, spread
from servers import CLUSTER, Cluster
from watchclient import Watcher
from wsclient import Tab, open_tab

from presence.core.replica import Applied
from presence.core.watched import Watched
from presence.fencing import LeaseBusy, LeaseLost, ServiceLease
from presence.gateway.gateway import Gateway
from presence.gateway.keys import Keys
from presence.gateway.leases import LeaseScripts
from presence.settings import Settings

API_KEY = "k" * 40
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def test_batch_lease_api_answers_many_workspaces_at_once(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_API_KEY=API_KEY)
    alice = await open_tab(tabs, a, "alice", ws="doc-1")
    await open_tab(tabs, a, "bob", ws="doc-1")
    await open_tab(tabs, a, "bob", ws="doc-2")
    fence = (await alice.request("acquire"))["fence"]
    async with httpx.AsyncClient(base_url=a.http_url) as http:
        assert (await http.get("/api/v1/leases", params={"workspace": "doc-1"})).status_code == 401
        r = await http.get("/api/v1/leases", params=[("workspace", w) for w in ("doc-1", "doc-2", "doc-3", "doc-1")],
                           headers=AUTH)
        assert r.status_code == 200
        leases = r.json()["leases"]
        assert list(leases) == ["doc-1", "doc-2", "doc-3"]
        one = leases["doc-1"]
        assert one["holder"]["user"]["id"] == "alice" and one["fence"] == fence
        assert 0 < one["ttl_ms"] <= 15000 and one["viewers"] == 2
        assert leases["doc-2"] == {"holder": None, "fence": None, "ttl_ms": 0, "viewers": 1}
        assert leases["doc-3"] == {"holder": None, "fence": None, "ttl_ms": 0, "viewers": 0}

        assert (await http.get("/api/v1/leases", headers=AUTH)).status_code == 400
        too_many = [("workspace", f"w{i}") for i in range(501)]
        assert (await http.get("/api/v1/leases", params=too_many, headers=AUTH)).status_code == 400
        assert (await http.get("/api/v1/leases", params=too_many[:500], headers=AUTH)).status_code == 200
        bad = await http.get("/api/v1/leases", params={"workspace": "a b"}, headers=AUTH)
        assert bad.status_code == 400 and "invalid workspace id" in bad.json()["error"]


async def test_service_holder_takes_renews_and_releases_like_a_person(
    servers: Cluster, tabs: list[Tab], redis_server: RedisServer, prefix: str
) -> None:
    admin = {"Authorization": "Bearer " + "a" * 40}
    a = await servers.server_async("a", PRESENCE_API_KEY=API_KEY, PRESENCE_ADMIN_TOKEN="a" * 40)
    b = await servers.server_async("b", PRESENCE_API_KEY=API_KEY)
    bob = await open_tab(tabs, b, "bob")
    url = "/api/v1/workspaces/doc/lease"
    job = {"holder": {"id": "import", "name": "Nightly import"}, "ttl_ms": 3000}
    async with httpx.AsyncClient(base_url=a.http_url, headers=AUTH) as http:
        assert (await http.post(url, json=job, headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await http.post(url, json={"holder": {"id": ""}})).status_code == 400
        assert (await http.post(url, json={**job, "ttl_ms": 10})).status_code == 400
        r = await http.post(url, json=job)
        assert r.status_code == 201 and r.json()["ttl_ms"] == 3000
        fence = r.json()["fence"]
        # Tabs on another process see the service as the holder, flagged, and are busy.
        st = await bob.expect("state", lambda m: m.get("holder") is not None)
        assert st["holder"]["user"] == {"id": "svc:import", "name": "Nightly import", "service": True}
        busy = await bob.request("acquire")
        assert busy["type"] == "busy" and busy["holder"]["user"]["service"] is True
        again = await http.post(url, json=job)  # a retried POST: the same grant
        assert again.status_code == 201 and again.json()["fence"] == fence
        other = await http.post(url, json={"holder": {"id": "migration"}})
        assert other.status_code == 409 and other.json()["holder"]["user"]["id"] == "svc:import"

        # Renew replaces the TTL (here: longer than the default would be).
        r = await http.put(url, json={"fence": fence, "ttl_ms": 60000})
        assert r.status_code == 200 and r.json() == {"fence": fence, "ttl_ms": 60000}
        assert 50000 < redis_server.client().pttl(f"{prefix}:{{doc}}:lease") <= 60000
        lease = (await http.get(url)).json()
        assert lease["fence"] == fence and lease["holder"]["user"]["service"] is True
        row = (await http.get("/admin/api/workspaces/doc", headers=admin)).json()["workspace"]
        assert row["holder"]["user"]["service"] is True  # what the dashboard shows

        # A person whose token allows takeovers takes it; the service learns it at its renewal.
        taken = await bob.request("takeover")
        assert taken["type"] == "acquired"
        lost = await http.put(url, json={"fence": fence})
        assert lost.status_code == 409 and lost.json()["holder"]["user"]["id"] == "bob"
        assert (await http.delete(url, params={"fence": fence})).status_code == 409
        assert (await bob.request("release"))["type"] == "released"

        # Tabs wait in line behind a service as behind a person: its release hands the lease on.
        fence = (await http.post(url, json=job)).json()["fence"]
        assert (await bob.request("acquire", wait=True))["type"] == "queued"
        n = len(bob.messages)
        r = await http.delete(url, params={"fence": fence})
        assert r.status_code == 204 and r.content == b""
        handed = await bob.expect("acquired", lambda m: bob.messages.index(m) >= n)
        assert handed["fence"] > fence
        # A takeover by the service works too.
        r = await http.post(url, json={**job, "takeover": True})
        assert r.status_code == 201
        await bob.expect("released")

        deadline = time.monotonic() + 10
        while True:  # the audit writer flushes in the background
            log = (await http.get("/admin/api/audit", headers=admin)).json()["entries"]
            services = [(e["kind"], e["user"]) for e in log if e.get("service") == "1"]
            if len(services) >= 4 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        # Newest first: the service's takeover from Bob, its release, its two grants.
        assert services == [("taken_over", "svc:import"), ("released", "svc:import"),
                            ("acquired", "svc:import"), ("acquired", "svc:import")]
        bobs = next(e for e in log if e["kind"] == "taken_over" and e["user"] == "bob")
        assert bobs["from_user"] == "svc:import"


async def test_a_token_may_not_claim_a_service_id(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    tab = Tab(a.ws_url, "svc:import", "doc")
    tabs.append(tab)
    await tab.connect(expect_welcome=False)
    assert await tab.closed() == 4401


def test_service_lease_context_manager(servers: Cluster) -> None:
    a = servers.server("a", PRESENCE_API_KEY=API_KEY)
    lease_url = f"{a.http_url}/api/v1/workspaces/doc/lease"

    def holder() -> dict[str, object] | None:
        with httpx.Client(headers=AUTH) as http:
            body: dict[str, object] = http.get(lease_url).json()
        return body

    with ServiceLease(a.http_url, API_KEY, "doc", "import", name="Import", ttl_ms=900) as lease:
        assert lease.fence > 0
        time.sleep(2.0)  # more than two TTLs: only the background renewals keep it
        now = holder()
        assert now is not None and now["fence"] == lease.fence
        lease.check()
        with pytest.raises(LeaseBusy) as busy, ServiceLease(a.http_url, API_KEY, "doc", "other"):
            pass
        assert busy.value.holder is not None and busy.value.holder["user"]["id"] == "svc:import"
    after = holder()
    assert after is not None and after["holder"] is None  # released on exit

    with pytest.raises(LeaseLost), ServiceLease(a.http_url, API_KEY, "doc", "import", ttl_ms=900) as lease:
        # Another service takes it over: the renewal's 409 marks it lost; check() and exit raise.
        with httpx.Client(headers=AUTH) as http:
            r = http.post(lease_url, json={"holder": {"id": "agent"}, "takeover": True})
            assert r.status_code == 201
        deadline = time.monotonic() + 5
        while lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost):
            lease.check()


@pytest.fixture
async def watchers() -> AsyncIterator[list[Watcher]]:
    opened: list[Watcher] = []
    yield opened
    for w in opened:
        await w.close()


async def test_one_socket_watches_many_workspaces_across_processes(
    servers: Cluster, tabs: list[Tab], watchers: list[Watcher]
) -> None:
    a = await servers.server_async("a")
    b = await servers.server_async("b")
    w = Watcher(a.ws_url, "lister", workspaces=["doc-*"])
    watchers.append(w)
    await w.connect(["doc-1", "doc-2", "secret", "doc-1"], id="w1")
    refused = await w.expect("error")
    assert refused["code"] == "forbidden" and refused["workspaces"] == ["secret"]
    first = await w.expect("leases")
    assert first["id"] == "w1"
    assert first["leases"] == {"doc-1": {"holder": None, "viewers": 0}, "doc-2": {"holder": None, "viewers": 0}}
    metrics = await scrape(a)
    assert value(metrics, "presence_watchers") == 1 and value(metrics, "presence_watched_workspaces") == 2
    assert value(metrics, "presence_connections") == 0  # a watcher is no tab

    # Changes made on the other process reach the watcher within a second.
    n = len(w.messages)
    started = time.monotonic()
    alice = await open_tab(tabs, b, "alice", ws="doc-1")
    joined = await w.expect("lease", timeout=1.0, after=n)
    assert joined == {"type": "lease", "workspace": "doc-1", "holder": None, "viewers": 1}
    await alice.request("acquire")
    held = await w.expect("lease", lambda m: m["holder"] is not None, timeout=1.0, after=n)
    assert held["holder"]["user"] == {"id": "alice", "name": "Alice"} and held["viewers"] == 1
    assert time.monotonic() - started < 2.0
    # A second tab of the same user changes no count: nothing is sent for it.
    n = len(w.messages)
    await open_tab(tabs, a, "alice", ws="doc-1")
    bob = await open_tab(tabs, a, "bob", ws="doc-1")
    two = await w.expect("lease", timeout=1.0, after=n)
    assert two["viewers"] == 2 and two["holder"]["user"]["id"] == "alice"
    assert [m for m in w.messages[n:] if m["type"] == "lease"] == [two]
    # The watcher is nobody's viewer.
    assert {v["user"]["id"] for v in bob.state()["viewers"]} == {"alice", "bob"}

    # watch again replaces the set: doc-1's changes are no longer sent, doc-2's are.
    again = await w.watch(["doc-2"], "w2")
    assert again["leases"] == {"doc-2": {"holder": None, "viewers": 0}}
    assert value(await scrape(a), "presence_watched_workspaces") == 1
    n = len(w.messages)
    await alice.request("release")
    # A tab on the watcher's process comes and goes: the subscription the two shared stays.
    dave = await open_tab(tabs, a, "dave", ws="doc-2")
    assert (await w.expect("lease", timeout=1.0, after=n))["viewers"] == 1
    await dave.close()
    await w.expect("lease", lambda m: m["viewers"] == 0, timeout=1.0, after=n)
    n = len(w.messages)
    await open_tab(tabs, b, "carol", ws="doc-2")
    carol = await w.expect("lease", timeout=1.0, after=n)
    assert carol["workspace"] == "doc-2" and carol["viewers"] == 1
    assert all(m.get("workspace") != "doc-1" for m in w.messages[n:])

    # Pings as for tabs; bad frames are answered, not fatal.
    await w.expect("ping", timeout=5)
    await w.send({"type": "watch", "workspaces": ["a b"], "id": "bad"})
    bad = await w.expect("error", lambda m: m.get("id") == "bad")
    assert bad["code"] == "bad_message"
    await w.send({"type": "watch", "workspaces": [f"d{i}" for i in range(501)], "id": "big"})
    assert (await w.expect("error", lambda m: m.get("id") == "big"))["code"] == "bad_message"


async def test_a_watcher_is_closed_like_a_tab(servers: Cluster, watchers: list[Watcher]) -> None:
    a = await servers.server_async("a", PRESENCE_HEARTBEAT_MS="200", PRESENCE_DEAD_AFTER_MS="600",
                                   PRESENCE_LEASE_TTL_MS="1500", PRESENCE_GRACE_MS="500")
    bad = Watcher(a.ws_url, "x", secret="another-secret-another-secret-xx")
    watchers.append(bad)
    await bad.connect(["doc"])
    assert await bad.closed() == 4401
    silent = Watcher(a.ws_url, "quiet", answer_pings=False)
    watchers.append(silent)
    await silent.connect(["doc"])
    await silent.expect("leases")
    assert await silent.closed(timeout=5) == 4408
    crowd = Watcher(a.ws_url, "many")
    watchers.append(crowd)
    await crowd.connect([f"d{i}" for i in range(501)])
    assert await crowd.closed() == 4400


async def test_a_flooding_watcher_is_throttled_then_closed(servers: Cluster, watchers: list[Watcher]) -> None:
    a = await servers.server_async("a", PRESENCE_RATE_LIMIT="2", PRESENCE_RATE_BURST="3")
    w = Watcher(a.ws_url, "flood")
    watchers.append(w)
    await w.connect(["doc"])
    await w.expect("leases")
    for i in range(40):
        await w.send({"type": "watch", "workspaces": ["doc"], "id": i})
    limited = await w.expect("error", lambda m: m["code"] == "rate_limited")
    assert "slow down" in limited["message"]
    assert await w.closed() == 4429


@pytest.mark.cluster
async def test_watching_spans_the_nodes_of_a_redis_cluster(
    redis_cluster: LocalRedisCluster, prefix: str, tabs: list[Tab], watchers: list[Watcher]
) -> None:
    c = Cluster(redis_cluster.url, prefix)
    try:
        a = await c.server_async("a", **CLUSTER)
        b = await c.server_async("b", **CLUSTER)
        docs = spread(redis_cluster, 2, stem="listed")  # on every primary
        w = Watcher(a.ws_url, "lister")
        watchers.append(w)
        await w.connect(docs)
        first = await w.expect("leases")
        assert list(first["leases"]) == docs
        for ws in docs:  # a change on every node, made on the other process
            n = len(w.messages)
            tab = await open_tab(tabs, b, "alice", ws=ws)
            await tab.request("acquire")
            got = await w.expect("lease", lambda m, ws=ws: m["workspace"] == ws and m["holder"] is not None,
                                 timeout=1.0, after=n)
            assert got["holder"]["user"]["id"] == "alice" and got["viewers"] == 1
    finally:
        for t in tabs:
            await t.close()
        c.close()


async def test_a_workspace_nobody_used_yet_applies_its_first_event(redis_server: RedisServer) -> None:
    """Read at seq 0, a watched workspace's first event follows on from that read (no re-read that
    could fold an acquire and its quick release into one)."""
    settings = Settings(redis_url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}", dev=True).validate()
    gateway = Gateway(settings)
    await gateway.start()
    scripts = LeaseScripts(gateway, settings, Keys(settings.key_prefix))
    try:
        watched = Watched("fresh")
        snapshot = await scripts.read("fresh")
        assert snapshot.seq == 0
        watched.adopt(snapshot)
        acquired = await scripts.acquire("fresh", "svc:job", "Job", "svc:job", "")
        released = await scripts.release("fresh", None)
        assert [watched.take(e) for e in acquired.events] == [Applied.APPLIED]
        holder = watched.lease().holder
        assert holder is not None and holder.user.id == "svc:job"
        assert all(watched.take(e) is Applied.APPLIED for e in released.events)
        assert watched.lease().holder is None and not watched.stale
        never_read = Watched("other")  # unread: kept for after its first read, as ever
        assert never_read.take(acquired.events[0]) is Applied.STALE
    finally:
        await gateway.close()
