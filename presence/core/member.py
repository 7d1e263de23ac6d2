"""Member: one local tab as the workspace core sees it."""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.messages import Person, Scope
from . import rules
from .records import HolderRecord


@dataclass(slots=True)
class Member:
    """One local tab as the core sees it. Identity is fixed; the lease state is written by
    :class:`~presence.core.holding.Holding` alone:

    - ``fence``: the lease fence this tab (its user, in scope ``user``) holds, or ``None``.
    - ``pending``: a fence handed to this tab that it is not told of until the replicas have it
      (PRESENCE_REDIS_WAIT_REPLICAS), or ``None``; ``fence`` is set once they do.
    - ``queue_position``: 1-based place in the wait queue, 0 when not waiting.
    - ``welcomed``: false until ``welcome`` is sent; nothing else is sent to the tab before.
    - ``seq``: the sequence number of the view the tab was last sent (its ``base`` for updates).
    - ``active``, ``meta``: the tab's presence, as its ``status`` messages set it.
    """

    conn: str
    user: Person
    tab: str
    fence: int | None = None
    pending: int | None = None
    queue_position: int = 0
    welcomed: bool = False
    seq: int = 0
    active: bool = True
    meta: dict[str, object] | None = None


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

    def remove(self, conn: str) -> None:
        m = self._by_conn.pop(conn, None)
        if m is not None:
            mine = self._by_user[m.user.id]
            mine.discard(conn)
            if not mine:
                del self._by_user[m.user.id]
