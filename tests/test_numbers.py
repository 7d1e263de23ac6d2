"""Numbers written in digits other than ASCII 0-9 (issue 22, item 9), against a real ``presence
serve``: wherever the HTTP API reads a number (a query, a path, a body), ``²``, ``①``, Arabic-Indic
and full-width digits answer 400, never 500 and never a number read from another script; the log
holds no traceback. (The WebSocket's numbers are cases of ``test_bad_input.py``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import Cluster
from procs import ServerProcess
from test_hardening import assert_no_traceback

API_KEY = "numbers-api-key-0123456789"
ADMIN = "numbers-admin-token-0123456789"
# Superscript two, circled one, Arabic-Indic three, full-width one, N'Ko one; then look-alikes
# that int() would take from ASCII: a sign, an underscore, spaces.
ODD = ["\u00b2", "\u2460", "\u0663", "\uff11", "\u07c1", "1\u00b2", "\u0661\u0660", "+1", "1_0", " 1"]


@pytest.fixture
async def server(servers: Cluster) -> ServerProcess:
    return await servers.server_async("a", PRESENCE_API_KEY=API_KEY, PRESENCE_ADMIN_TOKEN=ADMIN)


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10,
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


async def test_a_fence_in_other_digits_is_refused_with_400(server: ServerProcess, api: httpx.AsyncClient) -> None:
    taken = await api.post("/api/v1/workspaces/doc/lease", json={"holder": {"id": "job"}})
    assert taken.status_code == 201
    fence = taken.json()["fence"]
    for odd in ODD:
        r = await api.delete("/api/v1/workspaces/doc/lease", params={"fence": odd})
        assert r.status_code == 400 and "fence" in r.json()["error"], (odd, r.status_code, r.text)
        r = await api.put("/api/v1/workspaces/doc/lease", json={"fence": odd})
        assert r.status_code == 400, (odd, r.text)
        r = await api.post("/api/v1/workspaces/doc/lease", json={"holder": {"id": "job"}, "ttl_ms": odd + "000"})
        assert r.status_code == 400, (odd, r.text)
        if not odd.isascii():  # (the id "1" is fine, and so is the JSON number " 1")
            raw = '{"fence": ' + odd + "}"  # not even JSON
            r = await api.put("/api/v1/workspaces/doc/lease", content=raw.encode())
            assert r.status_code == 400, (odd, r.text)
            r = await api.get(f"/api/v1/workspaces/{odd}/lease")
            assert r.status_code == 400, (odd, r.text)
            r = await api.get("/api/v1/leases", params={"workspace": odd})
            assert r.status_code == 400, (odd, r.text)
    # The lease is untouched, and the same fence in ASCII digits releases it.
    assert (await api.get("/api/v1/workspaces/doc/lease")).json()["fence"] == fence
    r = await api.delete("/api/v1/workspaces/doc/lease", params={"fence": str(fence)})
    assert r.status_code == 204 and r.content == b""
    assert_no_traceback(server)


async def test_admin_numbers_in_other_digits_are_refused_with_400(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        for odd in ODD:
            for path in ("/admin/api/workspaces", "/admin/api/audit"):
                r = await admin.get(path, params={"limit": odd})
                assert r.status_code == 400 and "limit" in r.json()["error"], (path, odd, r.status_code, r.text)
            for before in (f"{odd}-0", f"1-{odd}"):
                r = await admin.get("/admin/api/audit", params={"before": before})
                assert r.status_code == 400 and "before" in r.json()["error"], (before, r.status_code, r.text)
        # Controls: ASCII digits are served, and a limit out of range is clamped as before.
        assert (await admin.get("/admin/api/audit", params={"limit": "5", "before": "10-0"})).status_code == 200
        assert (await admin.get("/admin/api/workspaces", params={"limit": "100000"})).status_code == 200
    assert_no_traceback(server)
