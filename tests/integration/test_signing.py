"""Tokens of identity providers, in process: RS256/ES256 with a PEM public key or a JWKS URL.

The key set is served by a real HTTP server of the test's own on 127.0.0.1 (``keyset``), which
counts its requests and can rotate its keys or go down; tokens are signed with keys the test makes.
``presence serve`` verifying such tokens is in tests/system/test_signing_serve.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest
from keysets import KeySetServer, Signer, started
from waiting import eventually

from presence import auth
from presence.errors import BadToken
from presence.settings import Settings, SettingsError
from presence.signing import JwksKeys, load_public_key, token_keys

# -- the key set, in process -------------------------------------------------------------------


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
