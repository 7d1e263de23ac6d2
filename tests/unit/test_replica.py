"""A sequence that went back (a failover promoted a replica that missed the last changes) is a gap:
the core re-reads and adopts the lower snapshot, while a duplicate (the same event by reply and by
pub/sub) stays a duplicate. Redis time (``at``) tells the two apart."""

from __future__ import annotations

from presence.core.events import TabJoined
from presence.core.records import Snapshot
from presence.core.replica import Applied, Replica, went_back
from presence.wire.messages import Person

BOB = Person("bob", "Bob")
T0 = 1_800_000_000_000  # Redis time, ms


def joined(seq: int, at: int, who: Person = BOB) -> TabJoined:
    return TabJoined(seq=seq, at=at, user=who, add={f"c-{who.id}": f'["{who.id}","{who.name}","t",true,null,"s"]'})


def test_went_back_needs_a_seq_not_above_and_a_time_after() -> None:
    assert went_back(seq=5, at=T0 + 10, known_seq=9, known_at=T0)
    assert went_back(seq=9, at=T0 + 10, known_seq=9, known_at=T0)
    assert not went_back(seq=5, at=T0, known_seq=9, known_at=T0)  # a duplicate: not later
    assert not went_back(seq=10, at=T0 + 10, known_seq=9, known_at=T0)  # simply the next
    assert not went_back(seq=5, at=T0 + 10, known_seq=9, known_at=0)  # nothing known yet


def test_a_duplicate_is_stale_but_a_lower_seq_made_later_is_a_gap() -> None:
    r = Replica("doc")
    assert r.reset(Snapshot(seq=10, holder=None, ttl_ms=-2, at=T0))
    assert r.apply(joined(11, T0 + 5)) is Applied.APPLIED
    assert r.apply(joined(11, T0 + 5)) is Applied.STALE  # by reply, then by pub/sub
    assert r.apply(joined(9, T0 + 1)) is Applied.STALE
    # The promoted replica's counter stood at 8: its next event is 9, made after all of the above.
    assert r.apply(joined(9, T0 + 3000)) is Applied.GAP
    # Nothing applies on top of a history Redis lost, not even what looks like the next seq.
    assert r.apply(joined(12, T0 + 3001)) is Applied.GAP
    # The re-read of the new primary is adopted although its seq is lower.
    assert r.reset(Snapshot(seq=10, holder=None, ttl_ms=-2, at=T0 + 3002))
    assert r.seq == 10 and r.apply(joined(11, T0 + 3003)) is Applied.APPLIED


def test_an_older_read_is_refused_a_later_read_of_a_history_that_went_back_is_adopted() -> None:
    r = Replica("doc")
    r.reset(Snapshot(seq=10, holder=None, ttl_ms=-2, at=T0))
    # The same seq read later is the same state: nothing to adopt (unless forced).
    assert not r.reset(Snapshot(seq=10, holder=None, ttl_ms=-2, at=T0 + 4000))
    r.apply(joined(11, T0 + 50))
    assert not r.reset(Snapshot(seq=10, holder=None, ttl_ms=-2, at=T0 + 40))  # read before seq 11
    assert r.seq == 11
    assert r.reset(Snapshot(seq=6, holder=None, ttl_ms=-2, at=T0 + 4000))  # after a failover
    assert r.seq == 6
