"""What happens to a workspace, through the core's front door: events of other processes, re-reads,
renewals, timers and the outcomes of the scripts its effects asked for."""

from __future__ import annotations

import dataclasses

import pytest
from core_driver import ALICE, BOB, CAROL, POLICY, T0, Driver, armed, holder, info, outcome, sent

from presence.core.effects import CheckExpiry, IdleDue, Replicate, Replication, RequestDue, Resync, Send, Timer
from presence.core.events import (
    HandoffRequested,
    LeaseExpired,
    LeaseGranted,
    LeaseRevoked,
    LeaseTakenOver,
    RequestEnded,
    StatusChanged,
    TabJoined,
    TabLeft,
)
from presence.core.outcomes import Early, Free, Held
from presence.core.records import LockRecord, RequestRecord
from presence.wire.messages import Acquired, Change, Declined, Released, Requested, State, Update, Welcome


def test_a_welcome_then_every_change_reaches_every_tab_as_one_update() -> None:
    d = Driver()
    (welcome,) = sent(d.join("c1", ALICE), "c1")
    assert isinstance(welcome, Welcome) and welcome.state.seq == 1
    effects = d.join("c2", BOB, now=1.0)
    # After a quiet moment the change goes out at once: with the rest of this loop turn.
    assert sent(effects, "c1") == [] and armed(effects, Timer.FLUSH) == 1.0
    (update,) = sent(d.flush(1.0), "c1", Update)
    assert (update.base, update.seq) == (1, 2)
    assert [v.user for v in update.joined] == [BOB] and update.change == Change("joined", BOB)  # type: ignore[union-attr]


def test_the_update_window_opens_with_an_update_sent_so_only_a_burst_is_merged() -> None:
    d = Driver()
    d.join("c1", ALICE)
    window = POLICY.update_window_ms / 1000
    d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 1})}), now=5.0)
    assert len(sent(d.flush(5.0), "c1", Update)) == 1
    # Within the window after that update: held back until the window ends, then one update.
    effects = d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 2})}),
                        now=5.01)
    effects += d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 3})}),
                         now=5.02)
    assert armed(effects, Timer.FLUSH) == pytest.approx(5.0 + window) and sent(effects, "c1") == []
    (update,) = sent(d.flush(5.0 + window), "c1", Update)
    assert update.seq == d.seq and update.viewers[0].presence[0].meta == {"x": 3}  # type: ignore[index]
    # Quiet again: the next change is not delayed.
    effects = d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 4})}),
                        now=9.0)
    assert armed(effects, Timer.FLUSH) == 9.0


def test_a_burst_goes_out_on_the_instants_every_process_shares() -> None:
    # Two processes whose event loops' clocks differ (each its own offset to the wall clock):
    # a burst's updates go out at the same wall-clock instants, multiples of the window, on both.
    window = POLICY.update_window_ms / 1000
    instants = []
    for offset in (0.0, 1234.567):
        d = Driver(policy=dataclasses.replace(POLICY, clock_offset_s=offset))
        d.join("c1", ALICE)
        loop_t = 77.013 - offset  # both at wall time 77.013, off the cadence
        d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 1})}),
                  now=loop_t)
        assert len(sent(d.flush(loop_t), "c1", Update)) == 1  # after a quiet moment: at once
        effects = d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 2})}),
                            now=loop_t + 0.01)
        at = armed(effects, Timer.FLUSH)
        assert at is not None and at >= loop_t + window  # never two updates within a window
        instants.append(at + offset)
    assert instants[0] == pytest.approx(77.1) and instants[1] == pytest.approx(77.1)


def test_a_flush_that_goes_off_late_keeps_the_cadence() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 1})}), now=3.0)
    d.flush(3.0)
    effects = d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 2})}),
                        now=3.01)
    assert armed(effects, Timer.FLUSH) == pytest.approx(3.05)
    d.flush(3.054)  # 4 ms late
    effects = d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", meta={"x": 3})}),
                        now=3.06)
    assert armed(effects, Timer.FLUSH) == pytest.approx(3.1)  # the next instant, not one later


