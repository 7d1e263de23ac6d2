"""Store: the Redis connection (real, cluster or embedded fakeredis) and its Lua scripts.

The rest of the package talks to Redis only through :class:`Store`, which runs scripts by SHA,
reloads them when Redis forgot them (a restart, ``SCRIPT FLUSH``), batches several script calls
into one round trip, and turns connection failures into :class:`StoreUnavailable`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, ExponentialWithJitterBackoff
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .errors import StoreUnavailable
from .settings import Settings

log = logging.getLogger("presence.store")

Args = Sequence[str | int | float]

# The libraries each script runs with, prepended in this order (Redis scripts cannot import): _clock.lua
# to every script that reads the time, _lib.lua (which needs _clock.lua) to the workspace scripts.
_WORKSPACE_LIBS = ("_clock", "_lib")
_LIBS: dict[str, tuple[str, ...]] = {
    "acquire": _WORKSPACE_LIBS,
    "takeover": _WORKSPACE_LIBS,
    "release": _WORKSPACE_LIBS,
    "join": _WORKSPACE_LIBS,
    "leave": _WORKSPACE_LIBS,
    "status": _WORKSPACE_LIBS,
    "snapshot": _WORKSPACE_LIBS,
    "expire": _WORKSPACE_LIBS,
    "touch": _WORKSPACE_LIBS,
    "request": _WORKSPACE_LIBS,
    "handoff": _WORKSPACE_LIBS,
    "renew": (),
    "announce": ("_clock",),  # announce and census: registry.py, global keys only
    "census": ("_clock",),
}


def _read(name: str) -> str:
    return resources.files("presence.gateway.lua").joinpath(f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str, libs: Sequence[str] = ()) -> Script:
        source = "\n".join([*(_read(lib) for lib in libs), _read(name)])
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


def load_scripts() -> dict[str, Script]:
    return {name: Script.load(name, libs) for name, libs in _LIBS.items()}


@dataclass(frozen=True, slots=True)
class Call:
    """One script invocation, for :meth:`Store.batch`."""

    script: Script
    keys: Sequence[str]
    args: Args


POOL_SIZE = 128  # Redis connections per process (per node on Cluster, times four)

_TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, ConnectionError, TimeoutError,
)
# Redis Cluster's ways of saying "not now": a failover or a slot move in progress, no reachable node
# (SlotNotCoveredError is a RedisClusterException). And redis-py's cluster client closes every
# pooled connection when one node fails, under the feet of commands in flight to other nodes, which
# then fail with AttributeError or RuntimeError ("transport closed") instead of a ConnectionError.
_CLUSTER_TRANSIENT = (ClusterDownError, TryAgainError, RedisClusterException, AttributeError, RuntimeError)


class Store:
    """Owns the Redis client.

    Lifecycle: construct, ``await start()`` (connects and loads scripts; raises
    ``StoreUnavailable`` when Redis is unreachable, but the store stays usable and reconnects on
    the next call), use, ``await close()`` (idempotent).
    """

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.scripts = load_scripts()
        self.cluster = settings.redis_cluster
        self.publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        self.scripts_loaded = False
        self.client: Any = client if client is not None else self._connect(settings)
        self._closed = False
        self._transient: tuple[type[BaseException], ...] = (
            _TRANSIENT + _CLUSTER_TRANSIENT if self.cluster else _TRANSIENT
        )
        self.on_latency: Callable[[str, float], None] = lambda op, seconds: None  # set by hub.metrics

    @staticmethod
    def _connect(settings: Settings) -> Any:
        if settings.redis_url is None:
            import fakeredis

            return fakeredis.FakeAsyncRedis(decode_responses=True)
        timeout = max(0.5, min(5.0, settings.heartbeat_ms / 1000))
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
            return RedisCluster.from_url(settings.redis_url, **options)
        options["retry"] = Retry(ExponentialBackoff(cap=0.2, base=0.02), 1)
        # A burst of requests (a reconnect storm: thousands of joins at once) waits for a free
        # connection instead of failing with "Too many connections", redis-py's default.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=POOL_SIZE, timeout=timeout, **options
        )
        return aioredis.Redis.from_pool(pool)

    async def start(self) -> None:
        await self.load_scripts()

    async def load_scripts(self) -> None:
        try:
            for script in self.scripts.values():
                sha = await self.client.script_load(script.source)
                if sha != script.sha:  # pragma: no cover - would mean a hashing mismatch
                    raise RuntimeError(f"script {script.name}: Redis returned sha {sha}, expected {script.sha}")
        except self._transient as exc:
            self.scripts_loaded = False
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
        self.scripts_loaded = True

    async def call(self, script: Script, keys: Sequence[str], args: Args) -> Any:
        """Run one script; reload the scripts once if Redis lost them."""
        started = time.perf_counter()
        try:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.load_scripts()
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except self._transient as exc:
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
        except (OutOfMemoryError, ReadOnlyError) as exc:  # up but refusing writes (maxmemory; a replica)
            raise StoreUnavailable(f"Redis refuses writes: {exc}") from exc
        finally:
            self.on_latency(script.name, time.perf_counter() - started)

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Run many script calls in one pipeline: one round trip (per cluster node).

        Each result is the script's reply or the ``RedisError`` it raised.
        """
        if not calls:
            return []
        try:
            results = await self._pipeline(calls)
            if any(isinstance(r, NoScriptError) for r in results):
                await self.load_scripts()
                results = await self._pipeline(calls)
            return results
        except self._transient as exc:
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for c in calls:
            # Not pipe.evalsha(): redis-py's cluster pipeline blocks it, as it cannot know that every
            # call touches one slot; ours do (the {workspace} hash tag), and this routes each by its keys.
            pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
        started = time.perf_counter()
        results: list[Any] = await pipe.execute(raise_on_error=False)
        self.on_latency("pipeline", time.perf_counter() - started)
        for r in results:
            if isinstance(r, RedisError) and isinstance(r, self._transient):
                raise r
        return results

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False
        except self._transient:
            return False

    async def redis_time_ms(self) -> int:
        sec, usec = await self.client.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.client.aclose()
        except Exception:  # closing a broken connection must not mask the shutdown
            log.debug("error while closing the Redis client", exc_info=True)
