"""Outbox: what the engine needs of a connection, declared here so the engine never imports the
connection layer above it (``presence.connections`` implements these protocols).

Frames are queued, never awaited: nothing in the engine waits on a client's socket.
"""

from __future__ import annotations

from typing import Protocol

from ..wire.messages import Person, ServerMessage


class Outbox(Protocol):
    """Somewhere to send frames: a watcher's connection, or a tab's."""

    @property
    def conn(self) -> str:
        """The process-unique connection id (``<server>-<n>``)."""
        ...

    def send(self, message: ServerMessage) -> None:
        """Queue ``message`` (encoded for this connection alone)."""
        ...

    def send_frame(self, text: str, frame: bytes | None = None) -> bool:
        """Queue a message encoded once for many connections (``frame``: its whole WebSocket
        frame, when it may go straight to the socket). True if sent or queued."""
        ...

    def close(self, code: int, reason: str = "") -> None:
        """Flush what is queued, then close with ``code``. Idempotent."""
        ...


class TabOutbox(Outbox, Protocol):
    """A tab's connection: who it is (fixed from its hello and token) and its keepalive."""

    @property
    def user(self) -> Person: ...

    @property
    def workspace(self) -> str: ...

    @property
    def tab_id(self) -> str: ...

    @property
    def may_take_over(self) -> bool: ...

    @property
    def closing(self) -> object | None:
        """Not None once a close was requested: nothing more is sent."""
        ...

    @property
    def answered(self) -> bool:
        """The tab answered the latest ping: the heartbeat renews its lease and presence."""
        ...

    @property
    def last_seen(self) -> float:
        """Monotonic time of the hello or of the last valid pong."""
        ...

    def ping(self, ttl_ms: int | None, ttls: dict[str, int] | None = None) -> None:
        """Send the next ping: ``ttl_ms``, the time left of the workspace's lease when the tab holds
        it; ``ttls``, that of each named lock it holds. Both count down while the ping is queued."""
        ...
