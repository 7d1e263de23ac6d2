"""Sentinel: a Redis client that always talks to the primary Redis Sentinel names.

``PRESENCE_REDIS_SENTINELS`` lists the Sentinels and ``PRESENCE_REDIS_SENTINEL_MASTER`` the name
they monitor; the password, database and TLS options come from ``PRESENCE_REDIS_URL`` when it is
set (its host and port are not used: the Sentinels name the primary).

How a failover is followed, by redis-py's ``SentinelConnectionPool``: every new connection asks a
Sentinel for the primary's address first. A connection to a primary that died fails; one to a
primary that was demoted is closed by Sentinel (it kills the clients of every instance it
reconfigures) or answers ``READONLY``, which the pool turns into a reconnect. So commands, scripts
and the pub/sub connection (taken from the same pool) all land on the new primary once Sentinel
promoted it; until then no Sentinel names a primary and every command fails as Redis
unavailable (``MasterNotFoundError`` is a ``ConnectionError``), which makes ``/readyz`` fail.

The pool here also waits for a free connection instead of failing (like the plain Redis one), and
tells the gateway when the primary's address changed, so the scripts are loaded on the new
primary before the first call needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from ..settings import Settings

log = logging.getLogger("presence.gateway")

# Options of a Redis URL that are about one server's address, not about how to talk to it.
_ADDRESS_OPTIONS = ("host", "port", "path", "connection_class")


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool, waiting for a free connection (a reconnect storm's joins) instead of
    raising "Too many connections"; ``on_new_primary`` is called when the address changed."""

    on_new_primary: Callable[[tuple[str, int]], None] | None = None

    async def get_master_address(self) -> Any:
        before = self.master_address
        # Through Any: redis-py types this method in some releases and not in others.
        parent: Any = super()
        address = await parent.get_master_address()
        if before is not None and address != before:
            log.warning("Sentinel names a new primary for %s: %s:%s (was %s:%s)",
                        self.service_name, *address, *before)
            if self.on_new_primary is not None:
                self.on_new_primary(address)
        elif before is None:
            log.info("Sentinel names %s:%s the primary of %s", *address, self.service_name)
        return address


class SentinelClient:
    """The Sentinels and the primary's client (``client``). ``aclose()`` closes both."""

    def __init__(self, settings: Settings, options: dict[str, Any], pool_size: int, timeout: float) -> None:
        url_options = parse_url(settings.redis_url) if settings.redis_url else {}
        tls = settings.redis_url is not None and settings.redis_url.startswith("rediss://")
        server_options = {k: v for k, v in url_options.items() if k not in _ADDRESS_OPTIONS}
        # The Sentinels are reached with the same timeouts, and over TLS when the primary is.
        sentinel_options: dict[str, Any] = {k: v for k, v in options.items() if k.startswith("socket_")}
        sentinel_options["decode_responses"] = True
        if tls:
            sentinel_options["ssl"] = True
            sentinel_options.update({k: v for k, v in server_options.items() if k.startswith("ssl_")})
        # Through Any: redis-py 8.0 leaves Sentinel's constructor untyped, 8.2 types it; a
        # type-ignore would be wrong for one of the two.
        sentinel_class: Any = Sentinel
        self.sentinel: Sentinel = sentinel_class(settings.sentinel_addresses(), sentinel_kwargs=sentinel_options)
        self.client: aioredis.Redis = self.sentinel.master_for(
            settings.redis_sentinel_master, connection_pool_class=BlockingSentinelPool,
            max_connections=pool_size, timeout=timeout, ssl=tls, **{**server_options, **options},
        )
        self.pool: BlockingSentinelPool = self.client.connection_pool

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        finally:
            # Each Sentinel's own client: redis-py 8.0's Sentinel has no aclose() of its own.
            for sentinel in self.sentinel.sentinels:
                await sentinel.aclose()
