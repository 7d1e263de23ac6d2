"""A sequence that went back (a failover promoted a replica that missed the last changes) is a gap:
the core re-reads and adopts the lower snapshot, while a duplicate (the same event by reply and by
pub/sub) stays a duplicate. Redis time (``at``) tells the two apart."""

from __future__ import annotations

import random

from presence.core import rules
from presence.core.events import StatusChanged, TabJoined, TabLeft
from presence.core.records import Snapshot, TabInfo, encode_info
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


def test_the_viewers_stay_sorted_by_name_then_id_through_joins_renames_status_and_leaves() -> None:
    # The replica keeps state.viewers sorted as tabs come and go (a welcome shows them all): the
    # order must equal a fresh sort after every change, a user with two tabs listed once.
    rnd = random.Random(7)
    r = Replica("doc")
    r.reset(Snapshot(seq=1, holder=None, ttl_ms=-2, at=T0))
    seq, conns = 1, dict[str, str]()  # conn -> user
    names = ["Ann", "Bob", "bob", "Cy", "Ann"]  # equal names: ordered by id
    for step in range(600):
        seq += 1
        user = f"u{rnd.randrange(12)}"
        if conns and rnd.random() < 0.35:
            conn = rnd.choice(sorted(conns))
            del conns[conn]
            event: TabJoined | StatusChanged | TabLeft = TabLeft(seq=seq, at=T0, rm={conn: 1})
        else:
            conn = rnd.choice([c for c, u in conns.items() if u == user] or [f"c{step}"])
            conns[conn] = user
            # A user's name may change with a new token: the entry moves to its new place.
            info = TabInfo(user, rnd.choice(names), f"t{step}", rnd.random() < 0.5, None, "s")
            kind = StatusChanged if rnd.random() < 0.5 else TabJoined
            event = kind(seq=seq, at=T0, user=Person(user, info.name), add={conn: encode_info(info)})
        assert r.apply(event) is Applied.APPLIED
        shown = r.viewers()
        assert shown == rules.by_name(rules.viewers(r.tabs)), step
        assert sorted(v.user.id for v in shown) == sorted(set(conns.values()))
    # A re-read starts the order afresh.
    zed = encode_info(TabInfo("z", "Zed", "t", True, None, "s"))
    assert r.reset(Snapshot(seq=seq + 1, holder=None, ttl_ms=-2, at=T0, tabs={"x": zed}))
    assert [v.user.id for v in r.viewers()] == ["z"]
