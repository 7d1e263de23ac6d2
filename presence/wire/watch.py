"""The watch protocol of ``/ws``: one connection watching many workspaces' leases (list views).

A connection whose first frame is ``watch`` (instead of ``hello``) is a *watcher*: it never joins
a workspace (it is nobody's viewer), it is told ``leases`` (holder and number of viewing users of
each watched workspace it may see), then ``lease`` whenever one's holder or viewer count changes.
``watch`` again replaces the set. Pings and pongs are those of tabs (:mod:`presence.wire.messages`).
"""

from __future__ import annotations

import msgspec

from .messages import Hello, Person, Pong, Refresh, RequestId, _Message

MAX_WATCHED = 500  # workspaces per watcher: one pipelined read, one bounded reply


class Watch(_Message, tag="watch"):
    """Watch these workspaces (replacing any earlier set); the first one carries the token."""

    workspaces: list[str]
    token: str | None = None
    tab: str | None = None
    client: str | None = None
    id: RequestId = None


class WatchHolder(msgspec.Struct):
    user: Person
    since_ms: int  # when this holder got the lease (epoch ms, Redis clock)


class WatchedLease(msgspec.Struct):
    holder: WatchHolder | None
    viewers: int  # users with at least one tab in the workspace


class Leases(_Message, tag="leases"):
    """Reply to ``watch``: every watched workspace the token may see, by id."""

    leases: dict[str, WatchedLease]
    id: RequestId = None
    expires_in_ms: int | None = None  # the token's exp, from now (absent: the token has none)


class Lease(_Message, tag="lease"):
    """A watched workspace's holder or viewer count changed."""

    workspace: str
    holder: WatchHolder | None
    viewers: int


class Forbidden(_Message, tag="error"):
    """Workspaces of a ``watch`` the token may not see: left out of ``leases``."""

    code: str  # always "forbidden" (required fields: defaults would be omitted from the frame)
    message: str
    workspaces: list[str]
    id: RequestId = None


FirstFrame = Hello | Watch
WatcherMessage = Watch | Pong | Refresh
WatchServerMessage = Leases | Lease | Forbidden

_first: msgspec.json.Decoder[FirstFrame] = msgspec.json.Decoder(FirstFrame)
_later: msgspec.json.Decoder[WatcherMessage] = msgspec.json.Decoder(WatcherMessage)
_encoder = msgspec.json.Encoder()


def decode_first(frame: str | bytes) -> FirstFrame:
    """A connection's first frame: ``hello`` (a tab) or ``watch`` (a watcher)."""
    try:
        return _first.decode(frame)
    except RecursionError:
        raise msgspec.DecodeError("JSON is nested too deeply") from None


def decode_watcher(frame: str | bytes) -> WatcherMessage:
    """A later frame of a watcher: ``watch``, ``pong`` or ``refresh``."""
    try:
        return _later.decode(frame)
    except RecursionError:
        raise msgspec.DecodeError("JSON is nested too deeply") from None


def encode(message: WatchServerMessage) -> str:
    return _encoder.encode(message).decode()
