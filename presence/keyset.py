"""KeySet: an identity provider's JSON Web Key Set, kept by key id and refreshed in the background.

A ``hello`` never waits on the provider: it is verified with the keys in hand, or refused at once
(4401). The set is fetched at start-up (bounded by the fetch's deadline), then again in the
background every ``PRESENCE_JWKS_CACHE_S``; a token naming a key id the set lacks (a key
rotation) asks for an earlier fetch, at most once per ``PRESENCE_JWKS_REFRESH_MS``, so tokens with
made-up key ids cannot make us flood the provider. A fetch that fails (refused, too slow, too
large, not a key set) keeps the keys we have, and is tried again later.

A key of the set is used only if it is a signing key (``use`` absent or ``sig``) with a key id,
for an asymmetric algorithm (an ``oct`` key would mean HMAC with a secret published to the
world), and only under the rules of a configured PEM key (:func:`presence.pem.key_algorithms`:
RSA of 2048 bits or more, the EC curves and Ed25519): the set's ``alg`` must fit the key's type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import jwt
import msgspec

from . import __version__
from .errors import BadToken
from .httpcall import Answer, CallFailed, HttpCall
from .pem import BadKey, VerificationKey, key_algorithms
from .tasks import Service

log = logging.getLogger("presence.signing")

FETCH_DEADLINE_S = 10.0  # a whole fetch, however slowly the provider's bytes come
MAX_BYTES = 1 << 20  # a key set of a few keys is a few KiB; more is not a key set
RETRY_MIN_S = 1.0  # a failed fetch is retried no sooner than this (nor than the refresh interval)
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
_JWK_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


class Jwk(msgspec.Struct):
    """What we read of a key of the set to choose it; PyJWT reads the rest."""

    kid: str | None = None
    kty: str | None = None
    use: str | None = None
    alg: str | None = None
    crv: str | None = None


class KeySetDocument(msgspec.Struct):
    keys: list[msgspec.Raw]


def jwk_algorithm(jwk: Jwk) -> str | None:
    """The algorithm a key of a key set is for, or None when we must not use it (encryption keys,
    symmetric keys, algorithms outside :data:`ASYMMETRIC`). The same defaults as PyJWT's ``PyJWK``."""
    if jwk.use not in (None, "sig") or not jwk.kid:
        return None
    alg = jwk.alg
    if alg is None and jwk.kty == "RSA":
        alg = "RS256"
    elif alg is None and jwk.kty == "EC":
        alg = _JWK_CURVES.get(jwk.crv or "P-256")
    elif alg is None and jwk.kty == "OKP" and jwk.crv == "Ed25519":
        alg = "EdDSA"
    return alg if alg in ASYMMETRIC else None


class JwksKeys(Service):
    """The keys of ``url`` by key id; ``prepare()`` fetches them and starts the refresher,
    ``stop()`` ends it."""

    name = "jwks refresh"
    crash_message = "the key set refresher died: the identity provider's keys are no longer refreshed"

    def __init__(
        self, url: str, refresh_ms: int, cache_s: float = 300.0, deadline_s: float = FETCH_DEADLINE_S,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__()
        self.url = url
        self.description = f"tokens verified with the keys of {url}"
        self.refresh_s = refresh_ms / 1000
        self.cache_s = cache_s
        self.deadline_s = deadline_s
        self.max_bytes = max_bytes
        self.keys: dict[str, VerificationKey] = {}
        self.fetches = 0  # successful ones
        self.attempts = 0
        self.fetched_at = -float("inf")  # monotonic time of the last successful fetch
        self.tried_at = -float("inf")  # ... of the last attempt, successful or not
        self._failing = False  # the last attempt failed
        self._wanted = False  # a token named a key id the set lacks
        self._wake = asyncio.Event()

    async def prepare(self) -> None:
        """At start-up: the first fetch (never longer than its deadline; failing is fine), then
        the background refresher."""
        if self._task is None:
            await self._refresh()
            self.start()

    async def key_for(self, token: str) -> VerificationKey:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise BadToken(f"invalid token: {exc}") from None
        if not isinstance(kid, str) or not kid:
            raise BadToken("invalid token: its header names no signing key ('kid')")
        key = self.keys.get(kid)
        if key is not None:
            return key
        self._wanted = True  # the provider may have rotated its keys: fetch again, in the background
        self._wake.set()
        if not self.keys:
            raise BadToken("invalid token: the identity provider's key set could not be fetched yet")
        raise BadToken(f"invalid token: signing key {kid[:64]!r} is not in the key set")

    async def run(self) -> None:
        while True:
            delay = self._next_fetch_at() - time.monotonic()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            await self._refresh()

    def _next_fetch_at(self) -> float:
        if self._failing:
            at = self.tried_at + min(self.cache_s, max(self.refresh_s, RETRY_MIN_S))
        else:
            at = self.fetched_at + self.cache_s
        if self._wanted:
            at = min(at, self.tried_at + self.refresh_s)
        return at

    async def _refresh(self) -> None:
        self.tried_at = time.monotonic()
        self.attempts += 1
        self._wanted = False
        try:
            keys = self._parse(await self._fetch())
        except (CallFailed, ValueError) as exc:
            self._failing = True
            log.warning("could not fetch the key set %s (%s); %s", self.url, exc,
                        f"keeping the {len(self.keys)} keys we have" if self.keys else "tokens are refused")
            return
        self._failing = False
        self.fetches += 1
        self.fetched_at = time.monotonic()
        if keys.keys() != self.keys.keys():
            log.info("key set %s: %d signing keys (%s)", self.url, len(keys), ", ".join(sorted(keys)) or "-")
        self.keys = keys

    async def _fetch(self) -> bytes:
        call = HttpCall(
            "GET", self.url, deadline_s=self.deadline_s, max_bytes=self.max_bytes,
            headers={"User-Agent": f"presence/{__version__}", "Accept": "application/json"},
        )
        try:
            answer: Answer = await asyncio.to_thread(call.run)
        except asyncio.CancelledError:
            call.abort()  # stopping: the worker thread ends now, not at the deadline
            raise
        if answer.status != 200:
            raise ValueError(f"the provider answered HTTP {answer.status}")
        return answer.body

    def _parse(self, body: bytes) -> dict[str, VerificationKey]:
        try:
            document = msgspec.json.decode(body, type=KeySetDocument)
        except (msgspec.DecodeError, RecursionError):
            raise ValueError("the answer is not a JSON Web Key Set ({\"keys\": [...]})") from None
        keys: dict[str, VerificationKey] = {}
        for raw in document.keys:
            try:
                jwk = msgspec.json.decode(raw, type=Jwk)
            except (msgspec.DecodeError, RecursionError):
                continue  # not a key we could use
            alg = jwk_algorithm(jwk)
            if alg is None or jwk.kid is None:
                continue  # not a signing key we may use
            try:
                # from_dict: PyJWT 2.8 types from_json's algorithm as None.
                public = jwt.PyJWK.from_dict(json.loads(bytes(raw)), alg).key
                if alg not in key_algorithms(public, f"key {jwk.kid[:64]!r}"):
                    raise BadKey(f"key {jwk.kid[:64]!r}: its alg {alg} does not fit its type")
            except (jwt.PyJWTError, BadKey, ValueError) as exc:
                log.warning("key set %s: key %r skipped: %s", self.url, jwk.kid[:64], exc)
                continue
            keys[jwk.kid] = VerificationKey(public, (alg,))
        return keys
