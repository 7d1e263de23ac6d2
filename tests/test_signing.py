"""Tokens of identity providers: RS256/ES256 with a PEM public key or a JWKS URL.

The key set is served by a real HTTP server of the test's own on 127.0.0.1, which counts its
requests and can rotate its keys or go down; tokens are signed with keys the test makes.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from conftest import Cluster
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from procs import ROOT, ServerProcess, TlsFiles
from wsclient import Tab

from presence import auth
from presence.errors import BadToken
from presence.settings import DEV_SECRET, Settings, SettingsError
from presence.signing import JwksKeys, load_public_key, token_keys


class Signer:
    """A private key of the 'identity provider', with its kid and algorithm."""

    def __init__(self, alg: str, kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        self.private: Any = rsa.generate_private_key(65537, 2048) if alg == "RS256" else ec.generate_private_key(
            ec.SECP256R1()
        )

    def token(self, user: str, ttl_s: int = 600, **headers: Any) -> str:
        now = int(time.time())
        claims = {"sub": user, "name": user.title(), "iat": now, "exp": now + ttl_s}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers})

    def jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig"}  # no "alg": the key's type says it

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


class KeySetServer:
    """``GET /jwks.json`` on a free port: the current key set; counts the requests.

    ``mode`` makes it a bad provider: ``drip`` sends its answer (status line and headers too) one
    byte every ``drip_s``; ``huge`` pads the key set to ``huge_bytes`` (``declare``: with its
    Content-Length, else until it closes). ``dropped`` is set once a client hung up on a drip."""

    def __init__(self, port: int = 0, tls: TlsFiles | None = None) -> None:
        self.keys: list[dict[str, Any]] = []
        self.scheme = "https" if tls else "http"
        self.requests = 0
        self.mode = "serve"
        self.drip_s = 0.2
        self.huge_bytes = 4 << 20
        self.declare = True
        self.dropped = threading.Event()
        self.stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps({"keys": owner.keys}).encode()
                if owner.mode == "huge":
                    body = body[:-1] + b', "padding": "' + b"x" * owner.huge_bytes + b'"}'
                status = 200 if self.path == "/jwks.json" else 404
                head = f"HTTP/1.0 {status} OK\r\nContent-Type: application/json\r\n"
                if owner.mode != "huge" or owner.declare:
                    head += f"Content-Length: {len(body)}\r\n"
                answer = head.encode() + b"\r\n" + body
                try:
                    if owner.mode == "drip":
                        for i in range(len(answer)):
                            if owner.stopping.wait(owner.drip_s):
                                return
                            self.wfile.write(answer[i:i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(answer)
                except OSError:
                    owner.dropped.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert, tls.key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def keyset() -> Iterator[KeySetServer]:
    server = KeySetServer()
    yield server
    server.close()


# -- the key set, in process -------------------------------------------------------------------


@pytest.fixture
async def running() -> AsyncIterator[list[JwksKeys]]:
    """Key sets a test prepared (their refreshers run): stopped after it."""
    started: list[JwksKeys] = []
    yield started
    for keys in started:
        await keys.stop()


async def started(running: list[JwksKeys], keys: JwksKeys) -> JwksKeys:
    running.append(keys)
    await keys.prepare()
    return keys


async def eventually(check: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Polls ``check`` until truthy: for what the refresher does on its own schedule."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        await asyncio.sleep(0.02)


async def test_jwks_keys_are_fetched_once_cached_and_refetched_for_a_new_kid(
    keyset: KeySetServer, running: list[JwksKeys]
) -> None:
    first, rotated = Signer("RS256"), Signer("ES256")
    keyset.keys = [first.jwk(), {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]  # an HMAC key is never used
    keys = await started(running, JwksKeys(keyset.url, refresh_ms=0))

    for user in ("alice", "bob", "carol"):
        ident = auth.verify(first.token(user), await keys.key_for(first.token(user)))
        assert ident.user.id == user
    assert keyset.requests == 1  # cached: one fetch for three tokens

    keyset.keys = [first.jwk(), rotated.jwk()]  # the provider rotates: a new kid appears
    token = rotated.token("dave")
    with pytest.raises(BadToken, match="not in the key set"):
        await keys.key_for(token)  # refused at once: the hello does not wait for the fetch it asked for
    await eventually(lambda: keys.fetches == 2, what="the background fetch of the rotated set")
    key = await keys.key_for(token)
    assert key.algorithms == ("ES256",)
    assert auth.verify(token, key).user.id == "dave"
    assert keyset.requests == 2

    with pytest.raises(BadToken, match="not in the key set"):
        await keys.key_for(Signer("RS256", kid="hmac").token("eve"))  # the oct key was skipped
    forged = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, "c2VjcmV0" * 5, algorithm="HS256",
                        headers={"kid": first.kid})
    with pytest.raises(BadToken):  # HS256 under an RSA key's kid: the algorithm is the key's, not the header's
        auth.verify(forged, await keys.key_for(forged))


async def test_unknown_kids_refetch_at_most_once_per_interval(keyset: KeySetServer, running: list[JwksKeys]) -> None:
    signer = Signer("ES256")
    keyset.keys = [signer.jwk()]
    keys = await started(running, JwksKeys(keyset.url, refresh_ms=60_000))
    assert keyset.requests == 1  # start-up fetches the set
    for i in range(20):  # made-up kids: refused without asking the provider each time
        with pytest.raises(BadToken, match="not in the key set"):
            await keys.key_for(Signer("ES256", kid=f"made-up-{i}").token("mallory"))
        await asyncio.sleep(0.01)  # the refresher's turn: it must not fetch within the interval
    assert keyset.requests == 1 and keys.attempts == 1
    assert auth.verify(signer.token("alice"), await keys.key_for(signer.token("alice"))).user.id == "alice"


async def test_the_set_is_refreshed_in_the_background_and_kept_when_the_provider_is_down(
    keyset: KeySetServer, running: list[JwksKeys]
) -> None:
    signer = Signer("RS256")
    keyset.keys = [signer.jwk()]
    keys = await started(running, JwksKeys(keyset.url, refresh_ms=0, cache_s=0.2))
    await eventually(lambda: keyset.requests >= 3, what="two refreshes once the set is older than its lifetime")
    keyset.close()  # the provider goes down
    attempts = keys.attempts
    await eventually(lambda: keys.attempts > attempts, what="a fetch from a provider that is down")
    token = signer.token("bob")
    assert auth.verify(token, await keys.key_for(token)).user.id == "bob"  # the keys we had still verify


async def test_a_provider_down_from_the_start_refuses_tokens_and_is_retried(
    keyset: KeySetServer, running: list[JwksKeys]
) -> None:
    signer = Signer("RS256")
    url = keyset.url
    keyset.close()
    keys = await started(running, JwksKeys(url, refresh_ms=0))  # start-up does not fail
    with pytest.raises(BadToken, match="could not be fetched yet"):
        await keys.key_for(signer.token("alice"))
    back = KeySetServer(port=int(url.split(":")[2].split("/")[0]))
    try:
        back.keys = [signer.jwk()]
        await eventually(lambda: keys.fetches == 1, what="the retry once the provider is back")
        assert auth.verify(signer.token("alice"), await keys.key_for(signer.token("alice"))).user.id == "alice"
    finally:
        back.close()


async def test_a_token_without_kid_or_malformed_is_refused_by_the_key_set(
    keyset: KeySetServer, running: list[JwksKeys]
) -> None:
    signer = Signer("RS256")
    keyset.keys = [signer.jwk()]
    keys = await started(running, JwksKeys(keyset.url, refresh_ms=0))
    no_kid = jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, signer.private, algorithm="RS256")
    with pytest.raises(BadToken, match="kid"):
        await keys.key_for(no_kid)
    with pytest.raises(BadToken):
        await keys.key_for("not.a.token")


# -- a configured public key --------------------------------------------------------------------


async def test_public_key_pins_its_algorithm(tmp_path: Path) -> None:
    es, rs = Signer("ES256"), Signer("RS256")
    key = load_public_key(es.public_pem())
    assert key.algorithms == ("ES256",)
    assert load_public_key(rs.public_pem()).algorithms == ("RS256",)
    # a file's path, and the one-line form with escaped newlines, work too
    pem_file = tmp_path / "idp.pem"
    pem_file.write_text(rs.public_pem())
    assert load_public_key(str(pem_file)).algorithms == ("RS256",)
    assert load_public_key(es.public_pem().replace("\n", "\\n")).algorithms == ("ES256",)

    source = token_keys(Settings(jwt_public_key=es.public_pem()))
    assert auth.verify(es.token("alice"), await source.key_for(es.token("alice"))).user.id == "alice"
    with pytest.raises(BadToken):  # signed by another key
        auth.verify(Signer("ES256").token("eve"), await source.key_for(""))
    unsigned = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(BadToken):
        auth.verify(unsigned, await source.key_for(unsigned))


@pytest.mark.parametrize(("env", "fragment"), [
    ({"PRESENCE_SECRET": "s" * 40, "PRESENCE_JWKS_URL": "https://idp.example/jwks"}, "set only one way"),
    ({"PRESENCE_JWKS_URL": "http://idp.example/jwks"}, "must be an https:// URL"),
    ({"PRESENCE_JWKS_URL": "ftp://127.0.0.1/jwks"}, "must be an https:// URL"),
    ({"PRESENCE_JWT_PUBLIC_KEY": "/nonexistent/key.pem"}, "reading '/nonexistent/key.pem' failed"),
    ({"PRESENCE_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}, "not a readable"),
    ({"PRESENCE_JWT_PUBLIC_KEY": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----"}, "private key"),
])
def test_token_settings_say_what_to_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)


def test_an_identity_provider_is_not_dev_mode_and_the_cli_cannot_mint() -> None:
    settings = Settings.from_env({"PRESENCE_JWKS_URL": "https://idp.example/.well-known/jwks.json"})
    assert not settings.dev_mode and not settings.can_mint
    env = {"PATH": "/usr/bin:/bin", "PRESENCE_JWKS_URL": "https://idp.example/jwks.json"}
    out = subprocess.run([sys.executable, "-m", "presence", "token", "--user", "alice"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "identity provider" in out.stderr


# -- end to end: presence serve verifying tokens of a provider ----------------------------------


async def hello_outcome(server: ServerProcess, token: str, tabs: list[Tab]) -> str | int | None:
    """``"welcome"``, or the close code of a hello with ``token``."""
    tab = Tab(server.ws_url, "someone", "doc")
    tab.token = token
    tabs.append(tab)
    await tab.connect(expect_welcome=False)
    try:
        await tab.expect("welcome")
    except AssertionError:
        return tab.closed_code
    return "welcome"


async def eventually_welcome(server: ServerProcess, token: str, tabs: list[Tab], timeout: float = 5.0) -> None:
    """Hellos with ``token`` until one is welcomed (a key the server is fetching in the background)."""
    deadline = time.monotonic() + timeout
    while (outcome := await hello_outcome(server, token, tabs)) != "welcome":
        assert outcome == 4401 and time.monotonic() < deadline, outcome
        await asyncio.sleep(0.1)


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
