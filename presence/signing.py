"""Signing: which key verifies the token of a ``hello``, and with which algorithms.

One source, chosen at start-up (the settings allow at most one):

- ``PRESENCE_SECRET``: HS256 with a secret shared with the app backend (unset, and no other
  source: dev mode, with the public dev key);
- ``PRESENCE_JWT_PUBLIC_KEY``: an identity provider's public key (PEM, or an X.509 certificate);
  its type pins the algorithm: RSA RS256, EC P-256/384/521 ES256/384/512, Ed25519 EdDSA;
- ``PRESENCE_JWKS_URL``: an identity provider's JSON Web Key Set, refreshed in the background
  (:mod:`presence.keyset`): a ``hello`` never waits on the provider.

A token's own header never chooses the algorithm: ``none`` and HS256 signed with a public key
(the classic confusion attack) are refused whatever it says.
"""

from __future__ import annotations

from typing import Protocol

from .keyset import JwksKeys
from .pem import VerificationKey, load_public_key
from .settings import Settings

HS256 = "HS256"


class TokenKeys(Protocol):
    """The key for one token (never waits on a network: a key set is fetched in the background)."""

    async def key_for(self, token: str) -> VerificationKey: ...

    async def prepare(self) -> None:
        """At start-up: fetch what can be fetched (never fails; a provider that is down is retried)."""

    async def stop(self) -> None:
        """At shutdown: end any background work."""

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

    async def stop(self) -> None:
        pass


def token_keys(settings: Settings) -> TokenKeys:
    """The key source the settings configure (they were validated: at most one is set)."""
    if settings.jwks_url is not None:
        return JwksKeys(settings.jwks_url, settings.jwks_refresh_ms, settings.jwks_cache_s)
    if settings.jwt_public_key is not None:
        key = load_public_key(settings.jwt_public_key)
        return StaticKey(key, f"tokens verified with a {key.algorithms[0]} public key")
    if settings.secret is None:
        return StaticKey(VerificationKey(settings.signing_key, (HS256,)), "dev mode: tokens signed with the dev key")
    return StaticKey(VerificationKey(settings.secret, (HS256,)), "HS256 tokens signed with PRESENCE_SECRET")
