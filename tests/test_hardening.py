"""What a hostile client, a stalled process and an operator's click used to break, each against
real ``presence serve`` processes and a real redis-server: bad-token joins that left ghosts, the
server's own stall counted as its tabs' silence, the takeover cooldown bypassed by a handoff
request, forged log lines, admin 500s, wrong keys tried without end, key and token rules, and the
pages' security headers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
import websockets
from conftest import Cluster
from procs import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hardening-test-secret-0123456789abcdef"
ADMIN = "hardening-admin-token-0123456789"
API_KEY = "hardening-api-key-0123456789"
MAX_TABS = 4


async def close_of(url: str, frame: str, **kw: Any) -> tuple[int | None, str | None, list[dict[str, Any]]]:
    """Send one frame on a fresh connection; the messages received and the close code and reason."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None, **kw) as ws:
        await ws.send(frame)
        try:
            async with asyncio.timeout(10):
                async for raw in ws:
                    messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason, messages


def assert_no_traceback(server: ServerProcess) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]


# -- 1. a join that fails leaves nothing behind -------------------------------------------------


# -- 4. the server's own stall is not its tabs' silence -----------------------------------------


# -- 5. the takeover cooldown has no back door --------------------------------------------------


# -- 6. logs: one line per record, whatever a token says ----------------------------------------


# -- 2, 7, 11. the admin API: bad input is a 400, wrong keys are slowed down --------------------


def admin_headers(ip: str, key: str = ADMIN) -> dict[str, str]:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 (a proxy on this host): each test "peer" is an address.
    return {"Authorization": f"Bearer {key}", "X-Forwarded-For": ip}


async def test_admin_answers_bad_input_with_400_not_500(servers: Cluster) -> None:
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN)
    deep = "[" * 5000 + "]" * 5000
    deep_object = '{"a":' + "[" * 1100 + "]" * 1100 + "}"  # about 2 KB, 1,100 levels
    async with httpx.AsyncClient(base_url=a.http_url, timeout=10, headers=admin_headers("10.1.0.1")) as http:
        for before in ("0-0", "99999999999999999999-0", "1-99999999999999999999", "18446744073709551616-0", "abc"):
            r = await http.get("/admin/api/audit", params={"before": before})
            assert r.status_code == 400 and "before" in r.json()["error"], (before, r.text)
        assert (await http.get("/admin/api/audit", params={"before": "18446744073709551615-1"})).status_code == 200
        assert (await http.get("/admin/api/audit", params={"before": "1-0"})).json()["entries"] == []
        for body in (deep, deep_object, "{not json", "[1, 2]", '"text"', "x" * 5000):
            r = await http.post("/admin/api/workspaces/doc/release", content=body)
            assert r.status_code == 400, (body[:20], r.status_code, r.text)
            assert r.json()["error"].startswith("the body"), r.text
        r = await http.post("/admin/api/workspaces/doc/release", content=deep_object)
        assert "nested too deeply" in r.json()["error"]
        assert (await http.post("/admin/api/workspaces/doc/release")).status_code == 409  # no body: fine
        assert (await http.post("/admin/api/workspaces/doc/release", json={"reason": "x"})).status_code == 409
        for bad_id in ("team-1/../team-2/doc", "./x", "a/./b"):
            encoded = quote(bad_id, safe="")  # as the dashboard sends it: no client resolves the dots
            for method, path in (("GET", ""), ("POST", "/release"), ("POST", "/tabs/c-1/close")):
                r = await http.request(method, f"/admin/api/workspaces/{encoded}{path}")
                assert r.status_code == 400 and r.json()["error"] == "invalid workspace id", (bad_id, path, r.text)
    live = a.ws_url.replace("/ws", "/admin/api/live")
    code, _, _ = await close_of(live, deep_object)
    assert code == 4400
    async with websockets.connect(live) as ws:  # later frames nested too deep are ignored, the feed goes on
        await ws.send(json.dumps({"token": ADMIN}))
        await ws.send(deep_object)
        await ws.send(deep)
        kinds = set()
        async with asyncio.timeout(5):
            while "state" not in kinds:
                kinds.add(json.loads(await ws.recv())["type"])
    assert_no_traceback(a)


# -- 12. the pages say what they may load and that nobody may frame them ------------------------


def test_workspace_ids_with_dot_segments_are_invalid() -> None:
    from presence.wire.messages import valid_workspace

    for bad in ("team-1/../team-2/doc", "./x", "a/./b", "..", ".", "x/.."):
        assert not valid_workspace(bad), bad
    for ok in ("a.b", "a..b", ".x", "x.", "v1.2/.hidden", "..."):
        assert valid_workspace(ok), ok


def test_decode_client_treats_deep_json_as_invalid_json() -> None:
    from presence.wire.messages import decode_client

    with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
        decode_client('{"type": "status", "meta": ' + '{"a": ' * 3000 + "1" + "}" * 3001)
