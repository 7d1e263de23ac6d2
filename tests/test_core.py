"""The workspace core without sockets or Redis: events and replies in, effects out."""

from __future__ import annotations

import dataclasses

from presence.core.effects import Arm, CheckExpiry, Disarm, Replicate, Replication, Resync, Send, Timer
from presence.core.events import LeaseGranted, LeaseRevoked, LeaseTakenOver, StatusChanged, TabJoined, TabLeft
from presence.core.member import Member
from presence.core.records import HolderRecord, Snapshot
from presence.core.workspace import Workspace
from presence.settings import Settings
from presence.wire.messages import Acquired, Change, Person, Released, Update, Welcome

ALICE, BOB = Person("alice", "Alice"), Person("bob", "Bob")
SETTINGS = Settings(lease_ttl_ms=1500, heartbeat_ms=300, dead_after_ms=900, grace_ms=600)
INFO = '["{u}","{n}","{t}",true,null,"s1"]'


def sent(effects: list[object], conn: str) -> list[object]:
    return [e.message for e in effects if isinstance(e, Send) and conn in e.to]


def joined(ws: Workspace, conn: str, user: Person, tab: str, seq: int) -> list[object]:
    ws.members.add(Member(conn, user, tab))
    snapshot = Snapshot(seq=seq, holder=ws.replica.holder, ttl_ms=-2, tabs={
        c: INFO.format(u=i.user, n=i.name, t=i.tab) for c, i in ws.replica.tabs.items()
    } | {conn: INFO.format(u=user.id, n=user.name, t=tab)})
    effects = ws.catch_up(snapshot, seq, [], sent_at=0.0, now=0.0)
    return effects + ws.welcome(conn, rejoined=False, sent_at=0.0, now=0.0)


def holder(user: Person, tab: str, fence: int) -> HolderRecord:
    return HolderRecord(fence=fence, user=user.id, name=user.name, tab=tab, since=1)


def test_a_welcome_then_every_change_reaches_every_tab_as_state() -> None:
    ws = Workspace("doc", SETTINGS)
    effects = joined(ws, "c1", ALICE, "t1", seq=1)
    (welcome,) = sent(effects, "c1")
    assert isinstance(welcome, Welcome) and welcome.state.seq == 1
    add = {"c2": INFO.format(u="bob", n="Bob", t="t2")}
    ws.members.add(Member("c2", BOB, "t2"))
    effects = ws.apply([TabJoined(seq=2, user=BOB, add=add, origin="c2")], now=1.0)
    assert Arm(Timer.FLUSH, 1.0 + SETTINGS.update_window_ms / 1000) in effects and sent(effects, "c1") == []
    effects = ws.fire(Timer.FLUSH, now=1.02)
    (update,) = sent(effects, "c1")
    assert isinstance(update, Update) and (update.base, update.seq) == (1, 2)
    assert [v.user for v in update.joined] == [BOB] and update.change == Change("joined", BOB)
    assert sent(effects, "c2") == []  # not welcomed yet: its welcome carries the state


def test_updates_merge_and_a_change_nobody_sees_sends_nothing() -> None:
    ws = Workspace("doc", SETTINGS)
    joined(ws, "c1", ALICE, "t1", seq=1)
    bob = {"c2": INFO.format(u="bob", n="Bob", t="t2")}
    events = [TabJoined(seq=2, user=BOB, add=bob), StatusChanged(seq=3, user=BOB, add=bob)]
    ws.apply(events, now=0.0)
    (update,) = sent(ws.fire(Timer.FLUSH, now=0.02), "c1")
    assert (update.base, update.seq) == (1, 3) and len(update.joined) == 1
    ws.apply([StatusChanged(seq=4, user=BOB, add=bob)], now=0.1)  # the same entry again
    assert sent(ws.fire(Timer.FLUSH, now=0.12), "c1") == []
    new = joined(ws, "c3", Person("carol", "Carol"), "t3", seq=4)  # welcomed at 4, the others at 3
    welcome = sent(new, "c3")[0]
    assert isinstance(welcome, Welcome) and welcome.state.seq == 4
    left = TabLeft(seq=5, user=BOB, rm={"c2": 1})
    ws.apply([left], now=0.2)
    updates = [e for e in ws.fire(Timer.FLUSH, now=0.22) if isinstance(e, Send)]
    assert {(e.message.base, e.to) for e in updates} == {(3, ("c1",)), (4, ("c3",))}  # type: ignore[union-attr]
    assert all(e.message.left == ["bob"] for e in updates)  # type: ignore[union-attr]