def test_updates_merge_and_a_change_nobody_sees_sends_nothing() -> None:
    d = Driver()
    d.join("c1", ALICE)
    bob = {"c2": info(BOB, "t2")}
    d.publish(TabJoined(seq=d.next_seq(), user=BOB, add=bob))
    d.publish(StatusChanged(seq=d.next_seq(), user=BOB, add=bob))
    (update,) = sent(d.flush(), "c1", Update)
    assert (update.base, update.seq) == (1, 3) and len(update.joined) == 1  # type: ignore[arg-type]
    d.publish(StatusChanged(seq=d.next_seq(), user=BOB, add=bob))  # the same entry again
    assert sent(d.flush(), "c1") == []


def test_tabs_shown_different_views_get_updates_from_their_own_base() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    d.flush()
    d.join("c3", CAROL)  # welcomed at 3; c1 and c2 were shown 2
    d.flush()
    left = TabLeft(seq=d.next_seq(), user=BOB, rm={"c2": 1})
    d.publish(left)
    updates = [e for e in d.flush() if isinstance(e, Send)]
    assert {(e.message.base, e.to) for e in updates} == {(3, ("c1", "c3"))} or all(  # type: ignore[union-attr]
        e.message.left == ["bob"] for e in updates  # type: ignore[union-attr]
    )


def test_a_grant_heard_by_pubsub_tells_every_tab_of_the_user_and_arms_deadline_and_expiry() -> None:
    d = Driver()
    d.join("c1", ALICE)
    effects = d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t9", 7), ttl_ms=1500, user=ALICE),
                        now=10.0)
    assert [a.fence for a in sent(effects, "c1", Acquired)] == [7]  # scope user: all Alice's tabs
    assert armed(effects, Timer.DEADLINE) == 10.0 + (1500 - POLICY.safety_margin_ms) / 1000
    assert (armed(effects, Timer.EXPIRY) or 0) > 11.5
    assert d.core.renewals(["c1"]) == {"": 7}


def test_in_scope_tab_only_the_tab_that_took_it_holds_it() -> None:
    d = Driver(policy=dataclasses.replace(POLICY, lease_scope="tab"))
    d.join("c1", ALICE, tab="t1")
    d.join("c2", ALICE, tab="t2")
    effects = d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t1", 7), ttl_ms=1500, user=ALICE))
    assert [a.fence for a in sent(effects, "c1", Acquired)] == [7] and sent(effects, "c2", Acquired) == []


def test_with_wait_replicas_a_handed_on_lease_is_told_once_the_replicas_have_it() -> None:
    d = Driver(policy=dataclasses.replace(POLICY, wait_replicas=True))
    d.join("c1", ALICE)
    effects = d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t9", 7), ttl_ms=1500, user=ALICE),
                        now=10.0)
    assert Replicate(7) in effects and sent(effects, "c1", Acquired) == []
    assert d.core.renewals(["c1"]) == {} and d.core.held_locally() == []  # not its lease to use yet
    effects = d.take(d.core.replicated("", 7, Replication.UNCONFIRMED, sent_at=10.1, now=10.4))
    assert armed(effects, Timer.REPLICATE) == 10.4 + POLICY.heartbeat_ms / 1000 and sent(effects, "c1") == []
    assert d.fire(Timer.REPLICATE, now=10.7) == [Replicate(7)]
    effects = d.take(d.core.replicated("", 7, Replication.CONFIRMED, sent_at=10.7, now=10.8))
    assert [m.fence for m in sent(effects, "c1", Acquired)] == [7]
    assert d.core.renewals(["c1"]) == {"": 7}


