"""An identity provider that is slow, huge or down (issue 22, item 5), against a real key-set
server of the test's own and real ``presence serve`` processes: hellos never wait on a fetch,
a fetch has an overall deadline and a size cap, the keys in hand keep verifying, and keys of a
set obey the rules of a PEM key."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from typing import Any

import jwt
import pytest
from conftest import Cluster
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from procs import ServerProcess, TlsFiles
from test_hardening import assert_no_traceback
from test_signing import KeySetServer, Signer, eventually, eventually_welcome, hello_outcome, keyset, running, started
from wsclient import Tab

from presence import auth
from presence.errors import BadToken
from presence.settings import Settings, SettingsError
from presence.signing import JwksKeys

__all__ = ["keyset", "running"]  # fixtures


def weak_rsa_jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    """A 1024-bit RSA key (a PEM key of this size is refused at start-up) and its JWK."""
    private = rsa.generate_private_key(65537, 1024)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**jwk, "kid": kid, "use": "sig"}


def fetching() -> bool:
    """Whether a thread is inside an outgoing HTTP call (a fetch of the key set)."""
    return any(
        frame.f_code.co_filename.endswith("httpcall.py")
        for top in sys._current_frames().values()
        for frame, _ in traceback.walk_stack(top)
    )


def signed(private: Any, kid: str, alg: str) -> str:
    return jwt.encode({"sub": "eve", "exp": int(time.time()) + 600}, private, algorithm=alg, headers={"kid": kid})


# -- in process ---------------------------------------------------------------------------------


async def test_a_dripping_provider_is_cut_off_at_the_deadline(keyset: KeySetServer, running: list[JwksKeys]) -> None:
    signer = Signer("ES256")
    keyset.keys = [signer.jwk()]
    keyset.mode, keyset.drip_s = "drip", 0.05  # its status line and headers too: no socket timeout trips
    began = time.monotonic()
    keys = JwksKeys(keyset.url, refresh_ms=0, deadline_s=0.5)
    prepared = asyncio.ensure_future(started(running, keys))
    await eventually(fetching, what="the fetch under way")
    await prepared
    assert time.monotonic() - began < 3  # the deadline, not the 5 s socket timeout nor the whole answer
    assert keys.fetches == 0 and keys.attempts == 1
    assert await asyncio.to_thread(keyset.dropped.wait, 5)  # the connection was shut down, not left dripping
    await eventually(lambda: not fetching(), what="the fetch's worker thread ending")
    with pytest.raises(BadToken, match="could not be fetched yet"):
        await keys.key_for(signer.token("alice"))
    keyset.mode = "serve"  # the provider recovers: the retry gets the set
    await eventually(lambda: keys.fetches == 1, what="the retry after the failed fetch")
    assert auth.verify(signer.token("alice"), await keys.key_for(signer.token("alice"))).user.id == "alice"


async def test_over_tls_too_the_key_set_is_fetched_and_a_drip_cut_off(
    tls_files: TlsFiles, running: list[JwksKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline shuts down the socket under TLS as well (the provider's usual https://)."""
    monkeypatch.setenv("SSL_CERT_FILE", tls_files.ca)  # the test's CA, for the default context
    provider = KeySetServer(tls=tls_files)
    try:
        signer = Signer("ES256")
        provider.keys = [signer.jwk()]
        keys = await started(running, JwksKeys(provider.url, refresh_ms=0, cache_s=1, deadline_s=0.5))
        assert provider.url.startswith("https://") and keys.fetches == 1
        provider.mode, provider.drip_s = "drip", 0.05
        await eventually(lambda: keys.attempts == 2, what="the refresh once the set is a second old")
        assert await asyncio.to_thread(provider.dropped.wait, 5)  # shut down at the deadline
        await eventually(lambda: not fetching(), what="the fetch's worker thread ending")
        assert keys.fetches == 1
        assert auth.verify(signer.token("alice"), await keys.key_for(signer.token("alice"))).user.id == "alice"
    finally:
        provider.close()


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "until-close"])
async def test_a_key_set_over_the_size_cap_is_refused(
    keyset: KeySetServer, running: list[JwksKeys], declare: bool, caplog: pytest.LogCaptureFixture
) -> None:
    signer = Signer("RS256")
    keyset.keys = [signer.jwk()]
    keyset.mode, keyset.declare, keyset.huge_bytes = "huge", declare, 2 << 20
    keys = await started(running, JwksKeys(keyset.url, refresh_ms=0, max_bytes=1 << 20))
    assert keys.fetches == 0 and keys.keys == {}  # valid JSON with a valid key, but too large to be read
    assert "larger than 1048576 bytes" in caplog.text


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the test signs with a weak key
async def test_keys_of_a_set_obey_the_rules_of_a_pem_key(keyset: KeySetServer, running: list[JwksKeys]) -> None:
    weak, weak_jwk = weak_rsa_jwk("weak")
    strong = rsa.generate_private_key(65537, 2048)
    strong_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(strong.public_key()))
    curve = ec.generate_private_key(ec.SECP256R1())
    curve_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(curve.public_key()))
    keyset.keys = [
        weak_jwk,
        {**strong_jwk, "kid": "ps", "alg": "PS256"},  # RSA may declare another RSA algorithm
        {**strong_jwk, "kid": "rsa-as-ec", "alg": "ES256"},  # an algorithm of another key type
        {**curve_jwk, "kid": "p256-as-es384", "alg": "ES384"},  # not its curve's algorithm
        {**curve_jwk, "kid": "p256"},
        {"kid": 7, "kty": "RSA"}, {"kid": "nested", "kty": [[[[]]]]}, "not a key",
    ]
    keys = await started(running, JwksKeys(keyset.url, refresh_ms=0))
    assert sorted(keys.keys) == ["p256", "ps"]
    with pytest.raises(BadToken, match="not in the key set"):
        await keys.key_for(signed(weak, "weak", "RS256"))
    assert auth.verify(signed(strong, "ps", "PS256"), await keys.key_for(signed(strong, "ps", "PS256")))
    assert auth.verify(signed(curve, "p256", "ES256"), await keys.key_for(signed(curve, "p256", "ES256")))


