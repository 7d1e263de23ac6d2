"""A sequence that went back (a failover promoted a replica that missed the last changes) is a gap:
the core re-reads and adopts the lower snapshot, while a duplicate (the same event by reply and by
pub/sub) stays a duplicate. Redis time (``at``) tells the two apart."""

from __future__ import annotations

from presence.core.effects import Resync, Send
from presence.core.events import LeaseGranted, TabJoined
from presence.core.member import Member
from presence.core.records import HolderRecord, Snapshot
from presence.core.replica import Applied, Replica, went_back
from presence.core.workspace import Workspace
from presence.settings import Settings
from presence.wire.messages import Person, State

ALICE, BOB = Person("alice", "Alice"), Person("bob", "Bob")
SETTINGS = Settings(lease_ttl_ms=1500, heartbeat_ms=300, dead_after_ms=900, grace_ms=600)
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


def test_the_core_re_reads_and_pushes_the_state_that_went_back() -> None:
    ws = Workspace("doc", SETTINGS)
    ws.members.add(Member("c1", ALICE, "t1"))
    ws.catch_up(Snapshot(seq=20, holder=None, ttl_ms=-2, at=T0), 20, [], sent_at=0.0, now=0.0)
    ws.welcome("c1", rejoined=False, sent_at=0.0, now=0.0)
    lost = HolderRecord(fence=T0 * 1000, user="bob", name="Bob", tab="t", since=T0)
    ws.apply([LeaseGranted(seq=21, at=T0 + 10, holder=lost, ttl_ms=1500, user=BOB)], now=1.0)
    assert ws.replica.holder == lost
    effects = ws.apply([joined(18, T0 + 5000, Person("carol", "Carol"))], now=6.0)
    assert any(isinstance(e, Resync) for e in effects) and ws.follower.stale
    effects = ws.reset(Snapshot(seq=19, holder=None, ttl_ms=-2, at=T0 + 5001), sent_at=6.0, now=6.1)
    states = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, State)]
    assert [s.seq for s in states] == [19] and states[0].holder is None
