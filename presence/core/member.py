"""Member: one local tab as the workspace core sees it, and the local tabs of a workspace."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire.messages import Person, Scope
from . import rules
from .records import HolderRecord, TabInfo


@dataclass(slots=True)
class Hold:
    """What one tab knows of one lock's lease:

    - ``fence``: the fence this tab (its user, in scope ``user``) holds, or ``None``.
    - ``pending``: a fence handed to this tab that it is not told of until the replicas have it
      (PRESENCE_REDIS_WAIT_REPLICAS), or ``None``; ``fence`` is set once they do.
    - ``queue_position``: 1-based place in the lock's wait queue, 0 when not waiting.
    """

    fence: int | None = None
    pending: int | None = None
    queue_position: int = 0

    @property
    def empty(self) -> bool:
        return self.fence is None and self.pending is None and not self.queue_position


_NOTHING = Hold()


@dataclass(slots=True)
class Member:
    """One local tab. Identity (``conn``, ``user``, ``tab``, ``may_take_over``, ``read_only``) is
    fixed at its hello. The rest has one writer each:

    - ``holds``: lock -> :class:`Hold`, only locks the tab holds or waits for; written by
      :class:`~presence.core.holding.Holding` alone.
    - ``welcomed``: false until ``welcome`` is sent; nothing else is sent to the tab before.
    - ``seq``: the sequence number of the view the tab was last sent (its ``base`` for updates),
      written by :class:`~presence.core.view.Shown`.
    - ``active``, ``meta``: the tab's presence as its latest ``status`` set it; ``written``: as
      last written to Redis (a status is written at most once per meta interval), ``written_at``
      when (loop time; in a stream, the cadence's write time it was due at).
    """

    conn: str
    user: Person
    tab: str
    may_take_over: bool = True
    read_only: bool = False
    holds: dict[str, Hold] = field(default_factory=dict)
    welcomed: bool = False
    seq: int = 0
    active: bool = True
    meta: dict[str, object] | None = None
    written: tuple[bool, dict[str, object] | None] = (True, None)
    written_at: float = float("-inf")

    def hold(self, lock: str = "") -> Hold:
        """What the tab knows of ``lock`` (read only: an empty hold when nothing)."""
        return self.holds.get(lock, _NOTHING)

    def change(self, lock: str) -> Hold:
        """The tab's hold of ``lock``, to write (for :class:`~presence.core.holding.Holding`)."""
        hold = self.holds.get(lock)
        if hold is None:
            hold = self.holds[lock] = Hold()
        return hold

    def settle(self, lock: str) -> None:
        if (hold := self.holds.get(lock)) is not None and hold.empty:
            del self.holds[lock]

    @property
    def fence(self) -> int | None:
        """The fence of the workspace's own lease, if this tab holds it."""
        return self.hold().fence

    def info(self, server: str) -> TabInfo:
        """The tab's presence entry as Redis stores it."""
        return TabInfo(self.user.id, self.user.name, self.tab, self.active, self.meta, server)


class Members:
    """The local tabs of one workspace, by conn and by user (the holder's tabs, at once)."""

    def __init__(self) -> None:
        self._by_conn: dict[str, Member] = {}
        self._by_user: dict[str, set[str]] = {}

    def __getitem__(self, conn: str) -> Member:
        return self._by_conn[conn]

    def __contains__(self, conn: object) -> bool:
        return conn in self._by_conn

    def __len__(self) -> int:
        return len(self._by_conn)

    def get(self, conn: str) -> Member | None:
        return self._by_conn.get(conn)

    def values(self) -> list[Member]:
        return list(self._by_conn.values())

    def of_user(self, user: str) -> list[Member]:
        return [self._by_conn[c] for c in self._by_user.get(user, ())]

    def holding(self, holder: HolderRecord, scope: Scope) -> list[Member]:
        """The tabs the lease of ``holder`` belongs to (whether they know it yet or not)."""
        return [m for m in self.of_user(holder.user) if rules.holds(holder, m.user.id, m.tab, scope)]

    def welcomed(self) -> list[Member]:
        return [m for m in self._by_conn.values() if m.welcomed]

    def add(self, member: Member) -> None:
        self._by_conn[member.conn] = member
        self._by_user.setdefault(member.user.id, set()).add(member.conn)

    def remove(self, conn: str) -> Member | None:
        m = self._by_conn.pop(conn, None)
        if m is not None:
            mine = self._by_user[m.user.id]
            mine.discard(conn)
            if not mine:
                del self._by_user[m.user.id]
        return m
