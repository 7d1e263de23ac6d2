"""Read-only tokens (claim ``lease: false``) against real server processes and Redis: presence
and meta yes, leases no; nothing changes for anyone else."""

from __future__ import annotations

import httpx
from conftest import Cluster
from wsclient import Tab, open_tab


async def test_a_read_only_token_sees_presence_and_shares_meta_but_gets_no_lease(
    servers: Cluster, tabs: list[Tab]
) -> None:
    a = await servers.server_async("a")
    b = await servers.server_async("b")
    reader = await open_tab(tabs, a, "rita", "ro-doc", lease=False)
    writer = await open_tab(tabs, b, "will", "ro-doc")
    assert reader.welcome is not None and reader.welcome.get("read_only") is True
    assert writer.welcome is not None and "read_only" not in writer.welcome
    for kind, fields in (("acquire", {}), ("acquire", {"wait": True}), ("takeover", {}), ("request", {}),
                         ("acquire", {"lock": "title"})):
        reply = await reader.request(kind, **fields)
        assert reply["type"] == "error" and reply["code"] == "forbidden", (kind, fields, reply)
    # It still shares what it is doing: the writer sees its meta.
    await reader.send({"type": "status", "meta": {"field": "title"}})
    await writer.expect("update", lambda m: any(
        p.get("meta") == {"field": "title"} for v in m.get("viewers") or m.get("joined") or [] for p in v["presence"]
    ), timeout=5)
    # Nothing changed for the others: the writer gets the free lease at once.
    got = await writer.request("acquire")
    assert got["type"] == "acquired"
    busy = await reader.request("acquire")
    assert busy["type"] == "error" and busy["code"] == "forbidden"  # forbidden, not busy: no lease question


async def test_the_demo_token_endpoint_mints_a_read_only_token(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    async with httpx.AsyncClient(base_url=a.http_url) as http:
        r = await http.get("/demo/token", params={"user": "rita", "read_only": "1"})
    assert r.status_code == 200
    tab = Tab(a.ws_url, "rita", "ro-demo")
    tab.token = r.json()["token"]
    tabs.append(tab)
    await tab.connect()
    assert tab.welcome is not None and tab.welcome.get("read_only") is True
    reply = await tab.request("acquire")
    assert reply["type"] == "error" and reply["code"] == "forbidden"
