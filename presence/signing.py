"""Signing: which key verifies the token of a ``hello``, and with which algorithms.

One source, chosen at start-up (the settings allow at most one):

- ``PRESENCE_SECRET``: HS256 with a secret shared with the app backend (unset, and no other
  source: dev mode, with the public dev key);
- ``PRESENCE_JWT_PUBLIC_KEY``: an identity provider's public key (PEM, or an X.509 certificate);
  its type pins the algorithm: RSA RS256, EC P-256/384/521 ES256/384/512, Ed25519 EdDSA;
- ``PRESENCE_JWKS_URL``: an identity provider's JSON Web Key Set, fetched with PyJWT's
  ``PyJWKClient`` (in a worker thread: it blocks), kept for ``JWKS_CACHE_S`` and fetched again
  at once when a token names a key id the set does not have (key rotation), at most once per
  ``PRESENCE_JWKS_REFRESH_MS``, so tokens with made-up key ids cannot make us flood the provider.

A token's own header never chooses the algorithm: ``none`` and HS256 signed with a public key
(the classic confusion attack) are refused whatever it says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import jwt

from . import __version__
from .errors import BadToken
from .pem import VerificationKey, load_public_key
from .settings import Settings

log = logging.getLogger("presence.signing")

HS256 = "HS256"
JWKS_CACHE_S = 300.0  # a key set older than this is fetched again (PyJWKClient's default lifespan)
JWKS_TIMEOUT_S = 5
# What a key set may offer: asymmetric algorithms only (an "oct" key would mean HMAC with a
# secret published to the world).
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
_JWK_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


class TokenKeys(Protocol):
    """The key for one token (an async call: a key set may have to be fetched first)."""

    async def key_for(self, token: str) -> VerificationKey: ...

    async def prepare(self) -> None:
        """At start-up: fetch what can be fetched (never fails; a provider that is down is retried)."""

    @property
    def description(self) -> str: ...


class StaticKey:
    """One fixed key: the HS256 secret or a configured public key."""

    def __init__(self, key: VerificationKey, description: str) -> None:
        self.key = key
        self.description = description

    async def key_for(self, token: str) -> VerificationKey:
        return self.key

    async def prepare(self) -> None:
        pass


def jwk_algorithm(jwk: dict[str, Any]) -> str | None:
    """The algorithm a key of a key set is for, or None when we must not use it (encryption keys,
    symmetric keys, algorithms outside :data:`ASYMMETRIC`). The same rules as PyJWT's ``PyJWK``."""
    if jwk.get("use") not in (None, "sig") or not isinstance(jwk.get("kid"), str):
        return None
    alg, kty, crv = jwk.get("alg"), jwk.get("kty"), jwk.get("crv")
    if alg is None and kty == "RSA":
        alg = "RS256"
    elif alg is None and kty == "EC":
        alg = _JWK_CURVES.get(str(crv or "P-256"))
    elif alg is None and kty == "OKP" and crv == "Ed25519":
        alg = "EdDSA"
    return alg if isinstance(alg, str) and alg in ASYMMETRIC else None


class JwksKeys:
    """An identity provider's key set, by key id (``kid``)."""

    def __init__(self, url: str, refresh_ms: int, cache_s: float = JWKS_CACHE_S) -> None:
        self.url = url
        self.description = f"tokens verified with the keys of {url}"
        self.refresh_s = refresh_ms / 1000
        self.cache_s = cache_s
        # Fetching only: the set is kept here, parsed, so a handshake needs no thread when it is fresh.
        self.client = jwt.PyJWKClient(
            url, cache_jwk_set=False, timeout=JWKS_TIMEOUT_S, headers={"User-Agent": f"presence/{__version__}"}
        )
        self.keys: dict[str, VerificationKey] = {}
        self.fetched_at = -float("inf")  # monotonic time of the last successful fetch
        self.tried_at = -float("inf")  # ... of the last attempt, successful or not
        self.fetches = 0
        # One fetch at a time; those who wait for it use its result. Held across the HTTP fetch on
        # purpose (that is the single flight); never across anything else.
        self._lock = asyncio.Lock()

    async def prepare(self) -> None:
        await self._refresh(self.tried_at)

    async def key_for(self, token: str) -> VerificationKey:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise BadToken(f"invalid token: {exc}") from None
        if not isinstance(kid, str) or not kid:
            raise BadToken("invalid token: its header names no signing key ('kid')")
        now = time.monotonic()
        if now - self.fetched_at > self.cache_s and now - self.tried_at > self.refresh_s:
            await self._refresh(self.tried_at)  # too old: keep using it if the provider does not answer
        elif kid not in self.keys and now - self.tried_at > self.refresh_s:
            await self._refresh(self.tried_at)  # a new kid: the provider may have rotated its keys
        key = self.keys.get(kid)
        if key is None and not self.keys:
            raise BadToken("invalid token: the identity provider's key set could not be fetched yet")
        if key is None:
            raise BadToken(f"invalid token: signing key {kid[:64]!r} is not in the key set")
        return key

    async def _refresh(self, seen_attempt: float) -> None:
        async with self._lock:
            if self.tried_at != seen_attempt:
                return  # someone fetched while we waited for the lock: use theirs
            self.tried_at = time.monotonic()
            try:
                data = await asyncio.to_thread(self.client.fetch_data)
                keys = self._parse(data)
            except (jwt.PyJWTError, OSError, ValueError) as exc:
                log.warning("could not fetch the key set %s (%s); %s", self.url, exc,
                            f"keeping the {len(self.keys)} keys we have" if self.keys else "tokens are refused")
                return
            self.fetches += 1
            self.fetched_at = time.monotonic()
            if keys.keys() != self.keys.keys():
                log.info("key set %s: %d signing keys (%s)", self.url, len(keys), ", ".join(sorted(keys)) or "-")
            self.keys = keys

    def _parse(self, data: Any) -> dict[str, VerificationKey]:
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError("the answer is not a JSON Web Key Set ({\"keys\": [...]})")
        keys: dict[str, VerificationKey] = {}
        for entry in entries:
            alg = jwk_algorithm(entry) if isinstance(entry, dict) else None
            if alg is None:
                continue  # not a signing key we may use
            try:
                keys[entry["kid"]] = VerificationKey(jwt.PyJWK(entry, alg).key, (alg,))
            except jwt.PyJWTError as exc:
                log.warning("key set %s: key %r skipped: %s", self.url, entry.get("kid"), exc)
        return keys


def token_keys(settings: Settings) -> TokenKeys:
    """The key source the settings configure (they were validated: at most one is set)."""
    if settings.jwks_url is not None:
        return JwksKeys(settings.jwks_url, settings.jwks_refresh_ms)
    if settings.jwt_public_key is not None:
        key = load_public_key(settings.jwt_public_key)
        return StaticKey(key, f"tokens verified with a {key.algorithms[0]} public key")
    if settings.secret is None:
        return StaticKey(VerificationKey(settings.signing_key, (HS256,)), "dev mode: tokens signed with the dev key")
    return StaticKey(VerificationKey(settings.secret, (HS256,)), "HS256 tokens signed with PRESENCE_SECRET")
