"""Events: what the Lua scripts publish, one tagged union decoded once.

Every change to a workspace is made by a script that also publishes an event with the
workspace's next sequence number (``seq``) and the Redis time of the change (``at``, epoch ms).
The JSON object's ``kind`` picks the struct. Each event changes the presence of the workspace's
tabs, or one lock's lease (``lock``: ``""`` for the workspace's own lease, else a named lock).
Lease events (:class:`LeaseEvent`) replace the lock's holder (``holder``; ``None``: nobody); those
that end a holder's lease carry it as ``prev``. ``queue`` and ``request``, when present, are the
lock's new wait queue and pending request (absent: unchanged; ``null``: now empty / none).

:data:`LEASE_KINDS` and :data:`CHANGE_KINDS` are the one definition of the event kinds that the
server counts, records and shows as ``state.change``; the JS client's list is checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

import msgspec

from ..wire.messages import Change, DeclineReason, Person, ReleaseReason
from .records import HolderRecord, RequestRecord


class Event(msgspec.Struct, tag_field="kind", forbid_unknown_fields=False, rename={"from_": "from"}):
    seq: int
    at: int = 0
    origin: str = ""  # the conn whose request made the change ('' for timers and handoffs)
    lock: str = ""  # the lock whose lease, queue or request changed ('': the workspace's lease)
    queue: dict[str, int] | msgspec.UnsetType | None = msgspec.UNSET
    request: RequestRecord | msgspec.UnsetType | None = msgspec.UNSET

    lease: ClassVar[bool] = False

    @property
    def kind(self) -> str:
        return str(self.__struct_config__.tag)


class _Presence(Event):
    user: Person | None = None
    add: dict[str, str] = {}  # conn -> its new presence entry (TabInfo JSON)


class TabJoined(_Presence, tag="joined"):
    pass


class StatusChanged(_Presence, tag="status"):
    pass


class TabLeft(Event, tag="left"):
    """A tab left, or dead tabs were pruned (``user`` is one of them). ``ttl_ms``: the holder's
    last tab closed cleanly and the workspace's own lease was shortened to the grace period;
    ``ttls``: the same for named locks, lock -> what is left of its lease."""

    user: Person | None = None
    rm: dict[str, int] = {}
    ttl_ms: int | None = None
    ttls: dict[str, int] | None = None


class WaiterQueued(Event, tag="queued"):
    user: Person | None = None


class WaiterDequeued(Event, tag="dequeued"):
    pass


class HandoffRequested(Event, tag="requested"):
    user: Person | None = None
    wait_ms: int | None = None  # how long the holder has to answer


class RequestEnded(Event, tag="request_ended"):
    """A handoff request ended without a handoff: declined, cancelled or timed out (``reason``),
    answered to the requester ``target``."""

    reason: DeclineReason | None = None
    target: str = ""
    by: Person | None = None


class LeaseEvent(Event):
    lease: ClassVar[bool] = True

    holder: HolderRecord | None = None
    ttl_ms: int | None = None  # a new lease's TTL
    user: Person | None = None  # the new holder, or the one whose lease ended
    from_: Person | None = None  # the replaced holder of a takeover
    by: Person | None = None  # who ended it (an operator's revoke)
    reason: ReleaseReason | None = None
    prev: HolderRecord | None = None  # the holder whose lease ended
    handoff: str = ""  # conn the lease was handed to (queue head or requester)


class LeaseGranted(LeaseEvent, tag="acquired"):
    pass


class LeaseTakenOver(LeaseEvent, tag="taken_over"):
    pass


class LeaseReleased(LeaseEvent, tag="released"):
    pass


class LeaseExpired(LeaseEvent, tag="expired"):
    pass


class LeaseRevoked(LeaseEvent, tag="revoked"):
    pass


class LeaseIdled(LeaseEvent, tag="idle"):
    pass


AnyEvent = (
    TabJoined | StatusChanged | TabLeft | WaiterQueued | WaiterDequeued | HandoffRequested | RequestEnded
    | LeaseGranted | LeaseTakenOver | LeaseReleased | LeaseExpired | LeaseRevoked | LeaseIdled
)

EVENT_TYPES: dict[str, type[Event]] = {
    str(t.__struct_config__.tag): t
    for t in (
        TabJoined, StatusChanged, TabLeft, WaiterQueued, WaiterDequeued, HandoffRequested, RequestEnded,
        LeaseGranted, LeaseTakenOver, LeaseReleased, LeaseExpired, LeaseRevoked, LeaseIdled,
    )
}
LEASE_KINDS: tuple[str, ...] = tuple(k for k, t in EVENT_TYPES.items() if t.lease)
"""Kinds that change the holder: acquired, taken_over, released, expired, revoked, idle."""
CHANGE_KINDS: tuple[str, ...] = ("joined", "left", *LEASE_KINDS)
"""Kinds a ``state`` message names as its ``change``."""

_decoder = msgspec.json.Decoder(AnyEvent, strict=False)


def decode_event(raw: str | bytes) -> Event:
    event: Event = _decoder.decode(raw)  # a variable: msgspec 0.18's Decoder.decode is typed Any
    return event


def change_of(event: Event) -> Change | None:
    """What a ``state`` message names as the change that led to it, if it is one of CHANGE_KINDS."""
    if isinstance(event, LeaseEvent):
        return Change(kind=event.kind, user=event.user, from_=event.from_, lock=event.lock)
    if isinstance(event, TabJoined | TabLeft):
        return Change(kind=event.kind, user=event.user)
    return None


class LeaseObserver(Protocol):
    """Sees every event a script run by *this* process published, once: so each change is seen
    exactly once across all processes (audit log, metrics, expiry sweeper)."""

    def on_events(self, workspace: str, events: Sequence[Event]) -> None: ...
