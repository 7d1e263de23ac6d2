"""What a hostile client, a stalled process and an operator's click used to break, each against
real ``presence serve`` processes and a real redis-server: bad-token joins that left ghosts, the
server's own stall counted as its tabs' silence, the takeover cooldown bypassed by a handoff
request, forged log lines, admin 500s, wrong keys tried without end, key and token rules, and the
pages' security headers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import msgspec
import pytest
import websockets
from metrics import scrape, value
from paths import ROOT
from procs import RedisServer
from servers import FAST, Cluster, assert_no_traceback
from waiting import eventually
from wsclient import Tab, close_of, open_tab

from presence import auth, logctx
from presence.auth import Identity
from presence.connections.credential import Credential
from presence.connections.output import Output
from presence.connections.tab import Tab as ServerTab
from presence.server import Server
from presence.settings import Settings, SettingsError
from presence.wire.messages import Person, ServerMessage, Welcome

SECRET = "hardening-test-secret-0123456789abcdef"
ADMIN = "hardening-admin-token-0123456789"
API_KEY = "hardening-api-key-0123456789"
MAX_TABS = 4


def token(sub: str = "mallory", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "name": sub.title(), "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


def hello(workspace: str, tok: str, tab: str = "t1") -> str:
    return json.dumps({"type": "hello", "token": tok, "workspace": workspace, "tab": tab})


# -- 1. a join that fails leaves nothing behind -------------------------------------------------


async def test_300_bad_token_joins_leave_no_ghosts(
    servers: Cluster, redis_server: RedisServer, prefix: str, tabs: list[Tab]
) -> None:
    """Tokens whose name or sub hold a lone surrogate (what a JSON encoder makes of a broken
    display name) close 4401, and 300 of them leave no tab, room, subscription or registry entry
    behind, nor use up the user's tab allowance."""
    a = await servers.server_async("a", PRESENCE_SECRET=SECRET, PRESENCE_MAX_TABS_PER_USER=str(MAX_TABS))
    ws = "ghost-town"
    bad = [token("mallory", name="Mal\ud800lory"), token("mallory\udfff"), token("mallory", ws=["ghost\ud800*"])]

    async def attempt(i: int) -> tuple[int | None, str | None]:
        code, reason, messages = await close_of(a.ws_url, hello(ws, bad[i % len(bad)], tab=f"t{i}"))
        assert not [m for m in messages if m["type"] == "welcome"], messages
        return code, reason

    results = []
    for start in range(0, 300, 30):  # 30 at a time
        results += await asyncio.gather(*(attempt(i) for i in range(start, start + 30)))
    assert {code for code, _ in results} == {4401}, set(results)
    assert all(reason and "Unicode" in reason for _, reason in results), set(results)

    r = redis_server.client()
    s = await scrape(a)
    assert value(s, "presence_connections") == 0 and value(s, "presence_workspaces") == 0
    assert r.keys(f"{prefix}:{{{ws}}}:*") == []  # no presence entry, no lease, no counters
    assert r.pubsub_channels(f"{prefix}:{{*") == []  # no workspace subscription
    assert ws not in r.zrange(f"{prefix}:{{#registry}}:workspaces", 0, -1)
    # The user's allowance is intact: MAX_TABS tabs get in, one more does not.
    for i in range(MAX_TABS):
        await open_tab(tabs, a, "mallory", ws, tab=f"real-{i}", secret=SECRET)
    code, _, _ = await close_of(a.ws_url, hello(ws, token("mallory"), tab="one-too-many"))
    assert code == 4429
    await asyncio.sleep(3 * int(FAST["PRESENCE_HEARTBEAT_MS"]) / 1000)  # a few heartbeats over the real tabs
    assert_no_traceback(a)


class _WelcomeFails(ServerTab):
    """A tab whose welcome cannot be sent: a join that fails after Redis has the tab."""

    def send(self, message: ServerMessage) -> None:
        if isinstance(message, Welcome):
            raise RuntimeError("the welcome cannot be sent")
        super().send(message)


class _NoSocket:
    async def send_text(self, data: str) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


def _server_tab(
    hub: Server, conn: str, user: str, ws: str, tab_id: str, kind: type[ServerTab] = ServerTab
) -> ServerTab:
    """A tab of ``hub`` on a connection that sends nowhere (stop its output after)."""
    output = Output(_NoSocket(), conn)
    identity = Identity(Person(user, user.title()), None, True)
    return kind(output, Credential(identity, output, hub.endpoint.parts.verifier), ws, tab_id)


