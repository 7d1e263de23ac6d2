"""Outcomes: what each workspace script answers, typed, with the events it published.

A script's reply is one JSON object whose ``status`` names its struct, the struct's name in
snake_case (``Granted``: ``granted``), so each script's replies decode as one tagged union
(:data:`AcquireReply`, ...). :class:`Outcome` is one call's reply with the events the call
published, in order (:mod:`~presence.core.events`); callers ``match`` on the reply's type. The
scripts' headers (``presence/gateway/lua/``) list the statuses each one answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from ..wire.messages import DeclineReason, Person
from .events import Event
from .records import HolderRecord, RequestRecord, Snapshot


class Reply(msgspec.Struct, tag_field="status", forbid_unknown_fields=False, rename={"from_": "from"}):
    @property
    def status(self) -> str:
        return str(self.__struct_config__.tag)


class _Grant(Reply):
    fence: int
    ttl_ms: int


class Granted(_Grant, tag="granted"):
    """A new grant of a free lease."""


class Rejoined(_Grant, tag="rejoined"):
    """The caller's user (its tab, in scope tab) already held it: TTL replaced, same fence."""


class TakenOver(_Grant, tag="taken_over"):
    from_: Person


class Busy(Reply, tag="busy"):
    holder: HolderRecord | None = None


class Waiting(Reply, tag="waiting"):
    holder: HolderRecord
    position: int


class Cooldown(Reply, tag="cooldown"):
    retry_ms: int
    holder: HolderRecord


class TooMany(Reply, tag="too_many"):
    """A free named lock, but the workspace already holds ``limit`` named locks: nothing changed."""

    limit: int


class Asked(Reply, tag="asked"):
    deadline_ms: int
    holder: HolderRecord


class Pending(Reply, tag="pending"):
    holder: HolderRecord
    request: RequestRecord | None = None


class Ended(Reply, tag="ended"):
    reason: DeclineReason


class Early(Reply, tag="early"):
    left_ms: int


class NoRequest(Reply, tag="no_request"):
    pass


class Relinquished(Reply, tag="relinquished"):
    """The lease ended (released, revoked, idle); ``next``: whom it was handed to."""

    fence: int
    next: Person | None = None


class Dequeued(Reply, tag="dequeued"):
    pass


class NotHolder(Reply, tag="not_holder"):
    holder: HolderRecord | None = None


class Entered(Reply, tag="entered"):
    rejoined: bool
    seq: int  # the workspace's sequence number right after the join
    snapshot: Snapshot | None = None  # when asked for
    fence: int | None = None  # the workspace's own lease, rejoined
    locks: dict[str, int] | None = None  # the named locks rejoined: lock -> fence


class Left(Reply, tag="left"):
    ttl_ms: int | None = None


class Gone(Reply, tag="gone"):
    """The tab had no presence entry (any more)."""


class Done(Reply, tag="done"):
    pass


class Touched(Reply, tag="touched"):
    """The heartbeat refreshed a workspace's presence entries: ``missing`` were gone (pruned
    while this process was paused): their tabs join again."""

    missing: list[str] = []


class Held(Reply, tag="held"):
    ttl_ms: int


class Free(Reply, tag="free"):
    pass


AcquireReply = Granted | Rejoined | Busy | Waiting | TooMany
TakeoverReply = Granted | TakenOver | Rejoined | Cooldown | TooMany
RequestReply = Granted | Rejoined | Asked | Pending | TooMany
HandoffReply = Ended | TakenOver | Early | NoRequest
ReleaseReply = Relinquished | Dequeued | NotHolder
LeaveReply = Left | Gone
StatusReply = Done | Gone
ExpireReply = Held | Free

R = TypeVar("R", bound=msgspec.Struct)  # a Reply, or the Snapshot the snapshot script answers
R_co = TypeVar("R_co", bound=msgspec.Struct, covariant=True)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R_co]):
    """A script's reply, the events it published (in order) and the loop time it was sent."""

    reply: R_co
    events: list[Event]
    sent_at: float

    @property
    def status(self) -> str:
        return str(self.reply.__struct_config__.tag)