def test_a_grant_heard_by_pubsub_tells_the_holders_tabs_and_arms_deadline_and_expiry() -> None:
    ws = Workspace("doc", SETTINGS)
    joined(ws, "c1", ALICE, "t1", seq=1)
    effects = ws.apply([LeaseGranted(seq=2, holder=holder(ALICE, "t9", 7), ttl_ms=1500, user=ALICE)], now=10.0)
    acquired = [m for m in sent(effects, "c1") if isinstance(m, Acquired)]
    assert [a.fence for a in acquired] == [7]  # scope user: all of Alice's tabs hold it
    arms = {e.timer: e.at for e in effects if isinstance(e, Arm)}
    assert arms[Timer.DEADLINE] == 10.0 + (1500 - SETTINGS.safety_margin_ms) / 1000
    assert arms[Timer.EXPIRY] > 10.0 + 1.5
    assert ws.members["c1"].fence == 7 and ws.holding.renewal("c1") == 7


def test_with_wait_replicas_a_handed_on_lease_is_told_once_the_replicas_have_it() -> None:
    ws = Workspace("doc", dataclasses.replace(SETTINGS, redis_wait_replicas=1))
    joined(ws, "c1", ALICE, "t1", seq=1)
    effects = ws.apply([LeaseGranted(seq=2, holder=holder(ALICE, "t9", 7), ttl_ms=1500, user=ALICE)], now=10.0)
    assert Replicate(7) in effects and not [m for m in sent(effects, "c1") if isinstance(m, Acquired)]
    assert ws.holding.renewal("c1") is None and ws.holding.holders() == []  # not its lease to use yet
    # Too few replicas: asked again a heartbeat later, still untold.
    effects = ws.replicated(7, Replication.UNCONFIRMED, sent_at=10.1, now=10.4)
    assert Arm(Timer.REPLICATE, 10.4 + SETTINGS.heartbeat_ms / 1000) in effects and sent(effects, "c1") == []
    assert ws.fire(Timer.REPLICATE, now=10.7) == [Replicate(7)]
    effects = ws.replicated(7, Replication.CONFIRMED, sent_at=10.7, now=10.8)
    assert [m.fence for m in sent(effects, "c1") if isinstance(m, Acquired)] == [7]
    assert ws.holding.renewal("c1") == 7


def test_with_wait_replicas_a_handoff_that_moved_on_is_never_told() -> None:
    ws = Workspace("doc", dataclasses.replace(SETTINGS, redis_wait_replicas=1))
    joined(ws, "c1", ALICE, "t1", seq=1)
    ws.apply([LeaseGranted(seq=2, holder=holder(ALICE, "t9", 7), ttl_ms=1500, user=ALICE)], now=10.0)
    taken = LeaseTakenOver(seq=3, holder=holder(BOB, "t2", 8), ttl_ms=1500, user=BOB, from_=ALICE)
    effects = ws.apply([taken], now=10.1)
    # It never knew: neither acquired nor released (only the update that shows who holds it).
    assert [m for m in sent(effects, "c1") if isinstance(m, Acquired | Released)] == []
    assert ws.replicated(7, Replication.CONFIRMED, sent_at=10.0, now=10.2) == []
    assert ws.members["c1"].fence is None and ws.members["c1"].pending is None