@pytest.fixture
async def hub(redis_server: RedisServer, prefix: str) -> AsyncIterator[Server]:
    settings = Settings(redis_url=redis_server.url, key_prefix=prefix, heartbeat_ms=300, dead_after_ms=900,
                        lease_ttl_ms=1500, grace_ms=600)
    server = Server(settings, server_id="hub1")
    await server.start()
    await asyncio.wait_for(server.registry.wait_announced(), 5)
    yield server
    await server.stop()


async def test_a_join_that_fails_after_redis_took_the_tab_undoes_it(
    hub: Server, redis_server: RedisServer, prefix: str
) -> None:

    r = redis_server.client()
    tab = _server_tab(hub, "hub1-1", "gina", "undo-doc", "tab-g", _WelcomeFails)
    try:
        with pytest.raises(RuntimeError, match="welcome"):
            await hub.workspaces.join(tab)
    finally:
        await tab.output.stop()
    assert "undo-doc" not in hub.workspaces
    assert r.zcard(f"{prefix}:{{undo-doc}}:tabs") == 0 and r.hlen(f"{prefix}:{{undo-doc}}:info") == 0
    await eventually(lambda: r.pubsub_channels(f"{prefix}:{{undo-doc}}") == [], what="unsubscribed")
    # Someone joining next sees nobody else.
    ok = _server_tab(hub, "hub1-2", "hal", "undo-doc", "tab-h")
    try:
        await hub.workspaces.join(ok)
        core = hub.workspaces.core("undo-doc")
        assert len(core) == 1 and [v.user.id for v in core.state().viewers] == ["hal"]
        assert r.hkeys(f"{prefix}:{{undo-doc}}:info") == ["hub1-2"]
        await hub.workspaces.leave(ok, clean=True)
    finally:
        await ok.output.stop()


# -- 4. the server's own stall is not its tabs' silence -----------------------------------------


