"""Auth: HS256 JWTs carried in ``hello``, and constant-time checks of the operator keys.

Claims: ``sub`` (user id, required), ``name`` (display name, defaults to ``sub``), ``exp``
(required, a number), optional ``ws`` (allowed workspace ids; an entry ending in ``*`` is a
prefix), ``takeover`` (false forbids force takeover) and ``lease`` (false: a read-only token,
which sees presence and shares its meta but may not hold, take, ask for or wait for a lease).
``iss`` and ``aud`` are checked when the server is configured with an issuer or an audience
(``PRESENCE_TOKEN_ISSUER``, ``PRESENCE_TOKEN_AUDIENCE``); a token that names an audience is
refused by a server configured with none, since it was minted for someone else. The algorithms
are pinned by the configured key (:mod:`presence.signing`): ``none`` and any other are refused
whatever the token's header says.

A token is untrusted input: whatever is wrong with it (bad signature, bad JSON, JSON nested too
deep, a claim of the wrong type, text that is not valid Unicode) is a :class:`BadToken` (4401),
never an exception of another kind.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt

from .errors import BadToken, WorkspaceForbidden
from .pem import VerificationKey
from .wire.messages import SERVICE_PREFIX, Person

ALGORITHM = "HS256"
LEEWAY_S = 10
MAX_NAME = 100
MAX_SUB = 200
_TIME_CLAIMS = ("exp", "nbf", "iat")
# What PyJWT (or the JSON under it) raises for malformed input besides its own errors.
_MALFORMED = (jwt.InvalidTokenError, ValueError, TypeError, ArithmeticError, RecursionError)


@dataclass(frozen=True, slots=True)
class Identity:
    user: Person
    workspaces: tuple[str, ...] | None  # None: any workspace
    may_take_over: bool
    read_only: bool = False  # the token's ``lease`` claim is false
    expires: float | None = None  # the token's exp (seconds since the epoch)

    def check_workspace(self, workspace: str) -> None:
        if self.workspaces is None:
            return
        for allowed in self.workspaces:
            if allowed.endswith("*"):
                if workspace.startswith(allowed[:-1]):
                    return
            elif workspace == allowed:
                return
        raise WorkspaceForbidden(f"workspace {workspace!r} is not allowed by this token")


def is_text(value: object) -> bool:
    """A string that can be written as UTF-8: JSON can carry lone surrogates (``"\\ud800"``),
    which nothing downstream (Redis, the wire, the logs) can encode."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def verify(
    token: str, key: str | VerificationKey, issuer: str | None = None, audience: str | None = None,
    leeway_s: float = LEEWAY_S,
) -> Identity:
    """``key``: an HS256 secret, or the key :mod:`presence.signing` resolved for this token;
    ``leeway_s``: how long past its ``exp`` (and before its ``nbf``) a token still counts."""
    if isinstance(key, str):
        key = VerificationKey(key, (ALGORITHM,))
    required = ["exp", "sub", *(["iss"] if issuer is not None else []), *(["aud"] if audience is not None else [])]
    try:
        claims = jwt.decode(
            token, key.key, algorithms=list(key.algorithms), leeway=leeway_s, issuer=issuer, audience=audience,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise BadToken("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise BadToken(f"invalid token: {exc}") from None
    except _MALFORMED:
        raise BadToken("invalid token: malformed") from None
    for claim in _TIME_CLAIMS:
        # PyJWT takes int() of these, so "exp": "9999999999" would pass: a time is a number.
        value = claims.get(claim)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadToken(f"invalid token: '{claim}' must be a number (seconds since the epoch)")
    sub = claims.get("sub")
    name = claims.get("name", sub)
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB:
        raise BadToken(f"invalid token: 'sub' must be a non-empty string of at most {MAX_SUB} characters")
    if not isinstance(name, str) or not name:
        raise BadToken("invalid token: 'name' must be a non-empty string")
    if sub.startswith(SERVICE_PREFIX):
        # Reserved for service holders: a tab of "svc:import" would rejoin the import job's lease.
        raise BadToken(f"invalid token: 'sub' must not start with {SERVICE_PREFIX!r} (reserved for backend jobs)")
    ws = claims.get("ws")
    if ws is not None and (not isinstance(ws, list) or not all(isinstance(w, str) for w in ws)):
        raise BadToken("invalid token: 'ws' must be a list of workspace ids or prefixes*")
    if not all(is_text(text) for text in (sub, name, *(ws or ()))):
        raise BadToken("invalid token: a claim is not valid Unicode (lone surrogate)")
    takeover, lease = claims.get("takeover", True), claims.get("lease", True)
    if not isinstance(takeover, bool):
        raise BadToken("invalid token: 'takeover' must be true or false")
    if not isinstance(lease, bool):
        raise BadToken("invalid token: 'lease' must be true or false")
    exp = claims.get("exp")
    return Identity(Person(sub, name[:MAX_NAME]), tuple(ws) if ws is not None else None, takeover, not lease,
                    None if exp is None else float(exp))


def loose_prefixes(workspaces: list[str] | None) -> list[str]:
    """``ws`` prefixes that do not end at a ``/``: ``team-1*`` also opens ``team-10/x``."""
    return [w for w in workspaces or [] if w.endswith("*") and len(w) > 1 and not w.endswith("/*")]


def mint(
    key: str, user: str, name: str | None = None, ttl_s: int = 3600,
    workspaces: list[str] | None = None, takeover: bool | None = None,
    issuer: str | None = None, audience: str | None = None, lease: bool | None = None,
) -> str:
    """Create a token (for ``presence token``, dev mode and tests; apps mint their own)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "name": name or user, "iat": now, "exp": now + ttl_s}
    if workspaces is not None:
        claims["ws"] = workspaces
    if takeover is not None:
        claims["takeover"] = takeover
    if lease is not None:
        claims["lease"] = lease
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def same_secret(given: str | None, expected: str | None) -> bool:
    """Compare an operator key in constant time; no key configured means no access."""
    if not given or not expected:
        return False
    try:
        digest = hashlib.sha256(given.encode()).digest()
    except UnicodeEncodeError:  # a header or frame cannot carry one, but a JSON string can
        return False
    # Digests first: equal lengths, so not even the key's length shows in the timing.
    return hmac.compare_digest(digest, hashlib.sha256(expected.encode()).digest())
