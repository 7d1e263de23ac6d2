"""Subscriptions and its transports against real redis-servers (plain and Cluster), in process.
The reconnect helpers they share with the audit writer: tests/unit/test_backoff.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from procs import LocalRedisCluster, RedisServer
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from presence.errors import StoreUnavailable
from presence.gateway.pubsub import Subscriptions

WAIT = 10.0  # generous: a shared 2-core machine


class Recorder:
    """The two callbacks, as queues to await."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.resubscribed: asyncio.Queue[str] = asyncio.Queue()

    def on_message(self, channel: str, data: str) -> None:
        self.messages.put_nowait((channel, data))

    def on_resubscribed(self, channel: str) -> None:
        self.resubscribed.put_nowait(channel)

    async def message(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.messages.get(), WAIT)

    async def resubscriptions(self, n: int) -> set[str]:
        return {await asyncio.wait_for(self.resubscribed.get(), WAIT) for _ in range(n)}


def channel(stem: str = "ws") -> str:
    return f"t{uuid.uuid4().hex[:10]}:{{{stem}}}:ch"


def other_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t not in before and not t.done()}


# -- plain Redis ----------------------------------------------------------------------------


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield c
    await c.aclose()


@pytest.fixture
async def subs(client: aioredis.Redis) -> AsyncIterator[tuple[Subscriptions, Recorder]]:
    rec = Recorder()
    s = Subscriptions(client, False, channel("control"), rec.on_message, rec.on_resubscribed)
    s.start()
    yield s, rec
    await s.stop()


async def test_subscribe_returns_once_confirmed_and_messages_arrive(
    subs: tuple[Subscriptions, Recorder], client: aioredis.Redis
) -> None:
    s, rec = subs
    ch = channel()
    await s.subscribe(ch, timeout=WAIT)
    assert s.connected
    assert ch in await client.pubsub_channels(ch)
    await client.publish(ch, "hello")
    assert await rec.message() == (ch, "hello")
    await client.publish(s.control_channel, "to everyone")
    assert await rec.message() == (s.control_channel, "to everyone")
    await s.subscribe(ch, timeout=WAIT)  # subscribed already: at once
    assert rec.resubscribed.empty()


async def test_killed_connection_is_followed_by_resubscription_and_its_report(
    subs: tuple[Subscriptions, Recorder], client: aioredis.Redis
) -> None:
    s, rec = subs
    chs = [channel(f"ws{i}") for i in range(3)]
    for ch in chs:
        await s.subscribe(ch, timeout=WAIT)
    assert await client.client_kill_filter(_type="pubsub") >= 1
    assert await rec.resubscriptions(3) == set(chs)
    assert s.connected
    await client.publish(chs[0], "after")
    assert await rec.message() == (chs[0], "after")


async def test_unsubscribed_channel_subscribed_again_is_not_a_resubscription(
    subs: tuple[Subscriptions, Recorder], client: aioredis.Redis
) -> None:
    s, rec = subs
    ch, keep = channel("a"), channel("b")
    await s.subscribe(keep, timeout=WAIT)
    await s.subscribe(ch, timeout=WAIT)
    s.unsubscribe(ch)
    # The UNSUBSCRIBE has gone out once a later SUBSCRIBE on the same connection is confirmed.
    await s.subscribe(channel("c"), timeout=WAIT)
    assert ch not in await client.pubsub_channels(ch)
    await s.subscribe(ch, timeout=WAIT)
    assert rec.resubscribed.empty()  # a fresh subscription: nothing was missed
    assert ch in await client.pubsub_channels(ch)


async def test_stop_is_idempotent_fails_waiters_and_leaves_no_task(client: aioredis.Redis) -> None:
    before = set(asyncio.all_tasks())
    rec = Recorder()
    s = Subscriptions(client, False, channel("control"), rec.on_message, rec.on_resubscribed)
    await s.stop()  # before start: nothing to do
    s = Subscriptions(client, False, channel("control"), rec.on_message, rec.on_resubscribed)
    s.start()
    await s.subscribe(channel(), timeout=WAIT)
    assert other_tasks(before)
    await s.stop()
    await s.stop()
    assert not s.connected
    assert not other_tasks(before)
    with pytest.raises(StoreUnavailable):
        await s.subscribe(channel(), timeout=WAIT)


async def test_stop_fails_a_pending_subscribe_at_once(own_redis: RedisServer) -> None:
    own_redis.stop()
    c = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    rec = Recorder()
    s = Subscriptions(c, False, channel("control"), rec.on_message, rec.on_resubscribed)
    s.start()
    pending = asyncio.create_task(s.subscribe(channel(), timeout=60))
    await asyncio.sleep(0)  # let it register its waiter
    await s.stop()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(pending, WAIT)
    await c.aclose()


