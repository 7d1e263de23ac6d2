"""Auth: HS256 JWTs carried in ``hello``, and constant-time checks of the operator keys.

Claims: ``sub`` (user id, required), ``name`` (display name, defaults to ``sub``), ``exp``
(required), optional ``ws`` (allowed workspace ids; an entry ending in ``*`` is a prefix) and
``takeover`` (false forbids force takeover). The algorithms are pinned by the configured key
(:mod:`presence.signing`): ``none`` and any other are refused whatever the token's header says.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt

from .errors import BadToken, WorkspaceForbidden
from .signing import VerificationKey
from .wire.messages import Person

ALGORITHM = "HS256"
LEEWAY_S = 10
MAX_NAME = 100


@dataclass(frozen=True, slots=True)
class Identity:
    user: Person
    workspaces: tuple[str, ...] | None  # None: any workspace
    may_take_over: bool

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


def verify(token: str, key: str | VerificationKey) -> Identity:
    """``key``: an HS256 secret, or the key :mod:`presence.signing` resolved for this token."""
    if isinstance(key, str):
        key = VerificationKey(key, (ALGORITHM,))
    try:
        claims = jwt.decode(
            token, key.key, algorithms=list(key.algorithms), leeway=LEEWAY_S, options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise BadToken("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise BadToken(f"invalid token: {exc}") from None
    sub = claims.get("sub")
    name = claims.get("name", sub)
    if not isinstance(sub, str) or not sub or len(sub) > 200:
        raise BadToken("invalid token: 'sub' must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise BadToken("invalid token: 'name' must be a non-empty string")
    ws = claims.get("ws")
    if ws is not None and (not isinstance(ws, list) or not all(isinstance(w, str) for w in ws)):
        raise BadToken("invalid token: 'ws' must be a list of workspace ids or prefixes*")
    takeover = claims.get("takeover", True)
    if not isinstance(takeover, bool):
        raise BadToken("invalid token: 'takeover' must be true or false")
    return Identity(Person(sub, name[:MAX_NAME]), tuple(ws) if ws is not None else None, takeover)


def mint(
    key: str, user: str, name: str | None = None, ttl_s: int = 3600,
    workspaces: list[str] | None = None, takeover: bool | None = None,
) -> str:
    """Create a token (for ``presence token``, dev mode and tests; apps mint their own)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "name": name or user, "iat": now, "exp": now + ttl_s}
    if workspaces is not None:
        claims["ws"] = workspaces
    if takeover is not None:
        claims["takeover"] = takeover
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def same_secret(given: str | None, expected: str | None) -> bool:
    """Compare an operator key in constant time; no key configured means no access."""
    if not given or not expected:
        return False
    # Digests first: equal lengths, so not even the key's length shows in the timing.
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())
