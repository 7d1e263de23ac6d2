"""Replies: what each workspace script answers, typed.

A script returns ``{status, detail JSON or '', event JSON...}``. The status word picks the reply
struct (its msgspec tag) and the detail object fills it; the events are decoded into the
:mod:`~presence.core.events` union. Each script's call returns an :class:`Outcome` of the union of
the replies it can give, so callers ``match`` on the reply's type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from ..core.events import Event, decode_event
from ..core.records import HolderRecord, RequestRecord, Snapshot
from ..wire.messages import Person


class Reply(msgspec.Struct, tag_field="status", forbid_unknown_fields=False, rename={"from_": "from"}):
    @property
    def status(self) -> str:
        return str(self.__struct_config__.tag)


class _Grant(Reply):
    fence: int
    ttl_ms: int


class Granted(_Grant, tag="acquired"):
    """A new grant of a free lease."""


class Rejoined(_Grant, tag="rejoined"):
    """The caller's user (its tab, in scope tab) already held it: TTL replaced, same fence."""


class TakenOver(_Grant, tag="taken_over"):
    from_: Person


class Busy(Reply, tag="busy"):
    holder: HolderRecord | None = None


class Waiting(Reply, tag="queued"):
    holder: HolderRecord
    position: int


class Cooldown(Reply, tag="cooldown"):
    retry_ms: int
    holder: HolderRecord


class Asked(Reply, tag="requested"):
    deadline_ms: int
    holder: HolderRecord


class Pending(Reply, tag="pending"):
    holder: HolderRecord
    request: RequestRecord | None = None


class Ended(Reply, tag="ended"):
    reason: str


class Early(Reply, tag="early"):
    left_ms: int


class NoSuchRequest(Reply, tag="none"):
    pass


class Relinquished(Reply, tag="released"):
    """The lease ended (released, revoked, idle); ``next``: whom it was handed to."""

    fence: int
    next: Person | None = None


class Dequeued(Reply, tag="dequeued"):
    pass


class NotHolder(Reply, tag="not_holder"):
    holder: HolderRecord | None = None


class Entered(Reply, tag="joined"):
    rejoined: bool
    seq: int  # the workspace's sequence number right after the join
    snapshot: Snapshot | None = None  # when asked for
    fence: int | None = None


class Left(Reply, tag="left"):
    ttl_ms: int | None = None


class Gone(Reply, tag="gone"):
    """The tab had no presence entry (any more)."""


class Done(Reply, tag="ok"):
    pass


class Held(Reply, tag="held"):
    ttl_ms: int


class Free(Reply, tag="free"):
    pass


AcquireReply = Granted | Rejoined | Busy | Waiting
TakeoverReply = Granted | TakenOver | Rejoined | Cooldown
RequestReply = Granted | Rejoined | Asked | Pending
HandoffReply = Ended | TakenOver | Early | NoSuchRequest
ReleaseReply = Relinquished | Dequeued | NotHolder
LeaveReply = Left | Gone
StatusReply = Done | Gone
ExpireReply = Held | Free

R = TypeVar("R", bound=msgspec.Struct)  # a Reply, or the Snapshot the snapshot script answers


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """A script's reply, the events it published (in order) and the loop time it was sent."""

    reply: R
    events: list[Event]
    sent_at: float

    @property
    def status(self) -> str:
        return str(self.reply.__struct_config__.tag)


class ReplyDecoder(Generic[R]):
    """Decodes the replies of one script: ``types`` are the replies it can give."""

    def __init__(self, *types: type[R]) -> None:
        self._decoders = {str(t.__struct_config__.tag): msgspec.json.Decoder(t, strict=False) for t in types}

    def decode(self, reply: Sequence[str], sent_at: float) -> Outcome[R]:
        status, raw, *events = reply
        decoder = self._decoders.get(status)
        if decoder is None:
            raise msgspec.ValidationError(f"unexpected script status {status!r}")
        return Outcome(decoder.decode(raw or "{}"), [decode_event(e) for e in events], sent_at)