async def test_after_a_stall_tabs_get_a_fresh_ping_and_a_full_dead_after(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")  # heartbeat 300 ms, dead after 900 ms
    dead_after = int(FAST["PRESENCE_DEAD_AFTER_MS"]) / 1000
    live = await open_tab(tabs, a, "alice", "stall-doc")
    silent = await open_tab(tabs, a, "bob", "stall-doc", answer_pings=False)
    a.signal(signal.SIGSTOP)  # well within bob's dead_after: only the stall makes him look dead
    try:
        await asyncio.sleep(2.5 * dead_after)
        mark = len(live.messages)
    finally:
        a.signal(signal.SIGCONT)
    resumed = time.monotonic()
    # Bob never answers: he is closed, but only a full dead_after after the server woke up.
    assert await silent.closed(timeout=10) == 4408
    assert time.monotonic() - resumed >= dead_after - 0.1
    # Alice answers her fresh ping and stays.
    await live.expect("ping", after=mark, timeout=5)
    await live.expect("state", lambda m: all(v["user"]["id"] != "bob" for v in m["viewers"]), after=mark)
    assert live.closed_code is None
    assert (await live.request("acquire"))["type"] == "acquired"
    assert "was stalled" in a.log_path.read_text(errors="replace")


# -- 5. the takeover cooldown has no back door --------------------------------------------------


async def test_a_request_cannot_force_the_lease_away_during_the_cooldown(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_TAKEOVER_COOLDOWN_MS="60000", PRESENCE_HANDOFF_TIMEOUT_MS="1000")
    alice = await open_tab(tabs, a, "alice", "cool-doc")
    bob = await open_tab(tabs, a, "bob", "cool-doc")
    assert (await alice.request("acquire"))["type"] == "acquired"
    took = await bob.request("takeover")
    assert took["type"] == "acquired", took
    refused = await alice.request("takeover")
    assert refused["type"] == "error" and refused["code"] == "takeover_cooldown"
    mark_a, mark_b = len(alice.messages), len(bob.messages)
    asked = await alice.request("request", message="please")
    assert asked["type"] == "asked" and asked["deadline_ms"] == 1000
    await bob.expect("requested", after=mark_b)
    ended = await alice.expect("declined", after=mark_a, timeout=5)
    assert ended["reason"] == "cooldown"
    assert not alice.of("acquired")[1:]  # only her first grant, long gone
    assert not [m for m in bob.messages[mark_b:] if m["type"] == "released"]
    busy = await alice.request("acquire")
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "bob"
    # The request's end reaches the others' view with the next update (lease news goes first).
    await alice.expect("state", lambda m: m["holder"]["fence"] == took["fence"] and m["request"] is None, after=mark_a)


# -- 6. logs: one line per record, whatever a token says ----------------------------------------


async def test_ids_cannot_forge_log_lines(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_SECRET=SECRET)
    forged = "2030-01-01 00:00:00,000 ERROR presence.admin: lease of bank revoked by an operator"
    tab = Tab(a.ws_url, f"eve\n{forged}", "log-doc", tab="eve-1", secret=SECRET)
    tabs.append(tab)
    await tab.connect()
    await tab.close()
    await eventually(lambda: "left (clean)" in a.log_path.read_text(errors="replace"), what="the leave logged")
    lines = a.log_path.read_text(errors="replace").splitlines()
    assert not [line for line in lines if line.startswith("2030-01-01")], lines
    assert any("eve\\x0a2030-01-01" in line and "joined" in line for line in lines), lines


def test_the_text_format_escapes_controls_in_message_and_context() -> None:
    import logging

    record = logging.LogRecord("presence.x", logging.INFO, __file__, 1, "user %s", ("a\r\nb\u2028c",), None)
    record.ctx = " [req=x\ny]"
    out = logctx.TextFormatter().format(record)
    assert "\n" not in out and "\r" not in out and "\u2028" not in out
    assert out.endswith("[req=x\\x0ay]: user a\\x0d\\x0ab\\u2028c")


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


async def test_wrong_keys_from_one_peer_are_slowed_down(servers: Cluster) -> None:
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN, PRESENCE_API_KEY=API_KEY)
    async with httpx.AsyncClient(base_url=a.http_url, timeout=10) as http:
        for _ in range(10):
            r = await http.get("/admin/api/servers", headers=admin_headers("10.2.0.1", "wrong-admin-token-123"))
            assert r.status_code == 401
        r = await http.get("/admin/api/servers", headers=admin_headers("10.2.0.1"))  # even the right one now
        assert r.status_code == 429 and 50 <= int(r.headers["retry-after"]) <= 60, r.text
        r = await http.get("/api/v1/workspaces/doc/lease", headers=admin_headers("10.2.0.1", API_KEY))
        assert r.status_code == 429  # one count per peer, whichever key it guessed
        # Another peer is not affected.
        assert (await http.get("/admin/api/servers", headers=admin_headers("10.2.0.2"))).status_code == 200
        r = await http.get("/api/v1/workspaces/doc/lease", headers=admin_headers("10.2.0.2", API_KEY))
        assert r.status_code == 200
        for _ in range(10):
            r = await http.get("/api/v1/workspaces/doc/lease", headers=admin_headers("10.2.0.3", "wrong-api-key-12345"))
            assert r.status_code == 401
        r = await http.get("/api/v1/workspaces/doc/lease", headers=admin_headers("10.2.0.3", API_KEY))
        assert r.status_code == 429
    live = a.ws_url.replace("/ws", "/admin/api/live")
    code, reason, _ = await close_of(live, json.dumps({"token": ADMIN}),
                                     additional_headers={"X-Forwarded-For": "10.2.0.1"})
    assert code == 4429 and reason and "retry in" in reason


def test_operator_keys_must_be_long_and_tokens_may_name_issuer_and_audience() -> None:
    for name in ("PRESENCE_ADMIN_TOKEN", "PRESENCE_API_KEY"):
        with pytest.raises(SettingsError, match=f"{name} must be at least 16 characters"):
            Settings.from_env({name: "short-key"})
        assert Settings.from_env({name: "k" * 16, "PRESENCE_SECRET": SECRET}).validate()
    s = Settings.from_env({"PRESENCE_TOKEN_ISSUER": "https://app.example", "PRESENCE_TOKEN_AUDIENCE": "presence"})
    assert (s.token_issuer, s.token_audience) == ("https://app.example", "presence")