def test_with_wait_replicas_a_handoff_that_moved_on_is_never_told() -> None:
    d = Driver(policy=dataclasses.replace(POLICY, wait_replicas=True))
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t9", 7), ttl_ms=1500, user=ALICE), now=10.0)
    taken = LeaseTakenOver(seq=d.next_seq(), holder=holder(BOB, "t2", 8), ttl_ms=1500, user=BOB, from_=ALICE)
    effects = d.publish(taken, now=10.1)
    assert [m for m in sent(effects, "c1") if isinstance(m, Acquired | Released)] == []
    assert d.core.replicated("", 7, Replication.CONFIRMED, sent_at=10.0, now=10.2) == []
    assert d.core.renewals(["c1"]) == {}


def test_the_local_deadline_tells_lost_and_asks_for_a_re_read() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t1", 7), ttl_ms=1500, user=ALICE))
    effects = d.fire(Timer.DEADLINE, now=2.0)
    assert sent(effects, "c1") == [Released(reason="lost")]
    assert Resync() in effects and d.core.stale and d.core.renewals(["c1"]) == {}


def test_a_takeover_tells_the_old_holder_who_took_it_and_drops_its_deadline() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t1", 7), ttl_ms=1500, user=ALICE))
    effects = d.publish(LeaseTakenOver(
        seq=d.next_seq(), holder=holder(BOB, "t2", 8), ttl_ms=1500, user=BOB, from_=ALICE, reason="taken_over",
        prev=holder(ALICE, "t1", 7),
    ), now=0.5)
    assert sent(effects, "c1", Released) == [Released(reason="taken_over", by=BOB)]
    from presence.core.effects import Disarm

    assert Disarm(Timer.DEADLINE) in effects  # no local tab holds it any more


def test_an_expiry_tells_the_holder_expired() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t1", 7), ttl_ms=1500, user=ALICE))
    effects = d.publish(LeaseExpired(seq=d.next_seq(), user=ALICE, prev=holder(ALICE, "t1", 7)))
    assert sent(effects, "c1", Released) == [Released(reason="expired")]


def test_a_gap_asks_for_one_re_read_and_what_follows_is_applied_after_it() -> None:
    d = Driver()
    d.join("c1", ALICE)
    effects = d.publish(TabJoined(seq=5, user=BOB, add={"c2": info(BOB, "t2")}))
    effects += d.publish(TabJoined(seq=6, user=CAROL, add={"c3": info(CAROL, "t3")}))
    assert effects.count(Resync()) == 1 and d.core.stale
    d.seq, d.tabs = 5, {"c1": info(ALICE, "t-c1"), "c2": info(BOB, "t2")}
    effects = d.take(d.core.reread(outcome(d.snapshot()), 0.0))
    (state,) = sent(effects, "c1", State)
    assert state.seq == 5 and not d.core.stale
    (update,) = sent(d.flush(), "c1", Update)  # seq 6, heard during the read, applied after it
    assert update.seq == 6 and [v.user for v in update.joined] == [CAROL]  # type: ignore[union-attr]


def test_events_heard_before_the_first_snapshot_are_applied_after_it() -> None:
    d = Driver()
    from presence.core.member import Member

    d.core.enter(Member("c1", ALICE, "t1"))
    granted = LeaseGranted(seq=3, holder=holder(BOB, "t2", 9), ttl_ms=1500, user=BOB)
    assert d.publish(TabJoined(seq=2, user=ALICE)) == [] and d.publish(granted) == []  # the join is in flight
    d.seq, d.tabs = 2, {"c1": info(ALICE, "t1")}
    from presence.core.outcomes import Entered

    effects = d.take(d.core.joined("c1", outcome(Entered(rejoined=False, seq=2, snapshot=d.snapshot())), 0.0))
    (welcome,) = sent(effects, "c1", Welcome)  # the snapshot at 2, then what pub/sub brought: 3
    assert welcome.state.seq == 3 and welcome.state.holder is not None and welcome.state.holder.user == BOB


