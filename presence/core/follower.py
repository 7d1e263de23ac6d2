"""Follower: keeps one workspace's replica in step with Redis across its two streams of events.

A script's reply carries the events that script published, at once; pub/sub carries every
event of every process, in order, a little later. For each event from either stream the
follower decides whether the replica applies it, passes over it (already applied, or a reply
that ran ahead of pub/sub, which brings the events before it in order), keeps it for after the
next read (none adopted yet, or one is wanted), or asks for a re-read (a gap: an event was lost,
or the history went back). Workspace cores and the watchers' light copies follow the same way.
"""

from __future__ import annotations

from .events import Event
from .records import Snapshot
from .replica import Applied, Replica

EARLY_MAX = 256  # events kept while a read is awaited; past that, the read is done again


class Follower:
    """Attributes:

    - ``stale``: a re-read is wanted. Set on a gap, and by :meth:`want` (a failed renewal, a lost
      subscription); cleared when a re-read is adopted (:meth:`reset`).
    - ``read``: a snapshot was adopted at least once. A read of a workspace nobody used yet
      answers seq 0; the first event after it follows on from it, whatever its seq (the scripts
      seed a new sequence from Redis time), since the channel was subscribed before the read.
    """

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.stale = False
        self.read = False
        self._ahead = 0  # the highest seq a script's reply showed (pub/sub brings the events up to it)
        self._behind = False  # the replica was behind that at the last overdue()
        self._early: list[Event] = []  # heard while a read is awaited, for after it
        self._overflow = False  # early events were dropped: read again

    @property
    def waiting(self) -> bool:
        """A read is awaited: none adopted yet, or a re-read wanted."""
        return self.stale or not self.read

    def want(self) -> None:
        """Redis may have changed without this replica hearing of it: re-read."""
        self.stale = True

    def take(self, event: Event, from_reply: bool) -> Applied:
        """Apply ``event`` to the replica. ``GAP`` only when a re-read is wanted now (``stale`` is
        then set); an event kept or passed over for later counts as ``STALE``."""
        r = self.replica
        if self.read and not self.stale and r.seq == 0 and event.seq > 1:
            r.seq = event.seq - 1  # read before first use (seq 1 cannot follow on from 0: a re-read)
        if self.waiting:
            if not from_reply:
                self._keep(event)
            return Applied.STALE
        result = r.apply(event)
        if result is not Applied.GAP:
            return result
        if from_reply:
            # A script's reply ran ahead of pub/sub, which brings every event up to this one in
            # order (the heartbeat re-reads if it does not: see overdue).
            self.expect(event.seq)
            return Applied.STALE
        self.stale = True
        self._keep(event)
        return Applied.GAP

    def _keep(self, event: Event) -> None:
        if len(self._early) < EARLY_MAX:
            self._early.append(event)
        else:
            self._overflow = True

    def reset(self, snapshot: Snapshot, force: bool = False) -> tuple[bool, list[Event]]:
        """Adopt a read if it is newer (or as new, when a re-read was wanted, or ``force``):
        whether it was adopted, and the events heard meanwhile that are newer still, to apply
        after it. Events lost meanwhile (too many to keep) make it stale again."""
        adopted = self.replica.reset(snapshot, force=force or self.stale or not self.read)
        if adopted:
            self.stale = False
            self.read = True
        later = [e for e in self._early if e.seq > self.replica.seq]
        self._early = []
        if self._overflow:
            self._overflow = False
            self.stale = True
        return adopted, later

    def expect(self, seq: int) -> None:
        """A reply showed that Redis is at ``seq`` at least: pub/sub is to bring the events up to it."""
        self._ahead = max(self._ahead, seq)

    def overdue(self) -> bool:
        """Asked once a heartbeat: are events a reply showed still missing since the last time?"""
        behind = self._ahead > self.replica.seq
        overdue, self._behind = behind and self._behind, behind
        return overdue
