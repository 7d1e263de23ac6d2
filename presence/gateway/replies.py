"""Replies: each workspace script's reply decoded once, into the :mod:`~presence.core.outcomes`
union of the replies it can give.

A script returns ``{reply JSON, event JSON...}``: the reply object's ``status`` picks its struct
(the union's tag), the events decode into the :mod:`~presence.core.events` union.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any, Generic

import msgspec

from ..core import outcomes as o
from ..core.events import decode_event
from ..core.outcomes import Outcome, R
from ..core.records import Snapshot


class ReplyDecoder(Generic[R]):
    """Decodes the replies of one script: ``replies`` is the union of those it can give (or the
    one struct it always gives)."""

    def __init__(self, script: str, replies: Any) -> None:
        self.script = script
        members = typing.get_args(replies) or (replies,)
        self.statuses = frozenset(str(t.__struct_config__.tag) for t in members)
        self._decoder = msgspec.json.Decoder(replies, strict=False)

    def decode(self, reply: Sequence[str], sent_at: float) -> Outcome[R]:
        raw, *events = reply
        return Outcome(self._decoder.decode(raw), [decode_event(e) for e in events], sent_at)


ACQUIRE: ReplyDecoder[o.AcquireReply] = ReplyDecoder("acquire", o.AcquireReply)
TAKEOVER: ReplyDecoder[o.TakeoverReply] = ReplyDecoder("takeover", o.TakeoverReply)
REQUEST: ReplyDecoder[o.RequestReply] = ReplyDecoder("request", o.RequestReply)
HANDOFF: ReplyDecoder[o.HandoffReply] = ReplyDecoder("handoff", o.HandoffReply)
RELEASE: ReplyDecoder[o.ReleaseReply] = ReplyDecoder("release", o.ReleaseReply)
JOIN: ReplyDecoder[o.Entered] = ReplyDecoder("join", o.Entered)
LEAVE: ReplyDecoder[o.LeaveReply] = ReplyDecoder("leave", o.LeaveReply)
STATUS: ReplyDecoder[o.StatusReply] = ReplyDecoder("status", o.StatusReply)
SNAPSHOT: ReplyDecoder[Snapshot] = ReplyDecoder("snapshot", Snapshot)
EXPIRE: ReplyDecoder[o.ExpireReply] = ReplyDecoder("expire", o.ExpireReply)

DECODERS: tuple[ReplyDecoder[Any], ...] = (
    ACQUIRE, TAKEOVER, REQUEST, HANDOFF, RELEASE, JOIN, LEAVE, STATUS, SNAPSHOT, EXPIRE
)
