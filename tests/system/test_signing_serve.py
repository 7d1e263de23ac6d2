"""``presence serve`` verifying the tokens of an identity provider (a JWKS URL served by a real
HTTP server of the test's own, or a PEM public key), and the CLI refusing to mint for one."""

from __future__ import annotations

import subprocess
import sys

from keysets import KeySetServer, Signer, eventually_welcome
from paths import ROOT
from servers import Cluster
from waiting import eventually
from wsclient import Tab

from presence import auth
from presence.settings import DEV_SECRET, Settings


def test_an_identity_provider_is_not_dev_mode_and_the_cli_cannot_mint() -> None:
    settings = Settings.from_env({"PRESENCE_JWKS_URL": "https://idp.example/.well-known/jwks.json"})
    assert not settings.dev_mode and not settings.can_mint
    env = {"PATH": "/usr/bin:/bin", "PRESENCE_JWKS_URL": "https://idp.example/jwks.json"}
    out = subprocess.run([sys.executable, "-m", "presence", "token", "--user", "alice"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "identity provider" in out.stderr


async def test_server_verifies_tokens_of_a_jwks_and_follows_its_rotation(
    servers: Cluster, keyset: KeySetServer
) -> None:
    first, rotated = Signer("RS256"), Signer("ES256")
    keyset.keys = [first.jwk()]
    server = await servers.server_async("idp", PRESENCE_JWKS_URL=keyset.url, PRESENCE_JWKS_REFRESH_MS="0")
    assert keyset.requests == 1  # fetched at start-up
    tabs: list[Tab] = []
    try:
        alice = Tab(server.ws_url, "alice", "doc")
        alice.token = first.token("alice")
        tabs.append(alice)
        await alice.connect()
        assert alice.welcome is not None and alice.welcome["user"] == {"id": "alice", "name": "Alice"}

        keyset.keys = [rotated.jwk()]
        early = Tab(server.ws_url, "bob", "doc")
        early.token = rotated.token("bob")
        tabs.append(early)
        await early.connect(expect_welcome=False)
        assert await early.closed() == 4401  # a new kid: refused at once, the set is re-read in the background
        await eventually(lambda: keyset.requests == 2, what="the server's fetch of the rotated set")
        await eventually_welcome(server, early.token, tabs)  # as the client's retry
        assert keyset.requests == 2

        for token in (Signer("RS256").token("eve"), auth.mint(DEV_SECRET, "eve")):  # unknown key; dev token
            eve = Tab(server.ws_url, "eve", "doc")
            eve.token = token
            tabs.append(eve)
            await eve.connect(expect_welcome=False)
            assert await eve.closed() == 4401
    finally:
        for t in tabs:
            await t.drop()


async def test_server_verifies_es256_tokens_with_a_public_key(servers: Cluster) -> None:
    signer = Signer("ES256")
    server = await servers.server_async("pem", PRESENCE_JWT_PUBLIC_KEY=signer.public_pem())
    assert "ES256 public key" in server.log()
    ok, forged = Tab(server.ws_url, "alice", "doc"), Tab(server.ws_url, "eve", "doc")
    ok.token, forged.token = signer.token("alice"), Signer("ES256", kid=signer.kid).token("eve")
    try:
        await ok.connect()
        assert (await ok.request("acquire"))["type"] == "acquired"
        await forged.connect(expect_welcome=False)
        assert await forged.closed() == 4401
    finally:
        await ok.drop()
        await forged.drop()
