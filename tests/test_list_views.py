"""List views and backend jobs: the batch lease API, service holders over HTTP, watching many
workspaces on one socket (issue 15), against real server processes and Redis."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from conftest import Cluster
from procs import RedisServer
from wsclient import Tab, open_tab

from presence.fencing import LeaseBusy, LeaseLost, ServiceLease

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

        # Release: the tabs see the lease free again; a takeover by the service works too.
        fence = (await http.post(url, json=job)).json()["fence"]
        r = await http.delete(url, params={"fence": fence})
        assert r.status_code == 200 and r.json() == {"released": True}
        freed = await bob.expect("state", lambda m: (m.get("change") or {}).get("kind") == "released")
        assert freed["holder"] is None
        await bob.request("acquire")
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
