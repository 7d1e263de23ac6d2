"""Replica: this process's copy of one workspace's Redis state, kept current by sequenced events.

Every change to a workspace is made by a Lua script that also publishes an :class:`Event` with the
workspace's next sequence number. A replica applies events strictly in order; a jump in the
sequence is a gap, and the owner re-reads the workspace (:class:`Snapshot`) instead of guessing.
"""

from __future__ import annotations

import enum

import msgspec

from .protocol import HolderView, Person, RequestView, StateView, Viewer


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


class Event(msgspec.Struct, rename={"from_": "from"}):
    """One published change. ``lease`` events replace the holder (``None``: nobody); those that end
    a holder's lease carry it as ``prev``. ``at`` is the Redis time of the change (epoch ms)."""

    seq: int
    kind: str
    at: int = 0
    lease: bool = False
    holder: HolderRecord | None = None
    ttl_ms: int | None = None
    user: Person | None = None
    from_: Person | None = None
    by: Person | None = None
    reason: str | None = None
    origin: str = ""
    prev: HolderRecord | None = None
    add: dict[str, str] = {}
    rm: dict[str, int] = {}
    # Absent: unchanged; null: now empty / none.
    queue: dict[str, int] | msgspec.UnsetType | None = msgspec.UNSET
    request: RequestRecord | msgspec.UnsetType | None = msgspec.UNSET
    handoff: str = ""  # conn the lease was handed to (queue head or requester)
    target: str = ""  # conn a request_ended event answers
    wait_ms: int | None = None  # a new request's answer timeout
    # Not on the wire: the loop time this process *sent* the script that published the event
    # (set by the lease engine on script replies; None when heard by pub/sub). A lease TTL that
    # the event started cannot end before sent_at + ttl_ms, however late the reply came back.
    sent_at: float | None = None


class Snapshot(msgspec.Struct):
    """The whole workspace as read by one script."""

    seq: int
    holder: HolderRecord | None
    ttl_ms: int
    tabs: dict[str, str] | None = None
    queue: dict[str, int] | None = None
    request: RequestRecord | None = None
    sent_at: float | None = None  # not on the wire: when the reading script was sent (see Event)


_event_decoder = msgspec.json.Decoder(Event, strict=False)
_snapshot_decoder = msgspec.json.Decoder(Snapshot, strict=False)
_info_decoder = msgspec.json.Decoder(TabInfo)
_info_encoder = msgspec.json.Encoder()


def decode_event(raw: str | bytes) -> Event:
    return _event_decoder.decode(raw)


def decode_snapshot(raw: str | bytes) -> Snapshot:
    return _snapshot_decoder.decode(raw)


def encode_info(info: TabInfo) -> str:
    return _info_encoder.encode(info).decode()


def _ordered(queue: dict[str, int] | None) -> list[str]:
    return sorted(queue or {}, key=lambda conn: (queue or {})[conn])


def _decode_info(raw: str) -> TabInfo | None:
    try:
        return _info_decoder.decode(raw)
    except msgspec.DecodeError:
        return None  # a foreign or corrupt entry must not break everyone's view


class Applied(enum.Enum):
    APPLIED = "applied"
    STALE = "stale"  # already seen (the same event by reply and by pub/sub)
    GAP = "gap"  # an event is missing: re-read the workspace


class Replica:
    """Holder and tabs of one workspace at sequence number ``seq`` (0: never read)."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.seq = 0
        self.holder: HolderRecord | None = None
        self.tabs: dict[str, TabInfo] = {}
        self.queue: list[str] = []  # conns, first in line first
        self.request: RequestRecord | None = None

    def reset(self, snapshot: Snapshot, force: bool = False) -> bool:
        """Adopt a full snapshot if it is newer (or as new, with ``force``). True if adopted."""
        if snapshot.seq < self.seq or (snapshot.seq == self.seq and not force):
            return False
        self.seq = snapshot.seq
        self.holder = snapshot.holder
        self.tabs = {c: i for c, raw in (snapshot.tabs or {}).items() if (i := _decode_info(raw)) is not None}
        self.queue = _ordered(snapshot.queue)
        self.request = snapshot.request
        return True

    def apply(self, event: Event) -> Applied:
        if event.seq <= self.seq:
            return Applied.STALE
        if self.seq == 0 or event.seq != self.seq + 1:
            return Applied.GAP
        self.seq = event.seq
        for conn in event.rm:
            self.tabs.pop(conn, None)
        for conn, raw in event.add.items():
            if (info := _decode_info(raw)) is not None:
                self.tabs[conn] = info
        if event.lease:
            self.holder = event.holder
        if event.queue is not msgspec.UNSET:
            self.queue = _ordered(event.queue)
        if event.request is not msgspec.UNSET:
            self.request = event.request
        return Applied.APPLIED

    def tabs_of(self, user: str) -> int:
        """How many tabs ``user`` has here, counted by tab id (see :meth:`viewers`)."""
        return len({t.tab for t in self.tabs.values() if t.user == user})

    def holder_tabs(self) -> int:
        return 0 if self.holder is None else self.tabs_of(self.holder.user)

    def holder_view(self, with_fence: bool = True) -> HolderView | None:
        h = self.holder
        if h is None:
            return None
        return HolderView(
            user=h.person, since_ms=h.since, tabs=self.holder_tabs(), fence=h.fence if with_fence else None
        )

    def viewers(self) -> list[Viewer]:
        """One entry per user. Tabs are counted by tab id, not connection: a tab that reconnected
        while its old connection's presence entry has not expired yet (its server died) is one tab."""
        tab_ids: dict[str, set[str]] = {}
        by_user: dict[str, Viewer] = {}
        for info in self.tabs.values():
            tab_ids.setdefault(info.user, set()).add(info.tab)
            v = by_user.get(info.user)
            if v is None:
                by_user[info.user] = Viewer(Person(info.user, info.name), 0, info.active)
            else:
                v.active = v.active or info.active
        for user, v in by_user.items():
            v.tabs = len(tab_ids[user])
        return sorted(by_user.values(), key=lambda v: (v.user.name, v.user.id))

    def waiting(self) -> list[Person]:
        """Users in the wait queue, first in line first (a user once, at their best place)."""
        seen: dict[str, Person] = {}
        for conn in self.queue:
            info = self.tabs.get(conn)
            if info is not None and info.user not in seen:
                seen[info.user] = Person(info.user, info.name)
        return list(seen.values())

    def request_view(self) -> RequestView | None:
        r = self.request
        if r is None:
            return None
        return RequestView(by=r.person, message=r.message, deadline_at=r.deadline)

    def view(self) -> StateView:
        return StateView(
            self.workspace, self.seq, self.holder_view(), self.viewers(), self.waiting(), self.request_view()
        )
