"""Replica: this process's copy of one workspace's Redis state, kept current by sequenced events.

A replica applies events strictly in order; a jump in the sequence is a gap, and the owner
re-reads the workspace (:class:`~presence.core.records.Snapshot`) instead of guessing. A sequence
that went back (a failover promoted a replica that missed the last changes) is a gap too: see
:func:`went_back`.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class Lease:
    """One lock's lease as Redis has it: its holder, its wait queue (conns, first in line first)
    and its pending polite-handoff request."""

    holder: HolderRecord | None = None
    queue: list[str] = field(default_factory=list)
    request: RequestRecord | None = None

    @property
    def empty(self) -> bool:
        return self.holder is None and not self.queue and self.request is None


class Replica:
    """Tabs and leases of one workspace at sequence number ``seq`` (0: never read).

    Tabs are also indexed by user, so one change costs what that user's tabs cost, whatever the
    number of people in the workspace. What events changed since the owner last looked is kept in
    ``touched`` (users whose tabs changed), ``locks_changed`` (named locks whose holder changed),
    ``queue_changed`` and ``request_changed`` (the workspace's own lease's); the owner clears them
    (:meth:`looked`). ``leases`` holds only locks with something in them; the workspace's own
    (lock ``""``) is always there.
    """

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.seq = 0
        self.at = 0  # Redis time (ms) of the newest event or read this replica reflects
        self.tabs: dict[str, TabInfo] = {}
        self.leases: dict[str, Lease] = {"": Lease()}
        self._users: dict[str, dict[str, TabInfo]] = {}  # user -> conn -> entry
        self._viewers: dict[str, Viewer] = {}  # user -> entry, kept with _users
        # The viewers in ``state.viewers``' order and their sort keys, kept with _viewers: every
        # welcome shows them all, and sorting a big room for each join cost more than the join.
        self._order: list[tuple[str, str]] = []
        self._sorted: list[Viewer] = []
        self.touched: set[str] = set()
        self.locks_changed: set[str] = set()
        self.queue_changed = False
        self.request_changed = False

    def looked(self) -> None:
        self.touched.clear()
        self.locks_changed.clear()
        self.queue_changed = self.request_changed = False

    # -- the leases ---------------------------------------------------------------------------

    def lease(self, lock: str = "") -> Lease:
        """The lease of ``lock`` (an empty one when nothing is known of it)."""
        return self.leases.get(lock) or Lease()

    @property
    def holder(self) -> HolderRecord | None:
        """The holder of the workspace's own lease."""
        return self.leases[""].holder

    def held(self) -> dict[str, HolderRecord]:
        """Every lock that has a holder, the workspace's own included."""
        return {lock: lease.holder for lock, lease in self.leases.items() if lease.holder is not None}

    def _lease_for_change(self, lock: str) -> Lease:
        lease = self.leases.get(lock)
        if lease is None:
            lease = self.leases[lock] = Lease()
        return lease

    def _settle(self, lock: str) -> None:
        if lock and (lease := self.leases.get(lock)) is not None and lease.empty:
            del self.leases[lock]

    # -- the tabs -----------------------------------------------------------------------------

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
        viewer = rules.viewer(self._users.get(user, {}))
        old = self._viewers.pop(user, None) if viewer is None else self._viewers.get(user)
        if viewer is not None:
            self._viewers[user] = viewer
        order, ranked = self._order, self._sorted
        if old is not None:
            key = rules.name_key(old)
            i = bisect.bisect_left(order, key)
            if viewer is not None and rules.name_key(viewer) == key:
                ranked[i] = viewer  # same place: only its tabs changed
                return
            del order[i], ranked[i]
        if viewer is not None:
            key = rules.name_key(viewer)
            i = bisect.bisect_left(order, key)
            order.insert(i, key)
            ranked.insert(i, viewer)

    # -- changes ------------------------------------------------------------------------------

    def reset(self, snapshot: Snapshot, force: bool = False) -> bool:
        """Adopt a full snapshot if it is newer (or as new, with ``force``). True if adopted."""
        # A read at the same seq is the same state read later, not a history that went back.
        back = snapshot.seq < self.seq and went_back(snapshot.seq, snapshot.at, self.seq, self.at)
        if not back and (snapshot.seq < self.seq or (snapshot.seq == self.seq and not force)):
            return False
        self.seq, self.at = snapshot.seq, snapshot.at
        self.tabs, self._users, self._viewers, self._order, self._sorted = {}, {}, {}, [], []
        for conn, raw in (snapshot.tabs or {}).items():
            if (info := decode_info(raw)) is not None:
                self._put(conn, info)
        self.leases = {"": Lease(snapshot.holder, _ordered(snapshot.queue), snapshot.request)}
        for lock, record in (snapshot.locks or {}).items():
            lease = Lease(record.holder, _ordered(record.queue), record.request)
            if lock and not lease.empty:
                self.leases[lock] = lease
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
        lock = event.lock
        if isinstance(event, LeaseEvent):
            self._lease_for_change(lock).holder = event.holder
            if lock:
                self.locks_changed.add(lock)
        if event.queue is not msgspec.UNSET:
            self._lease_for_change(lock).queue = _ordered(event.queue)
            self.queue_changed = self.queue_changed or not lock
        if event.request is not msgspec.UNSET:
            self._lease_for_change(lock).request = event.request
            self.request_changed = self.request_changed or not lock
        self._settle(lock)
        return Applied.APPLIED

    # -- views --------------------------------------------------------------------------------

    def tabs_of(self, user: str) -> int:
        return rules.tabs_of(self._users.get(user, {}).values(), user)

    def infos_of(self, user: str) -> list[TabInfo]:
        return list(self._users.get(user, {}).values())

    def viewer(self, user: str) -> Viewer | None:
        """The viewer entry of ``user``, None when the user has no tab here."""
        return self._viewers.get(user)

    def holder_view(
        self, holder: HolderRecord | None = None, with_fence: bool = True, lock: str = ""
    ) -> HolderView | None:
        """The view of ``holder`` (default: the current one of ``lock``) with its tabs counted here."""
        h = self.lease(lock).holder if holder is None else holder
        return None if h is None else rules.holder_view(h, self._users.get(h.user, {}).values(), with_fence)

    def locks_view(self) -> dict[str, HolderView]:
        """The holders of the named locks that are held, by lock."""
        out: dict[str, HolderView] = {}
        for lock in sorted(self.leases):
            if lock and (view := self.holder_view(lock=lock)) is not None:
                out[lock] = view
        return out

    def viewers(self) -> list[Viewer]:
        return list(self._sorted)

    def waiting(self, lock: str = "") -> list[Person]:
        """Users in the wait queue of ``lock``, first in line first (a user once, at their best place)."""
        seen: dict[str, Person] = {}
        for conn in self.lease(lock).queue:
            info = self.tabs.get(conn)
            if info is not None and info.user not in seen:
                seen[info.user] = Person(info.user, info.name)
        return list(seen.values())

    def request_view(self) -> RequestView | None:
        r = self.leases[""].request
        if r is None:
            return None
        return RequestView(by=r.person, message=r.message, deadline_at=r.deadline)

    def view(self) -> StateView:
        return StateView(
            self.workspace, self.seq, self.holder_view(), self.viewers(), self.waiting(), self.request_view(),
            locks=self.locks_view() or msgspec.UNSET,
        )