@pytest.mark.parametrize("value", ["0", "nan", "inf", "-5", "86401"])
def test_the_key_set_lifetime_is_validated(value: str) -> None:
    with pytest.raises(SettingsError, match="PRESENCE_JWKS_CACHE_S"):
        Settings.from_env({"PRESENCE_JWKS_URL": "https://idp.example/jwks", "PRESENCE_JWKS_CACHE_S": value})


# -- presence serve ------------------------------------------------------------------------------


async def timed_outcome(server: ServerProcess, token: str, tabs: list[Tab]) -> tuple[str | int | None, float]:
    began = time.monotonic()
    outcome = await hello_outcome(server, token, tabs)
    return outcome, time.monotonic() - began


async def test_hellos_never_wait_on_a_dripping_provider(
    servers: Cluster, keyset: KeySetServer, tabs: list[Tab]
) -> None:
    """The key set expires after a second and its provider then drips its answer a byte at a time:
    every hello is still answered at once (welcome with a key in hand, 4401 without), and the
    server gives the fetch up at its deadline and hangs up."""
    signer, rotated = Signer("RS256"), Signer("ES256")
    keyset.keys = [signer.jwk()]
    server = await servers.server_async("idp", PRESENCE_JWKS_URL=keyset.url, PRESENCE_JWKS_CACHE_S="1",
                                        PRESENCE_JWKS_REFRESH_MS="200")
    assert keyset.requests == 1
    keyset.keys, keyset.mode, keyset.drip_s = [signer.jwk(), rotated.jwk()], "drip", 0.5
    for round in range(4):
        outcome, took = await timed_outcome(server, signer.token("alice"), tabs)
        assert outcome == "welcome" and took < 1.5, (outcome, took)
        outcome, took = await timed_outcome(server, rotated.token("bob"), tabs)  # not in hand: refused at once
        assert outcome == 4401 and took < 1.5, (outcome, took)
        if round == 1:  # the rest while the fetch is dripping in
            await eventually(lambda: keyset.requests == 2, what="the background refresh of the expired set")
    # The fetch's deadline (10 s) passes: the server hangs up and says so.
    assert await asyncio.to_thread(keyset.dropped.wait, 20)
    await eventually(lambda: "no complete answer within 10 s" in server.log(), timeout=5, what="the warning")
    keyset.mode = "serve"  # the provider recovers: the rotated key arrives with the next fetch
    await eventually_welcome(server, rotated.token("bob"), tabs, timeout=10)
    assert_no_traceback(server)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the test signs with a weak key
async def test_a_huge_weak_or_absent_key_set_leaves_the_keys_in_hand(
    servers: Cluster, keyset: KeySetServer, tabs: list[Tab]
) -> None:
    signer, rotated = Signer("RS256"), Signer("ES256")
    weak, weak_jwk = weak_rsa_jwk("weak")
    keyset.keys = [signer.jwk()]
    server = await servers.server_async("idp", PRESENCE_JWKS_URL=keyset.url, PRESENCE_JWKS_REFRESH_MS="0")

    # A huge answer (valid JSON, with the rotated key in it): refused unread past the cap.
    keyset.keys, keyset.mode, keyset.declare, keyset.huge_bytes = [signer.jwk(), rotated.jwk()], "huge", False, 8 << 20
    assert await hello_outcome(server, rotated.token("bob"), tabs) == 4401  # asks for a fetch
    await eventually(lambda: "larger than 1048576 bytes" in server.log(), what="the refused key set")
    assert await hello_outcome(server, rotated.token("bob"), tabs) == 4401
    assert await hello_outcome(server, signer.token("alice"), tabs) == "welcome"

    # A 1024-bit RSA key: skipped, the other keys of the set are taken.
    keyset.keys, keyset.mode = [signer.jwk(), rotated.jwk(), weak_jwk], "serve"
    await eventually_welcome(server, rotated.token("bob"), tabs)
    assert "1024 bits is too weak" in server.log()
    assert await hello_outcome(server, signed(weak, "weak", "RS256"), tabs) == 4401

    # The provider goes down: the keys in hand keep verifying, at once.
    keyset.close()
    requests, failures = keyset.requests, server.log().count("could not fetch the key set")
    assert await hello_outcome(server, Signer("ES256").token("carol"), tabs) == 4401  # asks for a fetch that fails
    await eventually(lambda: server.log().count("could not fetch the key set") > failures, what="the failed fetch")
    assert keyset.requests == requests
    for token in (signer.token("alice"), rotated.token("bob")):
        outcome, took = await timed_outcome(server, token, tabs)
        assert outcome == "welcome" and took < 1.5
    assert_no_traceback(server)