def test_a_rejoin_within_grace_keeps_the_lease_told_with_the_welcome() -> None:
    d = Driver()
    d.holder = holder(ALICE, "t-c1", 7)
    effects = d.join("c1", ALICE, rejoined=True, now=1.0)
    assert [type(m) for m in sent(effects, "c1")] == [Welcome, Acquired]
    acquired = sent(effects, "c1", Acquired)[0]
    assert acquired.rejoined and acquired.fence == 7 and acquired.ttl_ms > 0  # type: ignore[union-attr]
    assert d.core.renewals(["c1"]) == {"": 7}


def test_the_expiry_watch_asks_for_a_check_only_while_someone_holds() -> None:
    d = Driver()
    d.join("c1", ALICE)
    assert d.fire(Timer.EXPIRY, now=0.0) == []  # never armed
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(BOB, "t2", 3), ttl_ms=1500, user=BOB))
    assert d.fire(Timer.EXPIRY, now=1.6) == [CheckExpiry()]


def test_an_expiry_check_watches_again_at_the_ttl_left_or_after_a_heartbeat_when_it_failed() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(BOB, "t2", 3), ttl_ms=1500, user=BOB))
    effects = d.take(d.core.expiry_checked("", outcome(Held(ttl_ms=800)), 2.0))
    assert armed(effects, Timer.EXPIRY) == 2.0 + 0.8 + 0.02
    effects = d.take(d.core.expiry_checked("", None, 3.0))
    assert armed(effects, Timer.EXPIRY) == 3.0 + POLICY.heartbeat_ms / 1000 + 0.02
    expired = LeaseExpired(seq=d.next_seq(), user=BOB, prev=holder(BOB, "t2", 3))
    d.take(d.core.expiry_checked("", outcome(Free(), expired), 4.0))
    assert d.core.state().holder is None


def test_two_lease_changes_are_never_merged_and_each_is_news() -> None:
    d = Driver()
    d.join("c1", ALICE)
    granted = LeaseGranted(seq=d.next_seq(), holder=holder(BOB, "t2", 9), ttl_ms=1500, user=BOB)
    revoked = LeaseRevoked(seq=d.next_seq(), user=BOB, reason="revoked", prev=holder(BOB, "t2", 9))
    effects = d.publish(granted) + d.publish(revoked) + d.flush(0.05)
    updates = sent(effects, "c1", Update)
    assert [(u.change.kind if u.change else None, u.holder is None) for u in updates] == [  # type: ignore[union-attr]
        ("acquired", False), ("revoked", True)
    ]


def test_a_failed_renewal_re_reads_a_good_one_moves_the_deadline() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t1", 7), ttl_ms=1500, user=ALICE))
    effects = d.take(d.core.renewed("", 7, True, sent_at=1.0, now=1.01))
    assert armed(effects, Timer.DEADLINE) == 1.0 + (1500 - POLICY.safety_margin_ms) / 1000
    assert Resync() in d.take(d.core.renewed("", 7, False, sent_at=2.0, now=2.01))


def test_a_lost_subscription_re_reads() -> None:
    d = Driver()
    d.join("c1", ALICE)
    assert d.core.subscription_lost() == [Resync()] and d.core.stale


def test_a_handoff_request_is_told_to_the_holder_and_its_deadline_watched_for_the_requester() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t-c1", 7), ttl_ms=1500, user=ALICE))
    request = RequestRecord(conn="c2", user="bob", name="Bob", message="please", deadline=T0 + 3000)
    effects = d.publish(HandoffRequested(seq=d.next_seq(), user=BOB, request=request, wait_ms=3000, origin="c2"),
                        now=1.0)
    assert sent(effects, "c1", Requested) == [Requested(by=BOB, deadline_ms=3000, message="please")]
    assert armed(effects, Timer.REQUEST) == 1.0 + 3.0 + 0.05
    assert d.fire(Timer.REQUEST, now=4.1) == [RequestDue("c2", True)]
    effects = d.take(d.core.request_checked("", "c2", outcome(Early(left_ms=200)), 4.1))
    assert armed(effects, Timer.REQUEST) == 4.1 + 0.2 + 0.05
    ended = RequestEnded(seq=d.next_seq(), reason="declined", target="c2", origin="c1", by=ALICE, request=None)
    effects = d.publish(ended)
    assert sent(effects, "c2", Declined) == [Declined(reason="declined", by=ALICE)]


