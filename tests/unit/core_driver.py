"""Drives one workspace core as the engine would, without Redis: events, script outcomes and
timers in; the effects it answers kept, with the messages each tab was sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from presence.core.effects import Arm, Effect, Send, Timer
from presence.core.events import Event
from presence.core.member import Member
from presence.core.outcomes import Entered, Outcome
from presence.core.policy import Policy
from presence.core.records import HolderRecord, LockRecord, Snapshot, TabInfo, encode_info
from presence.core.workspace import Workspace
from presence.wire.messages import Person, ServerMessage

ALICE, BOB, CAROL = Person("alice", "Alice"), Person("bob", "Bob"), Person("carol", "Carol")
POLICY = Policy(lease_ttl_ms=1500, heartbeat_ms=300, safety_margin_ms=150, update_window_ms=50,
                handoff_timeout_ms=3000, meta_interval_ms=50)
T0 = 1_800_000_000_000  # Redis time, ms


def info(user: Person, tab: str, active: bool = True, meta: dict[str, Any] | None = None) -> str:
    return encode_info(TabInfo(user.id, user.name, tab, active, meta, "s1"))


def holder(user: Person, tab: str, fence: int, since: int = 1) -> HolderRecord:
    return HolderRecord(fence=fence, user=user.id, name=user.name, tab=tab, since=since)


def outcome(reply: msgspec.Struct, *events: Event, sent_at: float = 0.0) -> Outcome[Any]:
    return Outcome(reply, list(events), sent_at)


@dataclass
class Driver:
    """One workspace's core; ``effects`` keeps every effect it answered, in order."""

    policy: Policy = POLICY
    workspace: str = "doc"
    core: Workspace = field(init=False)
    effects: list[Effect] = field(default_factory=list)
    tabs: dict[str, str] = field(default_factory=dict)  # conn -> presence entry (what Redis has)
    seq: int = 0
    holder: HolderRecord | None = None
    locks: dict[str, LockRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.core = Workspace(self.workspace, self.policy, "s1")

    def take(self, effects: Sequence[Effect]) -> list[Effect]:
        self.effects += effects
        return list(effects)

    def snapshot(self, at: int = T0) -> Snapshot:
        return Snapshot(seq=self.seq, holder=self.holder, ttl_ms=1500 if self.holder else -2, at=at,
                        tabs=dict(self.tabs) or None, locks=dict(self.locks) or None)

    def join(self, conn: str, user: Person, tab: str = "", now: float = 0.0, rejoined: bool = False,
             read_only: bool = False, may_take_over: bool = True) -> list[Effect]:
        """A tab enters and its join script answers (with the whole workspace, the first time)."""
        tab = tab or f"t-{conn}"
        self.core.enter(Member(conn, user, tab, may_take_over=may_take_over, read_only=read_only))
        self.tabs[conn] = info(user, tab)
        self.seq += 1
        event = self.joined_event(conn, user, tab)
        snapshot = self.snapshot() if self.core.unread else None
        fence = self.holder.fence if rejoined and self.holder is not None else None
        reply = Entered(rejoined=rejoined, seq=self.seq, snapshot=snapshot, fence=fence)
        return self.take(self.core.joined(conn, outcome(reply, event), now))

    def joined_event(self, conn: str, user: Person, tab: str) -> Event:
        from presence.core.events import TabJoined

        return TabJoined(seq=self.seq, at=T0 + self.seq, user=user, add={conn: self.tabs[conn]}, origin=conn)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def publish(self, event: Event, now: float = 0.0) -> list[Effect]:
        return self.take(self.core.published(event, now))

    def fire(self, timer: Timer, key: str = "", now: float = 0.0) -> list[Effect]:
        return self.take(self.core.fire(timer, key, now))

    def flush(self, now: float = 1.0) -> list[Effect]:
        return self.fire(Timer.FLUSH, "", now)


def sent(effects: Sequence[Effect], conn: str, kind: type[Any] | None = None) -> list[ServerMessage]:
    """The messages ``conn`` was sent among ``effects`` (of type ``kind``)."""
    out = [e.message for e in effects if isinstance(e, Send) and conn in e.to]
    return [m for m in out if kind is None or isinstance(m, kind)]


def armed(effects: Sequence[Effect], timer: Timer, key: str = "") -> float | None:
    """When the last Arm of ``timer`` among ``effects`` fires, if one was armed."""
    at = None
    for e in effects:
        if isinstance(e, Arm) and e.timer is timer and e.key == key:
            at = e.at
    return at
