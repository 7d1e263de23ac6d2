"""View: what this process's tabs of a workspace were last shown, and the update that brings
them to the replica.

Every welcomed tab holds the same view (its ``seq`` label may differ, when only invisible
changes came between). After changes, :meth:`Shown.update` compares only what they touched (the
holder, the users whose tabs changed, the queue, the request), so one change costs the same
whatever the number of people in the workspace, and a change nobody can see yields nothing.
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
    """Writes each welcomed tab's ``Member.seq``: the seq of the view it was sent."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.holder: HolderView | None = None
        self.viewers: dict[str, Viewer] = {}
        self.queue: list[Person] = []
        self.request: RequestView | None = None

    def reset(self) -> None:
        """The tabs are shown the replica whole (a ``state``)."""
        r = self.replica
        self.holder = r.holder_view()
        self.viewers = {v.user.id: v for v in r.viewers()}
        self.queue = r.waiting()
        self.request = r.request_view()
        r.looked()

    def update(self, change: Change | None) -> Update | None:
        """The update from what was shown to the replica (``base`` 0: the caller sets it), or None
        when nothing visible changed. What it returns is what is shown from now on."""
        r = self.replica
        update = Update(workspace=r.workspace, seq=r.seq, base=0, change=change)
        visible = False
        holder = r.holder_view()
        if holder != self.holder:
            self.holder = update.holder = holder
            visible = True
        joined: list[Viewer] = []
        left: list[str] = []
        changed: list[Viewer] = []
        for user in r.touched:
            new, old = r.viewer(user), self.viewers.get(user)
            if new is None:
                if old is not None:
                    left.append(user)
                    del self.viewers[user]
            elif old is None:
                joined.append(new)
                self.viewers[user] = new
            elif new != old:
                changed.append(new)
                self.viewers[user] = new
        if joined:
            update.joined = rules.by_name(joined)
        if left:
            update.left = sorted(left)
        if changed:
            update.viewers = rules.by_name(changed)
        if r.queue_changed and (queue := r.waiting()) != self.queue:
            self.queue = update.queue = queue
        if r.request_changed and (request := r.request_view()) != self.request:
            self.request = update.request = request
        r.looked()
        visible = visible or bool(joined or left or changed) or update.queue is not msgspec.UNSET
        visible = visible or update.request is not msgspec.UNSET
        # A lease change is news even when it changed nothing in the end (taken and revoked at once).
        return update if visible or (change is not None and change.kind in LEASE_KINDS) else None

    def show(self, members: Sequence[Member], state: State, everyone: bool = True) -> list[Send]:
        """Send the whole replica (``state``) to ``members``: after a re-read (``everyone``: the
        view of every tab is then this one) or to one tab that asked."""
        for m in members:
            m.seq = state.seq
        if everyone:
            self.reset()
        return [Send(tuple(m.conn for m in members), state)] if members else []

    def catch_up(self, members: Sequence[Member], change: Change | None) -> list[Send]:
        """One update to every welcomed tab, from the view it holds (its ``seq``, possibly
        different: then only invisible changes came between) to the replica's."""
        update = self.update(change)
        if update is None:
            return []
        by_base: dict[int, list[str]] = {}
        for m in members:
            by_base.setdefault(m.seq, []).append(m.conn)
            m.seq = update.seq
        return [Send(tuple(conns), msgspec.structs.replace(update, base=base)) for base, conns in by_base.items()]
