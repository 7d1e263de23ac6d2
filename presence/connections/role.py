"""Role: what a connection's first frame made it (a tab or a watcher), as the session's one loop
sees it: how its frames decode, what each costs, who handles it, and how it ends."""

from __future__ import annotations

from typing import Protocol, TypeVar

from .credential import Credential

M = TypeVar("M")


class Role(Protocol[M]):
    @property
    def credential(self) -> Credential:
        """The connection's token (``refresh`` replaces it)."""
        ...

    def decode(self, frame: str | bytes) -> M:
        """Raises ``msgspec.MsgspecError`` (answered ``bad_message``)."""
        ...

    def cost(self, message: M) -> int:
        """Rate tokens ``message`` costs (0: free, a ``pong``)."""
        ...

    async def handle(self, message: M) -> None:
        """Raises ``RequestError`` (answered ``error``; ``BadMessage`` counts as a bad frame) or
        ``CloseError``."""
        ...

    async def end(self, clean: bool) -> None:
        """The connection is over (``clean``: the client closed it with 1000 or 1001)."""
        ...