async def test_subscribe_times_out_while_redis_is_down_and_recovers_after(own_redis: RedisServer) -> None:
    own_redis.stop()
    c = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    rec = Recorder()
    s = Subscriptions(c, False, channel("control"), rec.on_message, rec.on_resubscribed)
    s.start()
    try:
        ch = channel()
        with pytest.raises(StoreUnavailable):
            await s.subscribe(ch, timeout=0.3)
        assert not s.connected
        await asyncio.to_thread(own_redis.start)
        await s.subscribe(ch, timeout=WAIT)  # the backoff is capped at 2 s
        assert s.connected
        # A restart loses every subscription: they come back, and are reported.
        await asyncio.to_thread(own_redis.restart)
        assert await rec.resubscriptions(1) == {ch}
    finally:
        await s.stop()
        await c.aclose()


async def test_a_failing_on_message_does_not_cut_the_connection(client: aioredis.Redis) -> None:
    rec = Recorder()
    calls = 0

    def on_message(channel: str, data: str) -> None:
        nonlocal calls
        calls += 1
        if data == "bad":
            raise ValueError("bad message")
        rec.on_message(channel, data)

    s = Subscriptions(client, False, channel("control"), on_message, rec.on_resubscribed)
    s.start()
    try:
        ch = channel()
        await s.subscribe(ch, timeout=WAIT)
        await client.publish(ch, "bad")
        await client.publish(ch, "good")
        assert await rec.message() == (ch, "good")
        assert calls == 2 and rec.resubscribed.empty()
    finally:
        await s.stop()


# -- Redis Cluster ----------------------------------------------------------------------------


def spread(cluster: LocalRedisCluster, prefix: str) -> list[str]:
    """One channel on each primary, in node order."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(cluster.ports):
        ch = f"{prefix}:{{ws{i}}}:ch"
        found.setdefault(cluster.owner(key_slot(ch.encode())), ch)
        i += 1
    return [found[p] for p in cluster.ports]


@pytest.fixture
def cluster_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def cluster_subs(url: str) -> tuple[RedisCluster, Subscriptions, Recorder]:
    client = RedisCluster.from_url(url, decode_responses=True)
    rec = Recorder()
    s = Subscriptions(client, True, channel("control"), rec.on_message, rec.on_resubscribed)
    s.start()
    return client, s, rec


@pytest.mark.cluster
async def test_cluster_sharded_subscriptions_survive_killed_connections(
    redis_cluster: LocalRedisCluster, cluster_prefix: str
) -> None:
    before = set(asyncio.all_tasks())
    client, s, rec = await cluster_subs(redis_cluster.url)
    try:
        chs = spread(redis_cluster, cluster_prefix)
        for ch in chs:
            await s.subscribe(ch, timeout=WAIT)
        assert s.connected
        for ch in chs:
            await client.spublish(ch, f"to {ch}")
            assert await rec.message() == (ch, f"to {ch}")
        await client.publish(s.control_channel, "to everyone")
        assert await rec.message() == (s.control_channel, "to everyone")
        killed = sum(redis_cluster.node(p).client_kill_filter(_type="pubsub") for p in redis_cluster.ports)
        assert killed >= 4  # the control link and one sharded link per primary
        assert await rec.resubscriptions(len(chs)) == set(chs)
        for ch in chs:
            await client.spublish(ch, "after")
            assert await rec.message() == (ch, "after")
    finally:
        await s.stop()
        await s.stop()
        await client.aclose()
    assert not s.connected
    assert not other_tasks(before)


@pytest.mark.cluster
async def test_cluster_subscription_follows_its_slot_to_another_primary(
    own_redis_cluster: LocalRedisCluster, cluster_prefix: str
) -> None:
    cluster = own_redis_cluster
    client, s, rec = await cluster_subs(cluster.url)
    try:
        ch, stay = spread(cluster, cluster_prefix)[:2]
        await s.subscribe(ch, timeout=WAIT)
        await s.subscribe(stay, timeout=WAIT)
        await asyncio.to_thread(cluster.migrate_slot, key_slot(ch.encode()), cluster.ports[1])
        assert await rec.resubscriptions(1) == {ch}  # confirmed again, on the new owner
        await client.spublish(ch, "moved")  # redis-py follows the MOVED answer
        assert await rec.message() == (ch, "moved")
        assert rec.resubscribed.empty()  # the channel on the other node was not disturbed
    finally:
        await s.stop()
        await client.aclose()