def test_serve_refuses_a_short_admin_token() -> None:
    env = {"PATH": "/usr/bin:/bin", "PRESENCE_ADMIN_TOKEN": "admin", "PRESENCE_SECRET": SECRET}
    out = subprocess.run([sys.executable, "-m", "presence", "serve"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=30)
    assert out.returncode == 2 and "PRESENCE_ADMIN_TOKEN must be at least 16 characters" in out.stderr


def test_token_command_warns_of_prefixes_without_a_slash() -> None:
    env = {"PATH": "/usr/bin:/bin", "PRESENCE_SECRET": SECRET, "PRESENCE_TOKEN_ISSUER": "app",
           "PRESENCE_TOKEN_AUDIENCE": "presence"}
    out = subprocess.run(
        [sys.executable, "-m", "presence", "token", "--user", "u", "--ws", "team-1*", "--ws", "team-2/*"],
        capture_output=True, text=True, check=True, env=env, cwd=ROOT, timeout=30,
    )
    assert "'team-1*' is a prefix that also matches ids like 'team-10/x'" in out.stderr
    assert "team-2" not in out.stderr
    ident = auth.verify(out.stdout.strip(), SECRET, issuer="app", audience="presence")  # minted with both
    ident.check_workspace("team-10/x")  # what the warning says: the prefix is a plain string prefix


async def test_issuer_and_audience_are_checked_when_configured(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_SECRET=SECRET, PRESENCE_TOKEN_ISSUER="https://app.example",
                                   PRESENCE_TOKEN_AUDIENCE="presence")
    plain = await servers.server_async("plain", PRESENCE_SECRET=SECRET)
    good = {"iss": "https://app.example", "aud": "presence"}
    cases = {
        "no iss": {"aud": "presence"},
        "no aud": {"iss": "https://app.example"},
        "wrong iss": {**good, "iss": "https://evil.example"},
        "wrong aud": {**good, "aud": "billing"},
        "aud list without us": {**good, "aud": ["billing", "mail"]},
    }
    for what, claims in cases.items():
        code, reason, _ = await close_of(a.ws_url, hello("iss-doc", token(**claims)))
        assert code == 4401, (what, code, reason)
    for claims in (good, {**good, "aud": ["billing", "presence"]}):
        t = Tab(a.ws_url, "ok", "iss-doc", secret=SECRET)
        t.token = token("ok", **claims)
        tabs.append(t)
        await t.connect()
    # Without a configured audience, a token minted for some audience is someone else's.
    code, _, _ = await close_of(plain.ws_url, hello("iss-doc", token(aud="billing")))
    assert code == 4401
    code, _, messages = await close_of(plain.ws_url, hello("iss-doc", token(iss="anyone")))
    assert messages and messages[0]["type"] == "welcome"


# -- 12. the pages say what they may load and that nobody may frame them ------------------------


async def test_dashboard_and_demo_send_a_content_security_policy(servers: Cluster) -> None:
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN)  # dev mode: /demo is served
    async with httpx.AsyncClient(base_url=a.http_url, timeout=10) as http:
        for path in ("/dashboard", "/demo"):
            r = await http.get(path)
            assert r.status_code == 200
            csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split("; ")}
            assert csp["frame-ancestors"] == ["'none'"] and csp["default-src"] == ["'none'"]
            assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
            assert csp["connect-src"] == ["'self'"]
            assert not [v for vs in csp.values() for v in vs if "unsafe" in v or "://" in v or v == "*"], csp
            assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
            # Nothing inline for the policy to forbid.
            assert "<script>" not in r.text and " style=" not in r.text and " onclick=" not in r.text


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


# -- 7. a lease without its holder record ---------------------------------------------------------


async def test_a_lease_whose_holder_record_is_gone_is_busy_held_by_someone_unknown(
    servers: Cluster, redis_server: RedisServer, prefix: str, tabs: list[Tab]
) -> None:
    """Evicted, or expired before the lease key: every acquire answers busy (never an internal
    error), and the lease ends by its own TTL."""
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice", "orphan-doc")
    assert (await alice.request("acquire"))["type"] == "acquired"
    redis_server.client().delete(f"{prefix}:{{orphan-doc}}:holder")
    # A process that reads the workspace only now finds a lease and no record of its holder.
    bob = await open_tab(tabs, b, "bob", "orphan-doc")
    busy = await bob.request("acquire")
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == ""
    # One that knew the holder still names it.
    carol = await open_tab(tabs, a, "carol", "orphan-doc")
    busy = await carol.request("acquire")
    assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "alice"
    assert_no_traceback(a)
    assert_no_traceback(b)


async def test_a_service_lease_never_outlives_the_key_idle_time(servers: Cluster) -> None:
    """A job may not ask for a TTL longer than half the key idle time: its holder record must
    outlive the lease it describes."""
    idle_s = 60.0
    a = await servers.server_async("a", PRESENCE_API_KEY="k" * 40, PRESENCE_KEY_IDLE_DAYS=str(idle_s / 86400))
    body = {"holder": {"id": "job"}, "ttl_ms": int(idle_s * 1000 / 2) + 1}
    async with httpx.AsyncClient(base_url=a.http_url, headers={"Authorization": "Bearer " + "k" * 40}) as http:
        r = await http.post("/api/v1/workspaces/long-job/lease", json=body)
        assert r.status_code == 400 and "ttl_ms" in r.json()["error"]
        body["ttl_ms"] = int(idle_s * 1000 / 2)
        assert (await http.post("/api/v1/workspaces/long-job/lease", json=body)).status_code == 201
