"""A tab's requests through the core's front door: the script's outcome in, ``(reply, effects)`` out."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from core_driver import ALICE, BOB, POLICY, Driver, armed, holder, outcome, sent

from presence.core.cadence import LEAD_S
from presence.core.effects import Timer, WriteStatus
from presence.core.events import LeaseGranted, LeaseReleased, LeaseTakenOver, RequestEnded, WaiterQueued
from presence.core.outcomes import (
    Asked,
    Busy,
    Cooldown,
    Ended,
    Granted,
    NotHolder,
    Pending,
    Rejoined,
    Relinquished,
    TakenOver,
    Waiting,
)
from presence.core.records import RequestRecord
from presence.core.workspace import CancelRequest, GiveUp, Operation
from presence.errors import Forbidden, TakeoverForbidden, TooManyLocks
from presence.errors import NotHolder as NotHolderError
from presence.wire.messages import Acquired, Declined, Error, Person, Queued, Released, State, Update
from presence.wire.messages import Asked as AskedMessage
from presence.wire.messages import Busy as BusyMessage


def granted(d: Driver, conn: str, fence: int = 7, lock: str = "", user: Person = ALICE) -> LeaseGranted:
    h = holder(user, f"t-{conn}", fence)
    if not lock:
        d.holder = h
    return LeaseGranted(seq=d.next_seq(), holder=h, ttl_ms=1500, user=user, origin=conn, lock=lock)


def test_an_acquire_that_is_granted_answers_acquired_with_the_time_left_and_arms_the_deadline() -> None:
    d = Driver()
    d.join("c1", ALICE)
    reply, effects = d.core.acquired("c1", "", outcome(Granted(fence=7, ttl_ms=1500), granted(d, "c1"), sent_at=1.0),
                                     1.1, "r1")
    assert isinstance(reply, Acquired) and reply.fence == 7 and reply.id == "r1" and not reply.rejoined
    assert reply.ttl_ms == 1500 - POLICY.safety_margin_ms - 100  # counted from when it was sent
    assert armed(effects, Timer.DEADLINE) == 1.0 + (1500 - POLICY.safety_margin_ms) / 1000
    assert armed(effects, Timer.EXPIRY) is not None
    assert sent(effects, "c1", Acquired) == []  # the reply tells it, not a second message
    assert d.core.renewals(["c1"]) == {"": 7}


def test_an_acquire_of_a_lease_the_user_holds_answers_rejoined() -> None:
    d = Driver()
    d.join("c1", ALICE)
    reply, _ = d.core.acquired("c1", "", outcome(Rejoined(fence=7, ttl_ms=1500)), 0.0, 1)
    assert isinstance(reply, Acquired) and reply.rejoined and reply.fence == 7


def test_an_acquire_of_a_held_lease_answers_busy_with_the_holder_without_its_fence() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    d.publish(granted(d, "c2", user=BOB))
    reply, _ = d.core.acquired("c1", "", outcome(Busy(holder=holder(BOB, "t-c2", 7))), 0.0, None)
    assert isinstance(reply, BusyMessage) and reply.holder.user == BOB and reply.holder.fence is None
    assert reply.holder.tabs == 1


def test_a_busy_lease_whose_holder_record_is_gone_is_held_by_someone_unknown() -> None:
    d = Driver()
    d.join("c1", ALICE)
    reply, _ = d.core.acquired("c1", "", outcome(Busy(holder=None)), 0.0, None)
    assert isinstance(reply, BusyMessage) and reply.holder.user.id == ""


def test_an_acquire_that_waits_answers_queued_and_a_move_up_is_told() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    queued = WaiterQueued(seq=d.next_seq(), user=ALICE, queue={"c9": 1, "c1": 2}, origin="c1")
    reply, effects = d.core.acquired("c1", "", outcome(Waiting(holder=holder(BOB, "t", 3), position=2), queued),
                                     0.0, "q")
    assert reply == Queued(position=2, id="q")
    assert sent(effects, "c1", Queued) == []  # its own request's reply says it
    from presence.core.events import WaiterDequeued

    effects = d.publish(WaiterDequeued(seq=d.next_seq(), queue={"c1": 1}))
    assert sent(effects, "c1", Queued) == [Queued(position=1)]


def test_a_takeover_answers_acquired_and_the_old_holder_is_told_who_took_it() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    d.publish(granted(d, "c1"))
    h = holder(BOB, "t-c2", 8)
    taken = LeaseTakenOver(seq=d.next_seq(), holder=h, ttl_ms=1500, user=BOB, from_=ALICE, reason="taken_over",
                           origin="c2", prev=holder(ALICE, "t-c1", 7))
    reply, effects = d.core.took_over("c2", "", outcome(TakenOver(fence=8, ttl_ms=1500, from_=ALICE), taken), 0.0, 5)
    assert isinstance(reply, Acquired) and reply.fence == 8
    assert sent(effects, "c1", Released) == [Released(reason="taken_over", by=BOB)]


def test_a_takeover_in_the_cooldown_is_refused_with_its_wait() -> None:
    d = Driver()
    d.join("c1", ALICE)
    reply, _ = d.core.took_over("c1", "", outcome(Cooldown(retry_ms=900, holder=holder(BOB, "t", 3))), 0.0, 2)
    assert isinstance(reply, Error) and reply.code == "takeover_cooldown" and "900 ms" in reply.message
    assert reply.id == 2


def test_admit_refuses_takeover_without_the_claim_and_everything_for_a_read_only_token() -> None:
    d = Driver()
    d.join("c1", ALICE, may_take_over=False)
    d.join("c2", BOB, read_only=True)
    d.core.admit("c1", Operation.ACQUIRE, "")
    with pytest.raises(TakeoverForbidden):
        d.core.admit("c1", Operation.TAKEOVER, "")
    for op in (Operation.ACQUIRE, Operation.TAKEOVER, Operation.REQUEST):
        with pytest.raises(Forbidden):
            d.core.admit("c2", op, "")


def test_admit_refuses_a_named_lock_past_the_limit_per_tab_but_not_one_it_holds() -> None:
    d = Driver(policy=dataclasses.replace(POLICY, max_locks_per_tab=2))
    d.join("c1", ALICE)
    for i, lock in enumerate(("a", "b")):
        d.core.acquired("c1", lock, outcome(Granted(fence=10 + i, ttl_ms=1500), granted(d, "c1", 10 + i, lock)),
                        0.0, None)
    with pytest.raises(TooManyLocks):
        d.core.admit("c1", Operation.ACQUIRE, "c")
    d.core.admit("c1", Operation.ACQUIRE, "a")  # a rejoin of one it holds
    d.core.admit("c1", Operation.ACQUIRE, "")  # the workspace's own lease is not a named lock


def test_release_gives_up_the_lease_or_the_place_in_line_or_cancels_the_request() -> None:
    d = Driver()
    d.join("c1", ALICE)
    with pytest.raises(NotHolderError):
        d.core.release_target("c1", "")
    d.core.acquired("c1", "", outcome(Granted(fence=7, ttl_ms=1500), granted(d, "c1")), 0.0, None)
    assert d.core.release_target("c1", "") == GiveUp(7)
    d.join("c2", BOB)
    queued = WaiterQueued(seq=d.next_seq(), user=BOB, queue={"c2": 1}, origin="c2")
    d.core.acquired("c2", "", outcome(Waiting(holder=holder(ALICE, "t", 7), position=1), queued), 0.0, None)
    assert d.core.release_target("c2", "") == GiveUp(0)  # a waiter leaves the line with fence 0
    d.join("c3", BOB)
    from presence.core.events import HandoffRequested

    request = RequestRecord(conn="c3", user="bob", name="Bob", message="", deadline=T0_DEADLINE)
    d.publish(HandoffRequested(seq=d.next_seq(), user=BOB, request=request, wait_ms=3000))
    assert d.core.release_target("c3", "") == CancelRequest()


T0_DEADLINE = 1_800_000_030_000


def test_released_answers_released_and_a_lost_race_answers_not_holder() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.core.acquired("c1", "", outcome(Granted(fence=7, ttl_ms=1500), granted(d, "c1")), 0.0, None)
    target = d.core.release_target("c1", "")
    d.holder = None
    event = LeaseReleased(seq=d.next_seq(), user=ALICE, reason="released", origin="c1", prev=holder(ALICE, "t-c1", 7))
    reply, effects = d.core.released("c1", "", target, outcome(Relinquished(fence=7), event), 0.0, "x")
    assert reply == Released(reason="released", id="x")
    assert sent(effects, "c1", Released) == []  # the reply says it
    assert d.core.renewals(["c1"]) == {}
    d.core.acquired("c1", "", outcome(Granted(fence=9, ttl_ms=1500), granted(d, "c1", 9)), 0.0, None)
    target = d.core.release_target("c1", "")
    reply, _ = d.core.released("c1", "", target, outcome(NotHolder(holder=None)), 0.0, "y")
    assert isinstance(reply, Error) and reply.code == "not_holder"


def test_a_cancelled_request_answers_declined_cancelled() -> None:
    d = Driver()
    d.join("c1", ALICE)
    ended = RequestEnded(seq=d.next_seq(), reason="cancelled", target="c1", origin="c1", request=None)
    reply, effects = d.core.released("c1", "", CancelRequest(), outcome(Ended(reason="cancelled"), ended), 0.0, 3)
    assert reply == Declined(reason="cancelled", id=3)
    assert sent(effects, "c1", Declined) == []  # its own cancel: answered by the reply only


def test_a_request_answers_asked_pending_or_acquired() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    d.publish(granted(d, "c2", user=BOB))
    reply, _ = d.core.asked("c1", "", outcome(Asked(deadline_ms=3000, holder=holder(BOB, "t-c2", 7))), 0.0, 1)
    assert isinstance(reply, AskedMessage) and reply.holder.user == BOB and reply.deadline_ms == 3000
    reply, _ = d.core.asked("c1", "", outcome(Pending(holder=holder(BOB, "t-c2", 7))), 0.0, 2)
    assert isinstance(reply, Error) and reply.code == "request_pending"
    reply, _ = d.core.asked("c1", "", outcome(Granted(fence=9, ttl_ms=1500)), 0.0, 3)
    assert isinstance(reply, Acquired) and reply.fence == 9


def test_decline_is_for_the_holder_and_answers_declined_or_no_request() -> None:
    d = Driver()
    d.join("c1", ALICE)
    with pytest.raises(NotHolderError):
        d.core.decline_fence("c1", "")
    d.core.acquired("c1", "", outcome(Granted(fence=7, ttl_ms=1500), granted(d, "c1")), 0.0, None)
    assert d.core.decline_fence("c1", "") == 7
    reply, _ = d.core.declined("c1", "", outcome(Ended(reason="declined")), 0.0, 4)
    assert reply == Declined(reason="declined", id=4)
    from presence.core.outcomes import NoRequest

    reply, _ = d.core.declined("c1", "", outcome(NoRequest()), 0.0, 5)
    assert isinstance(reply, Error) and reply.code == "no_request"


def test_a_status_is_written_at_once_then_at_most_once_per_meta_interval_the_latest_winning() -> None:
    d = Driver()
    d.join("c1", ALICE)
    effects = d.core.status("c1", None, {"cursor": 1}, 10.0)
    (write,) = [e for e in effects if isinstance(e, WriteStatus)]
    assert write.info.meta == {"cursor": 1}
    assert armed(effects, Timer.STATUS, "c1") is None  # nothing waits
    # Within the interval: kept, not written. It waits for the next write a meta interval or more
    # later, just before an update instant (10.1: the cadence's, a multiple of the window), so
    # every process has it when it sends that update.
    effects = d.core.status("c1", None, {"cursor": 2}, 10.01)
    assert [e for e in effects if isinstance(e, WriteStatus)] == []
    at = armed(effects, Timer.STATUS, "c1")
    assert at is not None and at >= 10.0 + POLICY.meta_interval_ms / 1000
    assert at == pytest.approx(10.1 - LEAD_S)
    for n in (3, 4):
        assert [e for e in d.core.status("c1", None, {"cursor": n}, 10.02) if isinstance(e, WriteStatus)] == []
    effects = d.fire(Timer.STATUS, "c1", now=at)
    assert [e.info.meta for e in effects if isinstance(e, WriteStatus)] == [{"cursor": 4}]
    # In a stream the writes keep that place: one window apart, each before an instant.
    effects = d.core.status("c1", None, {"cursor": 5}, 10.12)
    assert armed(effects, Timer.STATUS, "c1") == pytest.approx(10.15 - LEAD_S)
    # The timer goes off 4 ms late: the next write still counts from when it was due.
    effects = d.fire(Timer.STATUS, "c1", now=10.15 - LEAD_S + 0.004)
    assert [e.info.meta for e in effects if isinstance(e, WriteStatus)] == [{"cursor": 5}]
    effects = d.core.status("c1", None, {"cursor": 6}, 10.16)
    assert armed(effects, Timer.STATUS, "c1") == pytest.approx(10.2 - LEAD_S)
    # A status after a quiet moment (a meta interval after the last write) is written at once.
    d.fire(Timer.STATUS, "c1", now=10.2 - LEAD_S)
    effects = d.core.status("c1", None, {"cursor": 7}, 10.5)
    assert [e.info.meta for e in effects if isinstance(e, WriteStatus)] == [{"cursor": 7}]


def test_a_status_that_changes_nothing_writes_nothing_and_null_clears_the_meta() -> None:
    d = Driver()
    d.join("c1", ALICE)
    assert d.core.status("c1", True, msgspec.UNSET, 0.0) == []  # active already, meta kept
    d.core.status("c1", None, {"a": 1}, 0.0)
    d.fire(Timer.STATUS, "c1", now=1.0)
    effects = d.core.status("c1", None, None, 2.0)
    (write,) = [e for e in effects if isinstance(e, WriteStatus)]
    assert write.info.meta is None


def test_a_failed_presence_write_is_tried_again_after_a_heartbeat() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.core.status("c1", False, msgspec.UNSET, 0.0)
    d.fire(Timer.STATUS, "c1", now=0.05)
    effects = d.core.write_failed("c1", 1.0)
    assert armed(effects, Timer.STATUS, "c1") == 1.0 + POLICY.heartbeat_ms / 1000
    (write,) = [e for e in d.fire(Timer.STATUS, "c1", now=1.3) if isinstance(e, WriteStatus)]
    assert write.info.active is False


def test_sync_sends_the_whole_state_to_that_tab_only() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    effects = d.core.sync("c1")
    assert [type(m) for m in sent(effects, "c1")] == [State] and sent(effects, "c2") == []


def test_a_named_lock_is_granted_on_its_own_and_shown_in_locks() -> None:
    d = Driver()
    d.join("c1", ALICE)
    d.join("c2", BOB)
    event = granted(d, "c1", 11, "title")
    reply, effects = d.core.acquired("c1", "title", outcome(Granted(fence=11, ttl_ms=1500), event), 0.0, 1)
    assert isinstance(reply, Acquired) and reply.lock == "title" and reply.fence == 11
    assert armed(effects, Timer.DEADLINE, "title") is not None and armed(effects, Timer.DEADLINE) is None
    (update,) = sent(d.flush(), "c2", Update)
    assert update.locks is not msgspec.UNSET and update.locks["title"].user == ALICE  # type: ignore[index]
    assert update.holder is msgspec.UNSET  # the workspace's own lease did not change
    assert d.core.state().locks is not None and "title" in d.core.state().locks  # type: ignore[operator]
    assert d.core.ttls("c1", 0.5)[1] == {"title": 1500 - POLICY.safety_margin_ms - 500}
    assert d.core.renewals(["c1"]) == {"title": 11}
