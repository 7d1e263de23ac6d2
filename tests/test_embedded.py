"""The embedded default: `presence serve` with no Redis configured, in dev mode."""

from __future__ import annotations

import subprocess
import sys

import httpx
from procs import ROOT, ServerProcess
from wsclient import Tab


async def test_embedded_server_works_out_of_the_box() -> None:
    server = ServerProcess({"PRESENCE_REDIS_URL": None, "PRESENCE_SECRET": None}, name="embedded")
    tabs: list[Tab] = []
    try:
        await server.start_async()
        assert "embedded store" in server.log() and "DEV MODE" in server.log()
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert (await http.get("/readyz")).json()["redis"] is True
            token = (await http.get("/demo/token", params={"user": "alice", "name": "Alice"})).json()["token"]
            assert "demo.js" in (await http.get("/demo")).text
            js = await http.get("/static/presence.js")
            assert "javascript" in js.headers["content-type"]
            assert "PresenceClient" in js.text

        alice = Tab(server.ws_url, "alice", "doc")
        alice.token = token
        bob = Tab(server.ws_url, "bob", "doc")
        tabs += [alice, bob]
        await alice.connect()
        await bob.connect()
        assert (await alice.request("acquire"))["type"] == "acquired"
        assert (await bob.request("acquire"))["holder"]["user"]["name"] == "Alice"
        assert (await bob.request("takeover"))["type"] == "acquired"
        assert (await alice.expect("released"))["reason"] == "taken_over"
    finally:
        for t in tabs:
            await t.drop()
        server.close()


def test_token_command_prints_a_verifiable_token() -> None:
    env = {"PATH": "/usr/bin:/bin", "PRESENCE_SECRET": "s" * 40}
    out = subprocess.run(
        [sys.executable, "-m", "presence", "token", "--user", "alice", "--name", "Alice", "--ws", "doc-*",
         "--ttl", "60", "--takeover", "no"],
        capture_output=True, text=True, check=True, env=env, cwd=ROOT,
    )
    from presence import auth

    ident = auth.verify(out.stdout.strip(), "s" * 40)
    assert ident.user.name == "Alice" and ident.workspaces == ("doc-*",) and not ident.may_take_over


def test_serve_refuses_bad_settings_with_a_clear_message() -> None:
    env = {"PATH": "/usr/bin:/bin", "PRESENCE_LEASE_TTL_MS": "1000", "PRESENCE_HEARTBEAT_MS": "5000"}
    out = subprocess.run([sys.executable, "-m", "presence", "serve"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=30)
    assert out.returncode == 2
    assert "PRESENCE_LEASE_TTL_MS (1000) must exceed twice PRESENCE_HEARTBEAT_MS" in out.stderr


def test_token_command_refuses_a_service_id() -> None:
    env = {"PATH": "/usr/bin:/bin", "PRESENCE_SECRET": "s" * 40}
    out = subprocess.run([sys.executable, "-m", "presence", "token", "--user", "svc:import"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
    assert out.returncode == 2 and out.stdout == "" and "reserved for backend jobs" in out.stderr
