"""Records: a workspace's state as Redis stores it and the scripts return it.

Every struct here is decoded from JSON a Lua script wrote; numbers may arrive as decimal strings
(Lua prints large integers that way), so decoders are built with ``strict=False``.
"""

from __future__ import annotations

import msgspec

from ..wire.messages import Person


class HolderRecord(msgspec.Struct, frozen=True):
    """The announced lease holder, as stored in the workspace's holder hash."""

    fence: int
    user: str
    name: str
    tab: str
    since: int

    @property
    def person(self) -> Person:
        return Person(self.user, self.name)


class TabInfo(msgspec.Struct, array_like=True, frozen=True):
    """One tab's presence entry (stored as a JSON array in Redis)."""

    user: str
    name: str
    tab: str
    active: bool
    meta: dict[str, object] | None
    server: str


class RequestRecord(msgspec.Struct, frozen=True):
    """A pending polite-handoff request: ``conn`` asks the holder; answer due by ``deadline``."""

    conn: str
    user: str
    name: str
    message: str
    deadline: int

    @property
    def person(self) -> Person:
        return Person(self.user, self.name)


class Snapshot(msgspec.Struct, tag_field="status", tag="snapshot"):
    """The whole workspace as read by one script (the ``snapshot`` script's reply, status
    ``snapshot``, and part of ``join``'s). ``ttl_ms`` is the lease's PTTL, negative when there is no
    lease key; ``at`` the Redis time of the read (epoch ms)."""

    seq: int
    holder: HolderRecord | None
    ttl_ms: int
    at: int = 0
    tabs: dict[str, str] | None = None
    queue: dict[str, int] | None = None
    request: RequestRecord | None = None


_info_decoder = msgspec.json.Decoder(TabInfo)
_info_encoder = msgspec.json.Encoder()


def encode_info(info: TabInfo) -> str:
    return _info_encoder.encode(info).decode()


def decode_info(raw: str) -> TabInfo | None:
    """A presence entry, or None for a foreign or corrupt one (it must not break everyone's view)."""
    try:
        return _info_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
