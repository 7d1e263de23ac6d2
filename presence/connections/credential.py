"""Credential: who a connection is, by its token, for as long as the token lasts.

:class:`Verifier` checks a token (a ``hello``'s, a ``watch``'s, a ``refresh``'s) against the
configured keys, issuer and audience. :class:`Credential` is a connection's current token: when it
runs out (its ``exp`` plus ``PRESENCE_TOKEN_LEEWAY_MS``) the connection is closed with 4401, and
a ``refresh`` before then replaces it by a new token of the same user with the same rights (its
``takeover`` and ``lease`` claims: the workspace core took them at the join; other rights take a
reconnect). A tab's new token must still allow its workspace; a watcher's ``ws`` claim applies to
its next ``watch``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from ..auth import Identity, verify
from ..errors import BadToken, RefreshRefused, WorkspaceForbidden
from ..settings import Settings
from ..signing import TokenKeys
from .output import Output


class Verifier:
    def __init__(self, settings: Settings, keys: TokenKeys) -> None:
        self.settings = settings
        self.keys = keys

    @property
    def leeway_s(self) -> float:
        return self.settings.token_leeway_ms / 1000

    async def verify(self, token: str | None) -> Identity:
        """The token's identity; ``BadToken`` (4401) when it is missing, invalid or expired."""
        if not token:
            raise BadToken("missing token")
        key = await self.keys.key_for(token)
        s = self.settings
        return verify(token, key, s.token_issuer, s.token_audience, self.leeway_s)


class Credential:
    """Lifecycle: ``start()`` arms the expiry; ``refresh`` moves it; ``stop()`` disarms it."""
    __slots__ = ("_timer", "identity", "output", "verifier", "workspace")


    def __init__(self, identity: Identity, output: Output, verifier: Verifier, workspace: str | None = None) -> None:
        self.identity = identity
        self.output = output
        self.verifier = verifier
        self.workspace = workspace  # the tab's: a new token must allow it
        self._timer: asyncio.TimerHandle | None = None

    def expires_in_ms(self) -> int | None:
        """Time left until the token's ``exp`` (not counting the leeway); None: it has none."""
        expires = self.identity.expires
        return None if expires is None else max(0, int((expires - time.time()) * 1000))

    def start(self) -> None:
        self.stop()
        expires = self.identity.expires
        if expires is not None:
            delay = max(0.0, expires + self.verifier.leeway_s - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        self.output.close(BadToken.close_code, "token expired: refresh it before it does, or reconnect")

    async def refresh(self, token: str) -> int | None:
        """Make ``token`` the connection's; its time left. ``RefreshRefused`` (``error`` bad_token)
        when it is not valid for this connection: then the old token stays, with its expiry."""
        try:
            identity = await self.verifier.verify(token)
            if self.workspace is not None:
                identity.check_workspace(self.workspace)
        except (BadToken, WorkspaceForbidden) as exc:
            raise RefreshRefused(str(exc)) from None
        old = self.identity
        if identity.user.id != old.user.id:
            raise RefreshRefused("the new token is for another user: reconnect to change users")
        if (identity.may_take_over, identity.read_only) != (old.may_take_over, old.read_only):
            raise RefreshRefused("the new token's takeover or lease claim differs: reconnect to change rights")
        if self.output.closing is not None:
            return self.expires_in_ms()  # too late: the connection is closing already
        # The name stays the one the workspace knows this tab by.
        self.identity = dataclasses.replace(identity, user=old.user)
        self.start()
        return self.expires_in_ms()
