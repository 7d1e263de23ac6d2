"""A watched workspace's core (list views): it follows events as the workspace cores do and
answers what watchers are told."""

from __future__ import annotations

from core_driver import ALICE, BOB, T0, holder, info

from presence.core.events import LeaseGranted, LeaseReleased, TabJoined
from presence.core.records import Snapshot
from presence.core.replica import Applied
from presence.core.watched import Watched


def test_a_read_of_an_unused_workspace_then_its_first_events_follow_on() -> None:
    w = Watched("fresh")
    # Unread: kept for after the read; a workspace nobody used reads at seq 0, and the first event
    # after it follows on from it, whatever its seq (seeded from Redis time).
    assert w.take(TabJoined(seq=T0 * 1000, at=T0, user=ALICE, add={"c1": info(ALICE, "t1")})) is Applied.STALE
    w.adopt(Snapshot(seq=0, holder=None, ttl_ms=-2, at=T0))
    assert w.lease().viewers == 1
    granted = LeaseGranted(seq=T0 * 1000 + 1, at=T0 + 1, holder=holder(BOB, "t", 7), ttl_ms=1500, user=BOB)
    assert w.take(granted) is Applied.APPLIED
    lease = w.lease()
    assert lease.holder is not None and lease.holder.user == BOB
    released = LeaseReleased(seq=T0 * 1000 + 2, at=T0 + 2, user=BOB, reason="released", prev=holder(BOB, "t", 7))
    assert w.take(released) is Applied.APPLIED and w.lease().holder is None


def test_viewers_are_counted_by_user_and_a_gap_wants_a_read() -> None:
    w = Watched("doc")
    w.adopt(Snapshot(seq=3, holder=None, ttl_ms=-2, at=T0, tabs={"c1": info(ALICE, "t1"), "c2": info(ALICE, "t2")}))
    assert w.lease().viewers == 1
    assert w.take(TabJoined(seq=4, at=T0 + 1, user=BOB, add={"c3": info(BOB, "t3")})) is Applied.APPLIED
    assert w.lease().viewers == 2 and not w.stale
    assert w.take(TabJoined(seq=9, at=T0 + 2, user=BOB)) is Applied.GAP and w.stale
    w.adopt(Snapshot(seq=9, holder=None, ttl_ms=-2, at=T0 + 3))
    assert not w.stale and w.lease().viewers == 0
