"""A token's ``exp`` holds for the whole connection, against a real ``presence serve``:
``welcome`` (a watcher's ``leases``) says how long it has left, ``refresh`` replaces it by a new
token of the same user, and without one the connection is closed with 4401 within
``PRESENCE_TOKEN_LEEWAY_MS`` of ``exp``, its lease kept as for a dropped tab."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from servers import Cluster, assert_no_traceback
from watchclient import Watcher
from wsclient import Tab, close_of, open_tab, token

LEEWAY_MS = 500
SHORT_S = 2  # a token's lifetime here (exp is whole seconds: 1 to 2 s from now)


def exp_of(tok: str) -> float:
    return float(jwt.decode(tok, options={"verify_signature": False})["exp"])


async def test_a_refreshed_tab_outlives_its_first_token(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_TOKEN_LEEWAY_MS=str(LEEWAY_MS))
    rita = Tab(a.ws_url, "rita", "life-doc", ttl_s=SHORT_S)
    tabs.append(rita)
    await rita.connect()
    assert rita.welcome is not None
    assert 0 < rita.welcome["expires_in_ms"] <= SHORT_S * 1000
    fence = (await rita.request("acquire"))["fence"]
    for bad in (token("mallory", ttl_s=60), "not-a-token", token("rita", ttl_s=-60),
                token("rita", ttl_s=60, takeover=False), token("rita", ttl_s=60, lease=False),
                token("rita", ttl_s=60, workspaces=["other-doc"])):
        refused = await rita.request("refresh", token=bad)
        assert refused["type"] == "error" and refused["code"] == "bad_token", refused
    refreshed = await rita.request("refresh", token=token("rita", ttl_s=60))
    assert refreshed["type"] == "refreshed" and 55_000 < refreshed["expires_in_ms"] <= 60_000, refreshed
    # Past the first token's exp and leeway, the connection and its lease go on.
    with pytest.raises(TimeoutError):
        await rita.closed(timeout=exp_of(rita.token) - time.time() + LEEWAY_MS / 1000 + 1.5)
    assert (await rita.request("acquire"))["fence"] == fence
    assert_no_traceback(a)


async def test_a_token_that_runs_out_closes_4401_and_the_lease_is_kept(servers: Cluster, tabs: list[Tab]) -> None:
    """A refused refresh leaves the old expiry; at it the tab is closed 4401 and leaves as a
    dropped tab does: its lease stays (the TTL rule), so a reconnect with a fresh token rejoins it."""
    a = await servers.server_async("a", PRESENCE_TOKEN_LEEWAY_MS=str(LEEWAY_MS))
    kim = Tab(a.ws_url, "kim", "exp-doc", ttl_s=SHORT_S)
    tabs.append(kim)
    await kim.connect()
    fence = (await kim.request("acquire"))["fence"]
    lou = await open_tab(tabs, a, "lou", "exp-doc")
    refused = await kim.request("refresh", token=token("lou", ttl_s=60))
    assert refused["code"] == "bad_token" and "another user" in refused["message"]
    assert await kim.closed(timeout=SHORT_S + LEEWAY_MS / 1000 + 2) == 4401
    late = time.time() - exp_of(kim.token)
    assert 0 <= late <= LEEWAY_MS / 1000 + 0.5, late
    busy = await lou.request("acquire")
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "kim"
    again = Tab(a.ws_url, "kim", "exp-doc", tab=kim.tab)
    tabs.append(again)
    await again.connect()
    rejoined = await again.expect("acquired")
    assert rejoined["rejoined"] is True and rejoined["fence"] == fence
    assert_no_traceback(a)


async def test_a_watchers_token_lifetime_is_a_tabs(servers: Cluster) -> None:
    a = await servers.server_async("a", PRESENCE_TOKEN_LEEWAY_MS=str(LEEWAY_MS))
    kept = Watcher(a.ws_url, "wes", ttl_s=SHORT_S)
    lapsed = Watcher(a.ws_url, "val", ttl_s=SHORT_S)
    try:
        await kept.connect(["doc"])
        await lapsed.connect(["doc"])
        leases = await kept.expect("leases")
        assert 0 < leases["expires_in_ms"] <= SHORT_S * 1000
        await kept.send({"type": "refresh", "id": "r1", "token": token("wes", ttl_s=60)})
        refreshed = await kept.expect("refreshed", lambda m: m.get("id") == "r1")
        assert 55_000 < refreshed["expires_in_ms"] <= 60_000
        assert await lapsed.closed(timeout=SHORT_S + LEEWAY_MS / 1000 + 2) == 4401
        assert kept.closed_code is None
        mark = len(kept.messages)
        assert (await kept.watch(["doc", "other"], "w2"))["leases"].keys() == {"doc", "other"}
        assert kept.messages[mark:]  # still served
    finally:
        await kept.close()
        await lapsed.close()
    assert_no_traceback(a)


async def test_refresh_is_no_first_frame(servers: Cluster) -> None:
    """``refresh`` renews an open connection's token: as a first frame it is a protocol violation."""
    a = await servers.server_async("a")
    code, reason, _ = await close_of(a.ws_url, json.dumps({"type": "refresh", "token": token("early")}))
    assert code == 4400 and reason == "the first message must be hello"
    assert_no_traceback(a)
