"""Replica: this process's copy of one workspace's Redis state, kept current by sequenced events.

A replica applies events strictly in order; a jump in the sequence is a gap, and the owner
re-reads the workspace (:class:`~presence.core.records.Snapshot`) instead of guessing. A sequence
that went back (a failover promoted a replica that missed the last changes) is a gap too: see
:func:`went_back`.
"""

from __future__ import annotations

import enum

import msgspec

from ..wire.messages import HolderView, Person, RequestView, StateView, Viewer
from . import rules
from .events import Event, LeaseEvent, StatusChanged, TabJoined, TabLeft
from .records import HolderRecord, RequestRecord, Snapshot, TabInfo, decode_info


def _ordered(queue: dict[str, int] | None) -> list[str]:
    return sorted(queue or {}, key=lambda conn: (queue or {})[conn])


def went_back(seq: int, at: int, known_seq: int, known_at: int) -> bool:
    """Is an event or snapshot (``seq``, Redis time ``at``) from a history that went back?

    Its seq is not above what this replica knows, yet it was made (or read) later than anything
    this replica has seen: Redis lost the changes this replica saw (a failover to a replica that
    missed them). A duplicate (the same event by reply and by pub/sub) is never later than the
    newest one seen. Redis clocks that disagree by more than a failover lasts can hide a regression;
    fences stay safe regardless (the fence rule in lua/_lib.lua).
    """
    return seq <= known_seq and at > known_at > 0


class Applied(enum.Enum):
    APPLIED = "applied"
    STALE = "stale"  # already seen (the same event by reply and by pub/sub)
    GAP = "gap"  # an event is missing: re-read the workspace


class Replica:
    """Holder, tabs, queue and request of one workspace at sequence number ``seq`` (0: never read).

    Tabs are also indexed by user, so one change costs what that user's tabs cost, whatever the
    number of people in the workspace. What events changed since the owner last looked is kept in
    ``touched`` (users whose tabs changed), ``queue_changed`` and ``request_changed``; the owner
    clears them (:meth:`looked`).
    """

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.seq = 0
        self.at = 0  # Redis time (ms) of the newest event or read this replica reflects
        self.holder: HolderRecord | None = None
        self.tabs: dict[str, TabInfo] = {}
        self.queue: list[str] = []  # conns, first in line first
        self.request: RequestRecord | None = None
        self._users: dict[str, dict[str, TabInfo]] = {}  # user -> conn -> entry
        self._viewers: dict[str, Viewer] = {}  # user -> entry, kept with _users
        self.touched: set[str] = set()
        self.queue_changed = False
        self.request_changed = False

    def looked(self) -> None:
        self.touched.clear()
        self.queue_changed = self.request_changed = False

    def _put(self, conn: str, info: TabInfo) -> None:
        old = self.tabs.get(conn)
        if old is not None and old.user != info.user:
            self._drop(conn)
        self.tabs[conn] = info
        self._users.setdefault(info.user, {})[conn] = info
        self._touch(info.user)

    def _drop(self, conn: str) -> None:
        info = self.tabs.pop(conn, None)
        if info is None:
            return
        mine = self._users.get(info.user)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self._users[info.user]
        self._touch(info.user)

    def _touch(self, user: str) -> None:
        self.touched.add(user)
        viewer = rules.viewer(self._users.get(user, {}).values())
        if viewer is None:
            self._viewers.pop(user, None)
        else:
            self._viewers[user] = viewer

    def reset(self, snapshot: Snapshot, force: bool = False) -> bool:
        """Adopt a full snapshot if it is newer (or as new, with ``force``). True if adopted."""
        # A read at the same seq is the same state read later, not a history that went back.
        back = snapshot.seq < self.seq and went_back(snapshot.seq, snapshot.at, self.seq, self.at)
        if not back and (snapshot.seq < self.seq or (snapshot.seq == self.seq and not force)):
            return False
        self.seq, self.at = snapshot.seq, snapshot.at
        self.holder = snapshot.holder
        self.tabs, self._users, self._viewers = {}, {}, {}
        for conn, raw in (snapshot.tabs or {}).items():
            if (info := decode_info(raw)) is not None:
                self._put(conn, info)
        self.queue = _ordered(snapshot.queue)
        self.request = snapshot.request
        self.looked()  # a reset is pushed whole
        return True

    def apply(self, event: Event) -> Applied:
        if went_back(event.seq, event.at, self.seq, self.at):
            self.seq = 0  # unknown until re-read: nothing applies on top of a history Redis lost
            return Applied.GAP
        if event.seq <= self.seq:
            return Applied.STALE
        if self.seq == 0 or event.seq != self.seq + 1:
            return Applied.GAP
        self.seq, self.at = event.seq, max(self.at, event.at)
        if isinstance(event, TabLeft):
            for conn in event.rm:
                self._drop(conn)
        if isinstance(event, TabJoined | StatusChanged):
            for conn, raw in event.add.items():
                if (info := decode_info(raw)) is not None:
                    self._put(conn, info)
        if isinstance(event, LeaseEvent):
            self.holder = event.holder
        if event.queue is not msgspec.UNSET:
            self.queue = _ordered(event.queue)
            self.queue_changed = True
        if event.request is not msgspec.UNSET:
            self.request = event.request
            self.request_changed = True
        return Applied.APPLIED

    def tabs_of(self, user: str) -> int:
        return rules.tabs_of(self._users.get(user, {}).values(), user)

    def infos_of(self, user: str) -> list[TabInfo]:
        return list(self._users.get(user, {}).values())

    def viewer(self, user: str) -> Viewer | None:
        """The viewer entry of ``user``, None when the user has no tab here."""
        return self._viewers.get(user)

    def holder_view(self, holder: HolderRecord | None = None, with_fence: bool = True) -> HolderView | None:
        """The view of ``holder`` (default: the current one) with its tabs counted here."""
        h = self.holder if holder is None else holder
        return None if h is None else rules.holder_view(h, self._users.get(h.user, {}).values(), with_fence)

    def viewers(self) -> list[Viewer]:
        return rules.by_name(self._viewers.values())

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
