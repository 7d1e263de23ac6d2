"""Helpers for tests that call the lease scripts directly."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio.client import PubSub

from presence.core.events import Event
from presence.core.outcomes import ExpireReply, Held, Outcome
from presence.core.records import TabInfo
from presence.gateway.gateway import Gateway
from presence.gateway.keys import Keys
from presence.gateway.leases import LeaseScripts
from presence.settings import Settings

TTL = 1500  # the lease TTL of the scripts under test
GRACE = 400


def info(user: str, tab: str = "t") -> TabInfo:
    """A tab's presence entry."""
    return TabInfo(user, user.title(), tab, True, None, "test")


async def lease_scripts(request: pytest.FixtureRequest) -> AsyncIterator[LeaseScripts]:
    """The lease scripts on the store ``request.param`` names: a real redis-server ("redis"), the
    local Redis Cluster ("cluster") or the embedded fakeredis ("fakeredis"); a prefix of their own."""
    settings_kw = dict(
        heartbeat_ms=300, dead_after_ms=900, lease_ttl_ms=TTL, grace_ms=GRACE,
        key_prefix=f"t{uuid.uuid4().hex[:8]}",
    )
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        settings = Settings(redis_url=server.url, dev=True, **settings_kw).validate()  # type: ignore[arg-type]
    elif request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        settings = Settings(redis_url=cluster.url, redis_cluster=True, dev=True,
                            **settings_kw).validate()  # type: ignore[arg-type]
    else:
        settings = Settings(**settings_kw).validate()  # type: ignore[arg-type]
    store = Gateway(settings)
    await store.start()
    yield LeaseScripts(store, settings, Keys(settings.key_prefix))
    await store.close()


def kinds(events: Sequence[Event]) -> list[tuple[str, str]]:
    """Each event's kind and lock, in order."""
    return [(e.kind, e.lock) for e in events]


async def subscribed(lease: LeaseScripts, workspace: str) -> PubSub:
    """A pub/sub connection subscribed to ``workspace``'s channel (plain Redis: PUBLISH)."""
    pubsub = lease.gateway.client.pubsub()
    await pubsub.subscribe(lease.keys.workspace(workspace).channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    return pubsub


async def published(pubsub: PubSub, count: int) -> list[str]:
    """The next ``count`` messages published (raw event JSON); closes ``pubsub``."""
    out: list[str] = []
    while len(out) < count:
        m = await pubsub.get_message(timeout=2)
        assert m is not None, f"only {len(out)} of {count} events were published"
        if m["type"] == "message":
            out.append(m["data"])
    await pubsub.aclose()
    return out


def with_settings(lease: LeaseScripts, **changes: object) -> LeaseScripts:
    """The same scripts on the same store, with other settings."""
    return LeaseScripts(lease.gateway, dataclasses.replace(lease.settings, **changes), lease.keys)


def expiry(out: Outcome[ExpireReply]) -> tuple[int | None, list[Event]]:
    """An expiry check as (PTTL while the lease is alive else None, the events it published)."""
    return (out.reply.ttl_ms if isinstance(out.reply, Held) else None), out.events
