"""Watched: the core of a workspace that a list page watches (a light copy: no local tab, no lease
of its own), behind one door like the workspace core's.

It follows the workspace's events with the same :class:`~presence.core.follower.Follower` the
workspace cores use, and answers what watchers are told: the holder of the workspace's own lease
and the number of viewing users. The shell (:mod:`presence.engine.watchers`) reads it, feeds it
events and re-reads, and sends what changed.
"""

from __future__ import annotations

from ..wire.watch import WatchedLease, WatchHolder
from .events import Event
from .follower import Follower
from .records import Snapshot
from .replica import Applied, Replica


class Watched:
    """Lifecycle: created unread; :meth:`adopt` a read, then :meth:`take` each event. ``stale``:
    a re-read is wanted (a gap, events lost while reading, a lost subscription)."""

    def __init__(self, workspace: str) -> None:
        self._follower = Follower(Replica(workspace))

    @property
    def stale(self) -> bool:
        return self._follower.stale

    def lease(self) -> WatchedLease:
        """Holder and viewing users, as watchers are told them."""
        r = self._follower.replica
        h = r.holder
        holder = None if h is None else WatchHolder(h.person, h.since)
        return WatchedLease(holder, len({info.user for info in r.tabs.values()}))

    def take(self, event: Event) -> Applied:
        """An event from pub/sub: ``APPLIED`` (tell what changed), ``GAP`` (re-read) or ``STALE``
        (already seen, or kept for after the read in flight)."""
        return self._follower.take(event, from_reply=False)

    def want(self) -> None:
        """Events may be lost (the subscription was confirmed again): re-read."""
        self._follower.want()

    def adopt(self, snapshot: Snapshot) -> None:
        """A read: adopted whole, then what was heard meanwhile; ``stale`` after it when a gap or
        lost events among those want another read."""
        _, later = self._follower.reset(snapshot, force=True)
        for event in later:
            self._follower.take(event, from_reply=False)
