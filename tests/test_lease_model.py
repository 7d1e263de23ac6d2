"""Model-based test of the lease scripts on a real redis-server (Hypothesis ``RuleBasedStateMachine``).

Random sequences of acquire, takeover, release (with the current, a stale or a made-up fence),
renew (``tick``), forced expiry (``PEXPIRE`` to 1 ms), TTL shortening, expiry checks and data
loss (``FLUSHALL``) run against :class:`presence.gateway.leases.LeaseScripts`, and every answer is compared
with a reference model of one workspace: the owner (user, tab), its fence, whether the lease is
alive, whether its silent expiry has been announced, and every fence ever granted.

Checked after every step: the lease key holds exactly the model's fence while alive and nothing
otherwise, its TTL never exceeds the lease TTL, and fences only ever grow, even across FLUSHALL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from procs import RedisServer
from script_support import expiry

from presence.core.outcomes import Outcome
from presence.gateway.gateway import Gateway
from presence.gateway.keys import Keys
from presence.gateway.leases import LeaseScripts
from presence.settings import Settings

TTL = 5000  # long enough that nothing expires unless a rule makes it
WS = "doc"
USERS = st.sampled_from(["ann", "bob", "cat"])
TABS = st.sampled_from(["t1", "t2"])


class LeaseModel(RuleBasedStateMachine):
    scope = "user"
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.settings = Settings(
            redis_url=self.redis_url, heartbeat_ms=100, dead_after_ms=300, lease_ttl_ms=TTL, grace_ms=100,
            lease_scope=self.scope, key_prefix=f"m{uuid.uuid4().hex[:10]}", dev=True,  # type: ignore[arg-type]
        ).validate()
        self.store = Gateway(self.settings)
        self.lease = LeaseScripts(self.store, self.settings, Keys(self.settings.key_prefix))
        self.key = self.lease.keys.workspace(WS).lease
        # The model.
        self.owner: tuple[str, str] | None = None  # (user, tab) of the current grant
        self.fence: int | None = None
        self.alive = False  # the lease key exists
        self.unannounced = False  # it expired (or was lost) silently: the next script announces it
        self.granted: list[int] = []  # every fence ever granted, in order
        self.released: set[int] = set()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    @initialize()
    def start(self) -> None:
        self.run(self.store.start())

    # -- helpers ----------------------------------------------------------------------------

    def matches(self, user: str, tab: str) -> bool:
        assert self.owner is not None
        return self.owner[0] == user and (self.scope == "user" or self.owner[1] == tab)

    def expect_expiry_announced(self, out: Outcome) -> list[str]:
        """A silent expiry is announced first, by whichever script looks next; returns the kinds
        of the lease events after it."""
        lease_events = [e for e in out.events if e.lease]
        if self.unannounced and self.owner is not None:
            assert [e.kind for e in lease_events[:1]] == ["expired"], "a silent expiry must be announced first"
            assert lease_events[0].prev is not None and lease_events[0].prev.fence == self.fence
            self.owner, self.fence, self.unannounced = None, None, False
            lease_events = lease_events[1:]
        kinds = [e.kind for e in lease_events]
        assert "expired" not in kinds, kinds
        return kinds

    def new_grant(self, fence: int, user: str, tab: str) -> None:
        assert not self.granted or fence > max(self.granted), (fence, self.granted[-3:])
        self.granted.append(fence)
        self.owner, self.fence, self.alive, self.unannounced = (user, tab), fence, True, False

    def pttl(self) -> int:
        return int(self.run(self.store.client.pttl(self.key)))

    # -- rules ------------------------------------------------------------------------------

    @rule(user=USERS, tab=TABS)
    def acquire(self, user: str, tab: str) -> None:
        out: Outcome = self.run(self.lease.acquire(WS, user, user.title(), tab, f"c-{user}-{tab}"))
        kinds = self.expect_expiry_announced(out)
        if self.alive and self.matches(user, tab):
            assert out.status == "rejoined" and out.reply.fence == self.fence
            assert kinds == []
            assert self.pttl() > TTL - 1000  # the TTL was replaced
        elif self.alive:
            assert out.status == "busy"
            assert out.reply.holder.user == self.owner[0]  # type: ignore[index]
            assert int(out.reply.holder.fence) == self.fence
        else:
            assert out.status == "granted", out
            assert kinds == ["acquired"]
            self.new_grant(out.reply.fence, user, tab)

    @rule(user=USERS, tab=TABS)
    def takeover(self, user: str, tab: str) -> None:
        out: Outcome = self.run(self.lease.takeover(WS, user, user.title(), tab, f"c-{user}-{tab}"))
        kinds = self.expect_expiry_announced(out)
        if self.alive and self.matches(user, tab):
            assert out.status == "rejoined" and out.reply.fence == self.fence
            assert kinds == []
        elif self.alive:
            assert out.status == "taken_over", out
            assert kinds == ["taken_over"]
            ev = [e for e in out.events if e.lease][-1]
            assert ev.prev is not None and ev.prev.fence == self.fence
            assert out.reply.from_.id == self.owner[0]  # type: ignore[index]
            self.new_grant(out.reply.fence, user, tab)
        else:
            assert out.status == "granted", out
            assert kinds == ["acquired"]
            self.new_grant(out.reply.fence, user, tab)

    @rule(which=st.sampled_from(["current", "stale", "bogus", "anyone"]))
    def release(self, which: str) -> None:
        if which == "current":
            fence: int | None = self.fence if self.fence is not None else 1
        elif which == "stale":
            fence = self.granted[0] if self.granted else 7
        elif which == "bogus":
            fence = (max(self.granted) + 1000) if self.granted else 12345
        else:
            fence = None  # an operator's force release
        out: Outcome = self.run(self.lease.release(WS, fence, "released", "c-release"))
        kinds = self.expect_expiry_announced(out)
        if self.alive and (fence is None or fence == self.fence):
            assert out.status == "relinquished", out
            assert kinds == ["released"]
            assert out.reply.fence == self.fence
            self.released.add(self.fence)  # type: ignore[arg-type]
            self.owner, self.fence, self.alive = None, None, False
        else:
            assert out.status == "not_holder", out
            assert kinds == []

    @rule(which=st.sampled_from(["current", "stale", "bogus"]))
    def renew(self, which: str) -> None:
        if which == "current" and self.fence is not None:
            fence = self.fence
        elif which == "stale" and self.granted:
            fence = self.granted[0]
        else:
            fence = (max(self.granted) + 1) if self.granted else 99
        renewed, _ = self.run(self.lease.tick({(WS, ""): fence}, {}))
        expected = self.alive and fence == self.fence
        assert renewed == {(WS, ""): expected}, (renewed, fence, self.fence, self.alive)
        if expected:
            assert TTL - 1000 < self.pttl() <= TTL

    @precondition(lambda self: self.alive)
    @rule(ms=st.integers(min_value=200, max_value=TTL - 1500))
    def shorten_then_renew(self, ms: int) -> None:
        """Renew replaces the TTL, it never adds to what is left."""
        self.run(self.store.client.pexpire(self.key, ms))
        renewed, _ = self.run(self.lease.tick({(WS, ""): self.fence}, {}))  # type: ignore[dict-item]
        assert renewed == {(WS, ""): True}
        assert TTL - 1000 < self.pttl() <= TTL

    @precondition(lambda self: self.alive)
    @rule()
    def expire(self) -> None:
        """The lease runs out (forced: PEXPIRE to 1 ms). Nobody is told until a script looks."""
        self.run(self.store.client.pexpire(self.key, 1))
        deadline = time.monotonic() + 2
        while self.run(self.store.client.exists(self.key)):
            assert time.monotonic() < deadline
            self.run(asyncio.sleep(0.002))
        self.alive, self.unannounced = False, True

    @rule()
    def check_expiry(self) -> None:
        ttl, events = expiry(self.run(self.lease.check_expiry(WS)))
        if self.alive:
            assert ttl is not None and 0 < ttl <= TTL
            assert events == []
        else:
            assert ttl is None
            kinds = [e.kind for e in events if e.lease]
            if self.unannounced and self.owner is not None:
                assert kinds == ["expired"] and events[0].prev is not None and events[0].prev.fence == self.fence
                self.owner, self.fence, self.unannounced = None, None, False
            else:
                assert kinds == []

    @rule()
    def lose_all_data(self) -> None:
        """Redis restarts empty. Nothing is announced (the holder record is gone too); fences
        granted afterwards must still be above every fence granted before."""
        self.run(self.store.client.flushall())
        self.owner, self.fence, self.alive, self.unannounced = None, None, False, False

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def lease_key_matches_model(self) -> None:
        value = self.run(self.store.client.get(self.key))
        if self.alive:
            assert value == str(self.fence), (value, self.fence)
            assert 0 < self.pttl() <= TTL
        else:
            assert value is None, value

    @invariant()
    def fences_only_grow(self) -> None:
        assert self.granted == sorted(self.granted) and len(set(self.granted)) == len(self.granted)


@pytest.mark.parametrize("scope", ["user", "tab"])
def test_lease_scripts_match_the_model(own_redis: RedisServer, scope: str) -> None:
    """On a redis-server of its own: the data-loss rule flushes everything."""
    machine = type(f"LeaseModel_{scope}", (LeaseModel,), {"scope": scope, "redis_url": own_redis.url})
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=50, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