def test_the_local_deadline_tells_lost_and_asks_for_a_re_read() -> None:
    ws = Workspace("doc", SETTINGS)
    joined(ws, "c1", ALICE, "t1", seq=1)
    ws.apply([LeaseGranted(seq=2, holder=holder(ALICE, "t1", 7), ttl_ms=1500, user=ALICE)], now=0.0)
    effects = ws.fire(Timer.DEADLINE, now=2.0)
    assert sent(effects, "c1") == [Released(reason="lost")]
    assert any(isinstance(e, Resync) for e in effects) and ws.follower.stale and ws.members["c1"].fence is None


def test_a_takeover_tells_the_old_holder_who_took_it() -> None:
    ws = Workspace("doc", SETTINGS)
    joined(ws, "c1", ALICE, "t1", seq=1)
    ws.apply([LeaseGranted(seq=2, holder=holder(ALICE, "t1", 7), ttl_ms=1500, user=ALICE)], now=0.0)
    effects = ws.apply([LeaseTakenOver(
        seq=3, holder=holder(BOB, "t2", 8), ttl_ms=1500, user=BOB, from_=ALICE, reason="taken_over",
        prev=holder(ALICE, "t1", 7),
    )], now=0.5)
    released = [m for m in sent(effects, "c1") if isinstance(m, Released)]
    assert released == [Released(reason="taken_over", by=BOB)]
    assert Disarm(Timer.DEADLINE) in effects  # no local tab holds it any more


def test_a_gap_asks_for_a_re_read_and_stops_applying() -> None:
    ws = Workspace("doc", SETTINGS)
    joined(ws, "c1", ALICE, "t1", seq=1)
    effects = ws.apply([TabJoined(seq=5, user=BOB), TabJoined(seq=6, user=BOB)], now=0.0)
    assert effects == [Resync()] and ws.replica.seq == 1


def test_the_expiry_watch_asks_for_a_check_only_while_someone_holds() -> None:
    ws = Workspace("doc", SETTINGS)
    joined(ws, "c1", ALICE, "t1", seq=1)
    assert ws.fire(Timer.EXPIRY, now=0.0) == []  # never armed
    ws.apply([LeaseGranted(seq=2, holder=holder(BOB, "t2", 3), ttl_ms=1500, user=BOB)], now=0.0)
    assert ws.fire(Timer.EXPIRY, now=1.6) == [CheckExpiry()]


def test_events_heard_before_the_first_snapshot_are_applied_after_it() -> None:
    ws = Workspace("doc", SETTINGS)
    ws.members.add(Member("c1", ALICE, "t1"))
    granted = LeaseGranted(seq=3, holder=holder(BOB, "t2", 9), ttl_ms=1500, user=BOB)
    assert ws.apply([TabJoined(seq=2, user=ALICE), granted], now=0.0) == []  # the join is in flight
    ws.catch_up(Snapshot(seq=2, holder=None, ttl_ms=-2, tabs={"c1": INFO.format(u="alice", n="Alice", t="t1")}),
                2, [], sent_at=0.0, now=0.0)
    assert ws.replica.seq == 3 and ws.replica.holder == holder(BOB, "t2", 9)


def test_two_lease_changes_are_never_merged_and_each_is_news() -> None:
    ws = Workspace("doc", SETTINGS)
    joined(ws, "c1", ALICE, "t1", seq=1)
    granted = LeaseGranted(seq=2, holder=holder(BOB, "t2", 9), ttl_ms=1500, user=BOB)
    revoked = LeaseRevoked(seq=3, user=BOB, reason="revoked", prev=holder(BOB, "t2", 9))
    effects = ws.apply([granted, revoked], now=0.0)  # within one update window
    effects += ws.fire(Timer.FLUSH, now=0.05)
    updates = [m for m in sent(effects, "c1") if isinstance(m, Update)]
    assert [(u.change.kind, u.holder) for u in updates] == [  # type: ignore[union-attr]
        ("acquired", ws.replica.holder_view(holder(BOB, "t2", 9))), ("revoked", None)
    ]
