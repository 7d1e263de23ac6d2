"""Follower: keeps one workspace's replica in step with Redis across its two streams of events.

A script's reply carries the events that script published, at once; pub/sub carries every
event of every process, in order, a little later. For each event from either stream the
follower decides whether the replica applies it, passes over it (already applied, or a reply
that ran ahead of pub/sub, which brings the events before it in order), keeps it for after the
first snapshot, or asks for a re-read (a gap: an event was lost, or the history went back).
"""

from __future__ import annotations

from .events import Event
from .records import Snapshot
from .replica import Applied, Replica

EARLY_MAX = 1000  # events kept while the first snapshot is read; past that, a gap and a re-read


class Follower:
    """Attributes:

    - ``stale``: a re-read is wanted. Set on a gap, and by the shell (a failed renewal, a lost
      subscription); cleared when a re-read is adopted (:meth:`reset`).
    """

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.stale = False
        self._ahead = 0  # the highest seq a script's reply showed (pub/sub brings the events up to it)
        self._behind = False  # the replica was behind that at the last overdue()
        self._early: list[Event] = []  # heard by pub/sub before the first snapshot

    def take(self, event: Event, from_reply: bool) -> Applied:
        """Apply ``event`` to the replica. ``GAP`` only when a re-read is wanted now (``stale`` is
        then set); an event kept or passed over for later counts as ``STALE``."""
        unread = self.replica.seq == 0
        result = self.replica.apply(event)
        if result is not Applied.GAP:
            return result
        if unread:
            # Not read yet: the snapshot of the join in flight covers what came before it; what
            # pub/sub brings meanwhile may be newer, so it is kept for after the snapshot.
            if not from_reply and len(self._early) < EARLY_MAX:
                self._early.append(event)
            return Applied.STALE
        if from_reply:
            # A script's reply ran ahead of pub/sub, which brings every event up to this one in
            # order (the heartbeat re-reads if it does not: see overdue).
            self.expect(event.seq)
            return Applied.STALE
        self.stale = True
        return Applied.GAP

    def reset(self, snapshot: Snapshot) -> tuple[bool, list[Event]]:
        """Adopt a re-read if it is newer (or forced by ``stale``): whether it was adopted, and
        the events pub/sub brought meanwhile that are newer still, to apply after it."""
        adopted = self.replica.reset(snapshot, force=self.stale)
        if adopted:
            self.stale = False
        later = [e for e in self._early if e.seq > self.replica.seq]
        self._early = []
        return adopted, later

    def expect(self, seq: int) -> None:
        """A reply showed that Redis is at ``seq`` at least: pub/sub is to bring the events up to it."""
        self._ahead = max(self._ahead, seq)

    def overdue(self) -> bool:
        """Asked once a heartbeat: are events a reply showed still missing since the last time?"""
        behind = self._ahead > self.replica.seq
        overdue, self._behind = behind and self._behind, behind
        return overdue
