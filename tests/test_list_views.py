"""List views and backend jobs: the batch lease API, service holders over HTTP, watching many
workspaces on one socket (issue 15), against real server processes and Redis."""

from __future__ import annotations

import httpx
from conftest import Cluster
from wsclient import Tab, open_tab

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
