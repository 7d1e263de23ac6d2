"""Tab: one browser tab's connection, i.e. one (user, workspace, browser tab), as the engine sees
it (:class:`~presence.engine.outbox.TabOutbox`).

Who it is comes from its ``hello`` and its token (the token may be refreshed: its rights then
are the new token's); its frames go through the connection's :class:`~presence.connections.output.Output`,
and its pings are numbered by its :class:`~presence.connections.keepalive.Keepalive`. Its lease
state and presence (fence, queue position, active, meta) are not here: the workspace core owns them.
"""

from __future__ import annotations

from ..wire.messages import Person, Ping, ServerMessage
from .credential import Credential
from .keepalive import Keepalive
from .output import Closing, Output


class Tab:
    """``conn``: process-unique connection id (``<server>-<n>``), also the tab's member name in the
    workspace's Redis presence set; ``workspace``, ``tab_id``: from the hello, fixed."""

    __slots__ = ("credential", "keepalive", "output", "tab_id", "workspace")

    def __init__(self, output: Output, credential: Credential, workspace: str, tab_id: str) -> None:
        self.output = output
        self.credential = credential
        self.workspace = workspace
        self.tab_id = tab_id
        self.keepalive = Keepalive()

    def __repr__(self) -> str:
        return f"<Tab {self.conn} {self.user.id}@{self.workspace}>"

    @property
    def conn(self) -> str:
        return self.output.conn

    @property
    def user(self) -> Person:
        return self.credential.identity.user

    @property
    def may_take_over(self) -> bool:
        return self.credential.identity.may_take_over

    @property
    def closing(self) -> Closing | None:
        return self.output.closing

    @property
    def answered(self) -> bool:
        return self.keepalive.answered

    @property
    def last_seen(self) -> float:
        return self.keepalive.last_seen

    def send(self, message: ServerMessage) -> None:
        self.output.send(message)

    def send_frame(self, text: str, frame: bytes | None = None) -> bool:
        return self.output.send_frame(text, frame)

    def close(self, code: int, reason: str = "") -> None:
        self.output.close(code, reason)

    def ping(self, ttl_ms: int | None, ttls: dict[str, int] | None = None) -> None:
        """Send the next ping (``ttl_ms``: the lease time left, when this tab holds the lease;
        ``ttls``: that of each named lock it holds)."""
        self.output.send(Ping(n=self.keepalive.next_ping(), ttl_ms=ttl_ms, ttls=ttls))

    def pong(self, n: int) -> None:
        self.keepalive.pong(n)
