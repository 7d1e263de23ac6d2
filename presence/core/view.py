"""View: what this process's tabs of a workspace were last shown, and the update that brings
them to the replica.

Every welcomed tab holds the same view (its ``seq`` label may differ, when only invisible
changes came between). After changes, :meth:`Shown.catch_up` compares only what they touched (the
holder, the users whose tabs changed, the queue, the request, the named locks whose holder
changed), so one change costs the same whatever the number of people in the workspace, and a
change nobody can see yields nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..wire.messages import Change, HolderView, Person, RequestView, State, Update, Viewer
from . import rules
from .effects import Send
from .events import LEASE_KINDS
from .member import Member
from .replica import Replica


class Shown:
    """What the tabs that were shown the whole replica last (at ``seq``) hold now. Tabs welcomed
    (or answered ``sync``) since hold a later view: they get an update that sets every entry that
    changed since ``seq``, which brings any view between to the replica's. Writes each welcomed
    tab's ``Member.seq``: the seq of the view it was sent."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.seq = 0
        self.holder: HolderView | None = None
        self.viewers: dict[str, Viewer] = {}
        self.queue: list[Person] = []
        self.request: RequestView | None = None
        self.locks: dict[str, HolderView] = {}

    def reset(self) -> None:
        """The tabs are shown the replica whole (a ``state``)."""
        r = self.replica
        self.seq = r.seq
        self.holder = r.holder_view()
        self.viewers = {v.user.id: v for v in r.viewers()}
        self.queue = r.waiting()
        self.request = r.request_view()
        self.locks = r.locks_view()
        r.looked()

    def show(self, members: Sequence[Member], state: State, everyone: bool = True) -> list[Send]:
        """Send the whole replica (``state``) to ``members``: after a re-read (``everyone``: the
        view of every tab is then this one) or to one tab that asked."""
        for m in members:
            m.seq = state.seq
        if everyone:
            self.reset()
        return [Send(tuple(m.conn for m in members), state)] if members else []

    def catch_up(self, members: Sequence[Member], change: Change | None) -> list[Send]:
        """One update to every welcomed tab, from the view it holds to the replica's."""
        r = self.replica
        minimal, upsert = self._updates(change)
        by_base: dict[int, list[Member]] = {}
        for m in members:
            by_base.setdefault(m.seq, []).append(m)
        sends = []
        for base, group in by_base.items():
            update = minimal if base == self.seq else upsert
            if update is None:
                continue  # nothing those tabs can see changed
            sends.append(Send(tuple(m.conn for m in group), msgspec.structs.replace(update, base=base)))
            for m in group:
                m.seq = r.seq
        if minimal is not None:
            self.seq = r.seq
        return sends

    def _updates(self, change: Change | None) -> tuple[Update | None, Update | None]:
        """The update for tabs at ``seq`` (only what differs from their view; None when nothing
        does) and the one for tabs at a later view (every entry touched since; None when nothing
        was). What is shown is the replica from now on."""
        r = self.replica
        minimal = Update(workspace=r.workspace, seq=r.seq, base=0, change=change)
        upsert = Update(workspace=r.workspace, seq=r.seq, base=0, change=change)
        holder = r.holder_view()
        if holder != self.holder:
            # Safe for later views too: two holder changes are never merged into one update.
            self.holder = minimal.holder = upsert.holder = holder
        joined: list[Viewer] = []
        left: list[str] = []
        changed: list[Viewer] = []
        all_joined: list[Viewer] = []
        all_left: list[str] = []
        all_changed: list[Viewer] = []
        for user in r.touched:
            new, old = r.viewer(user), self.viewers.get(user)
            if new is None:
                all_left.append(user)
                if old is not None:
                    left.append(user)
                    del self.viewers[user]
            elif old is None:
                joined.append(new)
                all_joined.append(new)
                self.viewers[user] = new
            else:
                all_changed.append(new)
                if new != old:
                    changed.append(new)
                    self.viewers[user] = new
        _fill(minimal, joined, left, changed)
        _fill(upsert, all_joined, all_left, all_changed)
        if r.queue_changed:
            queue = upsert.queue = r.waiting()
            if queue != self.queue:
                self.queue = minimal.queue = queue
        if r.request_changed:
            request = upsert.request = r.request_view()
            if request != self.request:
                self.request = minimal.request = request
        self._locks(minimal, upsert)
        r.looked()
        return (minimal if _news(minimal) else None), (upsert if _news(upsert) else None)


    def _locks(self, minimal: Update, upsert: Update) -> None:
        """Named locks whose holder changed, or whose holder's tabs did (their count is shown)."""
        r = self.replica
        locks = set(r.locks_changed)
        if r.touched:
            locks |= {lock for lock, h in r.held().items() if lock and h.user in r.touched}
        if not locks:
            return
        changed: dict[str, HolderView | None] = {}
        touched: dict[str, HolderView | None] = {}
        for lock in sorted(locks):
            view = touched[lock] = r.holder_view(lock=lock)
            if view != self.locks.get(lock):
                changed[lock] = view
                if view is None:
                    self.locks.pop(lock, None)
                else:
                    self.locks[lock] = view
        if changed:
            minimal.locks = changed
        upsert.locks = touched


def _fill(update: Update, joined: list[Viewer], left: list[str], changed: list[Viewer]) -> None:
    if joined:
        update.joined = rules.by_name(joined)
    if left:
        update.left = sorted(left)
    if changed:
        update.viewers = rules.by_name(changed)


def _news(update: Update) -> bool:
    """Anything to tell: a field, or a lease change (news even when it changed nothing in the end:
    taken and revoked at once)."""
    fields = (update.holder, update.joined, update.left, update.viewers, update.queue, update.request, update.locks)
    return any(f is not msgspec.UNSET for f in fields) or (
        update.change is not None and update.change.kind in LEASE_KINDS
    )