def test_an_idle_holder_is_released_after_the_idle_time() -> None:
    d = Driver(policy=dataclasses.replace(POLICY, idle_release_ms=1000))
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t-c1", 7), ttl_ms=1500, user=ALICE))
    effects = d.publish(StatusChanged(seq=d.next_seq(), user=ALICE, add={"c1": info(ALICE, "t-c1", active=False)}),
                        now=2.0)
    assert armed(effects, Timer.IDLE) == 3.0
    assert d.fire(Timer.IDLE, now=3.0) == [IdleDue(7)]


def test_a_re_read_of_a_history_that_went_back_is_pushed_whole() -> None:
    d = Driver()
    d.seq = 19
    d.join("c1", ALICE)
    lost = holder(BOB, "t", T0 * 1000)
    d.publish(LeaseGranted(seq=21, at=T0 + 10, holder=lost, ttl_ms=1500, user=BOB), now=1.0)
    effects = d.publish(TabJoined(seq=18, at=T0 + 5000, user=CAROL), now=6.0)
    assert Resync() in effects and d.core.stale
    d.seq, d.holder = 19, None
    effects = d.take(d.core.reread(outcome(d.snapshot(at=T0 + 5001)), 6.1))
    states = sent(effects, "c1", State)
    assert [s.seq for s in states] == [19] and states[0].holder is None  # type: ignore[union-attr]


def test_a_re_read_tells_a_holder_of_a_named_lock_it_no_longer_has() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t-c1", 5), ttl_ms=1500, user=ALICE, lock="x"))
    d.core.subscription_lost()
    d.locks = {"y": LockRecord(holder=holder(BOB, "t2", 6), ttl_ms=900)}
    effects = d.take(d.core.reread(outcome(d.snapshot()), 1.0))
    assert sent(effects, "c1", Released) == [Released(reason="expired", lock="x")]
    state = sent(effects, "c1", State)[0]
    assert state.locks is not None and list(state.locks) == ["y"]  # type: ignore[union-attr]


def test_with_wait_replicas_a_rejoined_lease_no_tab_here_knows_is_confirmed_before_it_is_told() -> None:
    d = Driver(policy=dataclasses.replace(POLICY, wait_replicas=True))
    d.holder = holder(ALICE, "t-c1", 7)  # granted by another process, maybe not on the replicas yet
    effects = d.join("c1", ALICE, rejoined=True, now=1.0)
    assert Replicate(7) in effects and sent(effects, "c1", Acquired) == []
    assert d.core.renewals(["c1"]) == {}  # not its lease to use yet
    effects = d.take(d.core.replicated("", 7, Replication.CONFIRMED, sent_at=1.0, now=1.1))
    assert [m.fence for m in sent(effects, "c1", Acquired)] == [7]
    # A second tab of the user joins: the lease is confirmed here already, told with its welcome.
    effects = d.join("c2", ALICE, rejoined=True, now=2.0)
    assert Replicate(7) not in effects and [m.fence for m in sent(effects, "c2", Acquired)] == [7]


def test_a_join_is_told_only_the_leases_redis_says_it_rejoined_not_what_a_stale_copy_names() -> None:
    """After a stall this process's copy may still name a holder whose lease ended in Redis: a tab
    of that user joining now is not told it holds it (its join script did not rejoin it)."""
    d = Driver()
    d.join("c1", ALICE)
    d.publish(LeaseGranted(seq=d.next_seq(), holder=holder(ALICE, "t-c1", 7), ttl_ms=1500, user=ALICE))
    d.fire(Timer.DEADLINE, now=2.0)  # not renewed in time: c1 told lost; the copy still names alice
    effects = d.join("c2", ALICE, rejoined=False, now=2.05)
    assert sent(effects, "c2", Acquired) == [] and d.core.renewals(["c2"]) == {}
