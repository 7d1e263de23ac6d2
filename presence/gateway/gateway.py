"""Gateway: the server's one way to Redis (real, Cluster or the embedded fakeredis).

Every command, script call, pipeline and stream read of the server goes through :class:`Gateway`
(pub/sub too: :mod:`presence.gateway.pubsub` is handed its client), and every failure comes out
as :class:`~presence.errors.StoreUnavailable`: Redis unreachable, too slow, refusing writes
(maxmemory, a replica) or answering with an error. Callers map it once: a tab's request answers
``unavailable``, a join closes 1013, every HTTP surface answers 503.

Scripts run by SHA and are reloaded when Redis forgot them (a restart, ``SCRIPT FLUSH``, a new
primary after a failover); many script calls can be batched into one round trip (one per node on
Cluster). With Redis Sentinel the client follows the primary by itself
(:mod:`presence.gateway.sentinel`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, ExponentialWithJitterBackoff
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import StoreUnavailable
from ..settings import Settings, SettingsError
from ..settings_fields import without_password
from ..telemetry import NO_TELEMETRY, Telemetry
from .scripts import Args, Call, Script, load_scripts
from .sentinel import SentinelClient

log = logging.getLogger("presence.gateway")

T = TypeVar("T")
Entry = tuple[str, dict[str, str]]  # a stream entry: id, fields

POOL_SIZE = 128  # Redis connections per process (per node on Cluster, times four)

_TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, ConnectionError, TimeoutError,
)
# Redis Cluster's ways of saying "not now": a failover or a slot move in progress, no reachable node
# (SlotNotCoveredError is a RedisClusterException). And redis-py's cluster client closes every
# pooled connection when one node fails, under the feet of commands in flight to other nodes, which
# then fail with AttributeError or RuntimeError ("transport closed") instead of a ConnectionError.
_CLUSTER_TRANSIENT = (ClusterDownError, TryAgainError, RedisClusterException, AttributeError, RuntimeError)


class Gateway:
    """Owns the Redis client.

    Lifecycle: construct, ``await start()`` (loads the scripts; raises ``StoreUnavailable`` when
    Redis is unreachable, but the gateway stays usable and reconnects on the next call), use,
    ``await close()`` (idempotent). ``scripts_loaded`` is true once every script is in Redis'
    cache (set false again when loading fails).
    """

    def __init__(self, settings: Settings, client: Any | None = None, telemetry: Telemetry = NO_TELEMETRY) -> None:
        self.scripts = load_scripts()
        self.cluster = settings.redis_cluster
        self._cluster_url = settings.redis_url if settings.redis_cluster else None
        self._timeout_s = settings.redis_timeout_ms / 1000
        self.publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        self.scripts_loaded = False
        self._sentinel: SentinelClient | None = None
        self.client: Any = client if client is not None else self._connect(settings)
        self._closed = False
        self._telemetry = telemetry
        self._transient: tuple[type[BaseException], ...] = (
            _TRANSIENT + _CLUSTER_TRANSIENT if self.cluster else _TRANSIENT
        )
        self._failures: tuple[type[BaseException], ...] = (*self._transient, RedisError)

    def _connect(self, settings: Settings) -> Any:
        if settings.embedded:
            import fakeredis

            return fakeredis.FakeAsyncRedis(decode_responses=True)
        timeout = settings.redis_timeout_ms / 1000
        # Few, fast retries: a lease deadline is measured in seconds, and every script is safe to
        # retry (a retried acquire or takeover answers 'rejoined', a retried release 'not_holder').
        options: dict[str, Any] = dict(
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=max(1, settings.heartbeat_ms // 1000),
        )
        if settings.redis_cluster:
            # The cluster client re-reads the slot map between attempts (how it follows a failover);
            # beyond two, the heartbeat's next tick is the better retry.
            options["retry"] = AsyncRetry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), 2)
            # redis-py refuses a command once a node's pool is full (no waiting on Cluster): room for
            # a reconnect storm's joins, spread over the primaries.
            options["max_connections"] = 4 * POOL_SIZE
            assert settings.redis_url is not None
            return RedisCluster.from_url(settings.redis_url, **options)
        options["retry"] = AsyncRetry(ExponentialBackoff(cap=0.2, base=0.02), 1)
        if settings.redis_sentinels:
            self._sentinel = SentinelClient(settings, options, POOL_SIZE, timeout)
            self._sentinel.pool.on_new_primary = self._new_primary
            return self._sentinel.client
        assert settings.redis_url is not None
        # A burst of requests (a reconnect storm: thousands of joins at once) waits for a free
        # connection instead of failing with "Too many connections", redis-py's default.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=POOL_SIZE, timeout=timeout, **options
        )
        return aioredis.Redis.from_pool(pool)

    def _new_primary(self, address: tuple[str, int]) -> None:
        """Sentinel promoted another primary: its script cache may lack our scripts. The heartbeat
        loads them (``scripts_loaded`` false), and a script call that comes first reloads them."""
        self.scripts_loaded = False

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        if isinstance(exc, self._transient):
            return StoreUnavailable(f"Redis unreachable: {exc}")
        return StoreUnavailable(f"Redis refused: {exc}")  # maxmemory, a read-only replica, a bad reply

    async def _guarded(self, op: str, call: Awaitable[T]) -> T:
        """Await one Redis call, timed as ``op``, with every failure as ``StoreUnavailable``."""
        started = time.perf_counter()
        try:
            return await call
        except self._failures as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._telemetry.redis_latency(op, time.perf_counter() - started)

    async def start(self) -> None:
        """Load the scripts. Raises ``StoreUnavailable`` when Redis does not answer, and
        ``SettingsError`` when ``PRESENCE_REDIS_CLUSTER=true`` names a node not in cluster mode
        (a setting to fix, not an outage to wait out)."""
        try:
            await self.load_scripts()
        except StoreUnavailable:
            if self._cluster_url is not None and await self._not_a_cluster(self._cluster_url):
                raise SettingsError([
                    f"PRESENCE_REDIS_CLUSTER=true, but the Redis at {without_password(self._cluster_url)!r} is not "
                    "in cluster mode: point PRESENCE_REDIS_URL at a node of the cluster, or unset "
                    "PRESENCE_REDIS_CLUSTER"
                ]) from None
            raise

    async def _not_a_cluster(self, url: str) -> bool:
        """Whether the node at ``url`` answers, with cluster mode off (asked by a plain client:
        the cluster client only says it cannot find the cluster)."""
        plain = aioredis.Redis.from_url(url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s)
        try:
            info = await plain.info("cluster")
        except (RedisError, OSError):
            return False
        finally:
            await plain.aclose()
        return str(info.get("cluster_enabled")) == "0"

    async def load_scripts(self) -> None:
        try:
            for script in self.scripts.values():
                sha = await self.client.script_load(script.source)
                if sha != script.sha:  # pragma: no cover - would mean a hashing mismatch
                    raise RuntimeError(f"script {script.name}: Redis returned sha {sha}, expected {script.sha}")
        except self._failures as exc:
            self.scripts_loaded = False
            raise self._unavailable(exc) from exc
        self.scripts_loaded = True

    async def call(self, script: Script, keys: Sequence[str], args: Args) -> Any:
        """Run one script; reload the scripts once if Redis lost them."""
        return await self._guarded(script.name, self._evalsha(script, keys, args))

    async def _evalsha(self, script: Script, keys: Sequence[str], args: Args) -> Any:
        try:
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load_scripts()
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    async def call_replicated(
        self, script: Script, keys: Sequence[str], args: Args, replicas: int, timeout_ms: int
    ) -> tuple[Any, int]:
        """Run one script, then ``WAIT replicas timeout_ms``: the script's reply and how many
        replicas acknowledged its writes (at most ``replicas``; fewer when the timeout passed).

        WAIT counts the writes of its own connection, so both go in one non-transactional pipeline:
        one connection, one round trip, WAIT right after the script. A script that wrote nothing
        new returns at once. On Cluster both go to the primary that owns the keys' slot; when the
        slot moved meanwhile (a failover: the script was redirected, and the WAIT counted another
        connection's writes) the count is 0, never a confirmation nobody made."""
        return await self._guarded(script.name, self._replicated(script, keys, args, replicas, timeout_ms))

    async def _replicated(
        self, script: Script, keys: Sequence[str], args: Args, replicas: int, timeout_ms: int
    ) -> tuple[Any, int]:
        reply, acked = await self._script_then_wait(script, keys, args, replicas, timeout_ms)
        if isinstance(reply, NoScriptError):
            await self.load_scripts()
            reply, acked = await self._script_then_wait(script, keys, args, replicas, timeout_ms)
        for r in (reply, acked):
            if isinstance(r, BaseException):
                raise r
        return reply, int(acked)

    async def _script_then_wait(
        self, script: Script, keys: Sequence[str], args: Args, replicas: int, timeout_ms: int
    ) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        if not self.cluster:
            pipe.execute_command("WAIT", replicas, timeout_ms)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            return results
        # The cluster pipeline sends each node's commands on one connection, in order.
        node = self.client.get_node_from_key(keys[0])
        pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
        reply, acked = await pipe.execute(raise_on_error=False)
        if self.client.get_node_from_key(keys[0]).name != node.name:
            acked = 0
        return [reply, acked]

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Run many script calls in one pipeline: one round trip (per cluster node).

        Each result is the script's reply or the ``RedisError`` it raised.
        """
        if not calls:
            return []
        return await self._guarded("pipeline", self._batch(calls))

    async def _batch(self, calls: Sequence[Call]) -> list[Any]:
        results = await self._pipeline(calls)
        if any(isinstance(r, NoScriptError) for r in results):
            await self.load_scripts()
            results = await self._pipeline(calls)
        return results

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for c in calls:
            # Not pipe.evalsha(): redis-py's cluster pipeline blocks it, as it cannot know that every
            # call touches one slot; ours do (the {workspace} hash tag), and this routes each by its keys.
            pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for r in results:
            if isinstance(r, RedisError) and isinstance(r, self._transient):
                raise r
        return results

    async def publish(self, channel: str, message: str | bytes) -> None:
        """Classic PUBLISH (on Cluster it reaches every node's subscribers)."""
        await self._guarded("publish", self.client.publish(channel, message))

    async def append(self, writes: Sequence[tuple[str, dict[str, str]]], max_len: int, approximate: bool) -> None:
        """XADD each ``(stream, entry)`` in one pipeline, in order, trimming each stream to about ``max_len``."""
        pipe = self.client.pipeline(transaction=False)
        for key, e in writes:
            pipe.xadd(key, e, maxlen=max_len, approximate=approximate)
        await self._guarded("audit", pipe.execute())

    async def newest(self, key: str, before: str | None, count: int) -> list[Entry]:
        """Up to ``count`` stream entries older than id ``before`` (None: the newest), newest first."""
        top = f"({before}" if before else "+"
        rows: list[Entry] = await self._guarded("audit", self.client.xrevrange(key, top, "-", count=count))
        return rows

    async def after(self, key: str, last: str, count: int) -> list[Entry]:
        """Up to ``count`` stream entries newer than id ``last``, oldest first."""
        rows: list[Entry] = await self._guarded("audit", self.client.xrange(key, f"({last}", "+", count=count))
        return rows

    async def ping(self, budget_s: float) -> bool:
        """Whether Redis answers ``PING`` within ``budget_s`` seconds. Bounded on purpose: the
        client's own timeouts, retries and a full connection pool can add up to seconds while Redis
        is black-holed, and a readiness probe that hangs gets a process restarted that only had to
        leave the rotation."""
        try:
            async with asyncio.timeout(budget_s):
                await self._guarded("ping", self.client.ping())
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    async def redis_time_ms(self) -> int:
        sec, usec = await self._guarded("time", self.client.time())
        return int(sec) * 1000 + int(usec) // 1000

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await (self._sentinel or self.client).aclose()
        except Exception:  # closing a broken connection must not mask the shutdown
            log.debug("error while closing the Redis client", exc_info=True)
