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


class LockRecord(msgspec.Struct, frozen=True):
    """One named lock as read by a snapshot: its holder (``ttl_ms`` its PTTL, negative when the
    lease key is gone), wait queue (conn -> place) and pending request."""

    holder: HolderRecord | None = None
    ttl_ms: int = -2
    queue: dict[str, int] | None = None
    request: RequestRecord | None = None


class Snapshot(msgspec.Struct, tag_field="status", tag="snapshot"):
    """The whole workspace as read by one script (the ``snapshot`` script's reply, status
    ``snapshot``, and part of ``join``'s). ``ttl_ms`` is the lease's PTTL, negative when there is no
    lease key; ``at`` the Redis time of the read (epoch ms). ``holder``, ``ttl_ms``, ``queue`` and
    ``request`` are the workspace's own lease; ``locks`` the named locks that have a holder, a
    queue or a request."""

    seq: int
    holder: HolderRecord | None
    ttl_ms: int
    at: int = 0
    tabs: dict[str, str] | None = None
    queue: dict[str, int] | None = None
    request: RequestRecord | None = None
    locks: dict[str, LockRecord] | None = None

    def lock(self, lock: str) -> LockRecord:
        """The lease of ``lock`` ("": the workspace's own) as read."""
        if not lock:
            return LockRecord(self.holder, self.ttl_ms, self.queue, self.request)
        return (self.locks or {}).get(lock) or LockRecord()


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
