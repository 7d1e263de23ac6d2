"""Shards: the bridge's pub/sub transport on Redis Cluster.

On a cluster each workspace's changes are published with ``SPUBLISH`` by the script that made them,
on the primary serving the workspace's slot, and only a ``SSUBSCRIBE`` on that primary receives
them. The control channel is classic ``PUBLISH``, which the cluster bus broadcasts to every node.
So the bridge keeps:

- one classic link to any primary, for the control channel (its state is ``Bridge.connected``);
- one sharded link per primary that serves at least one watched workspace channel.

Each link is one pub/sub connection with a connection pool of its own: redis-py's cluster client
closes its pooled connections after a node error, which must not cut the subscriptions of the
other nodes. A link that loses its connection reconnects and subscribes its channels again, and a
confirmation of a channel confirmed before goes to ``Bridge._confirmed``, which makes the hub
re-read the workspace: whatever was published in between is not lost.

When a slot moves to another primary, the old one ends our subscription with an unsolicited
``sunsubscribe`` (and answers later ``SSUBSCRIBE``s with ``MOVED``): the router refreshes its slot
map and moves the channel to the new owner's link, whose confirmation triggers the same re-read.
A link that fails for any reason makes the router refresh the map too (a failover moves slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

if TYPE_CHECKING:
    from .bridge import Bridge

log = logging.getLogger("presence.bridge")

_MAX_DELAY = 2.0


def _by_slot(channels: Iterable[str]) -> list[list[str]]:
    """SSUBSCRIBE and SUNSUBSCRIBE take channels of one slot per command (else CROSSSLOT)."""
    groups: dict[int, list[str]] = defaultdict(list)
    for ch in channels:
        groups[key_slot(ch.encode())].append(ch)
    return list(groups.values())


class Link:
    """One pub/sub connection to one cluster node: sharded (workspace channels of the slots the node
    serves) or classic (the control channel). Lifecycle: ``run()`` until cancelled."""

    def __init__(self, router: ShardRouter, node: Any, sharded: bool) -> None:
        self.router = router
        self.node = node  # a redis.asyncio.cluster.ClusterNode; the control link changes it on failure
        self.sharded = sharded
        self.name = node.name if sharded else "control"
        self.wanted: set[str] = set()
        self.requested: set[str] = set()
        self.connected = False
        self._wake = asyncio.Event()
        self._unsubscribing: set[str] = set()  # to tell our SUNSUBSCRIBEs' answers from a slot move

    def __repr__(self) -> str:
        return f"<Link {self.name} {'sharded' if self.sharded else 'classic'} channels={len(self.wanted)}>"

    def add(self, channel: str) -> None:
        self.wanted.add(channel)
        self._wake.set()

    def drop(self, channel: str, tell_redis: bool) -> None:
        """Stop wanting ``channel``. ``tell_redis=False`` when it moved to another node: this one no
        longer serves its slot (and would answer SUNSUBSCRIBE with MOVED)."""
        self.wanted.discard(channel)
        if not tell_redis:
            self.requested.discard(channel)
        self._wake.set()

    def _pubsub(self) -> Any:  # redis-py's PubSub is partly untyped
        kwargs = dict(self.node.connection_kwargs)
        # No reconnect inside redis-py: on any error the link starts over from a fresh connection
        # (redis-py would re-send every channel in one SSUBSCRIBE, which Redis refuses across slots).
        kwargs["retry"] = Retry(NoBackoff(), 0)
        pool = ConnectionPool(connection_class=self.node.connection_class, **kwargs)
        return PubSub(connection_pool=pool)

    async def run(self) -> None:
        delay = 0.05
        while True:
            pubsub = self._pubsub()
            failed = True
            try:
                await pubsub.connect()
                if not self.sharded:
                    await pubsub.subscribe(self.router.bridge.control_channel)
                self.connected = True
                self.router.link_up(self)
                delay = 0.05
                self._wake.set()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._read(pubsub), name=f"pubsub reader {self.name}")
                    if self.sharded:
                        tg.create_task(self._reconcile(pubsub), name=f"pubsub reconciler {self.name}")
            except asyncio.CancelledError:
                failed = False  # closed by the router: its node serves none of our channels
                raise
            except Exception as exc:  # any failure: refresh the slot map, reconnect from scratch
                if self.connected:
                    log.warning("pub/sub link %s lost: %r; reconnecting", self.name, _root(exc))
                else:
                    log.debug("pub/sub link %s still unavailable: %r", self.name, _root(exc))
            finally:
                self.connected = False
                self.router.link_down(self, self.requested, failed)
                self.requested.clear()
                self._unsubscribing.clear()
                try:
                    await asyncio.shield(_close(pubsub))
                except Exception:
                    log.debug("closing a broken pub/sub connection failed", exc_info=True)
            if not self.sharded:
                self.node = self.router.control_node(self.node)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _MAX_DELAY)

    async def _reconcile(self, pubsub: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            add = self.wanted - self.requested
            remove = self.requested - self.wanted
            self.requested |= add
            self.requested -= remove
            self._unsubscribing |= remove
            for group in _by_slot(add):
                await pubsub.ssubscribe(*group)
                _raise_if_cancelled()
            for group in _by_slot(remove):
                await pubsub.sunsubscribe(*group)
                _raise_if_cancelled()

    async def _read(self, pubsub: Any) -> None:
        bridge = self.router.bridge
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            _raise_if_cancelled()
            if msg is None:
                continue
            kind, channel = msg["type"], msg["channel"]
            if kind in ("smessage", "message"):
                # Also from a channel that just moved away: the rooms drop what they saw already.
                try:
                    bridge.on_message(channel, msg["data"])
                except Exception:
                    log.exception("failed to handle a message on %s", channel)
            elif kind == "ssubscribe":
                if channel in self.wanted:
                    bridge._confirmed(channel)
            elif kind == "sunsubscribe" and channel in self._unsubscribing:
                self._unsubscribing.discard(channel)
            elif kind == "sunsubscribe" and channel in self.wanted:
                # Not asked for: the slot moved to another node. Follow it.
                log.info("pub/sub link %s: %s moved away; refreshing the slot map", self.name, channel)
                self.requested.discard(channel)
                bridge.active.discard(channel)
                self.router.request_refresh()


class ShardRouter:
    """Assigns each watched channel to the link of the primary serving its slot, and keeps doing so
    as slots move. Lifecycle: ``run()`` is the bridge's supervisor task on Cluster."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.client: Any = bridge.store.client  # a redis.asyncio.cluster.RedisCluster
        self.links: dict[str, Link] = {}
        self.route: dict[str, str] = {}  # channel -> link name
        self.control: Link | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._refresh = True

    def request_refresh(self) -> None:
        self._refresh = True
        self.bridge._wake.set()

    def control_node(self, previous: Any) -> Any:
        """A primary for the control channel (any node hears every classic PUBLISH); after a failure
        another one if there is a choice."""
        with contextlib.suppress(Exception):
            primaries = self.client.get_primaries()
            others = [n for n in primaries if n.name != previous.name]
            if others or primaries:
                return random.choice(others or primaries)
        return previous

    def link_up(self, link: Link) -> None:
        if link is self.control:
            self.bridge.connected = True
            log.info("pub/sub connected (cluster; %d workspace channels)", len(self.bridge.wanted))

    def link_down(self, link: Link, confirmed: set[str], failed: bool) -> None:
        if link is self.control:
            self.bridge.connected = False
        self.bridge.active -= confirmed
        if failed:  # the node may be gone, or its slots elsewhere
            self.request_refresh()

    async def run(self) -> None:
        bridge = self.bridge
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                node = await self._first_node()
                self.control = Link(self, node, sharded=False)
                self._tasks["control"] = tg.create_task(self.control.run(), name="pubsub control link")
                while True:
                    with contextlib.suppress(TimeoutError):
                        # Woken by subscribe/unsubscribe and by links; once a second regardless, to
                        # retry channels whose slot was not served and to refresh after failures.
                        await asyncio.wait_for(bridge._wake.wait(), 1.0)
                    bridge._wake.clear()
                    await self._reconcile()
        finally:
            self._tg = None
            bridge.connected = False

    async def _first_node(self) -> Any:
        delay = 0.05
        while True:
            try:
                await self.client.initialize()
                return random.choice(self.client.get_primaries())
            except Exception as exc:
                log.debug("cluster not reachable yet: %r", exc)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _MAX_DELAY)

    async def _reconcile(self) -> None:
        refreshed = False
        if self._refresh:
            try:
                await self.client.initialize()  # a no-op unless the client closed itself after errors
                await self.client.nodes_manager.initialize()
                self._refresh, refreshed = False, True
            except Exception as exc:
                log.debug("slot map refresh failed: %r", exc)
        wanted = self.bridge.wanted
        for channel in [c for c in self.route if c not in wanted]:
            self.links[self.route.pop(channel)].drop(channel, tell_redis=True)
            self.bridge.active.discard(channel)
        # After a refresh any channel may have moved; otherwise only new ones need a route.
        for channel in set(wanted) if refreshed else wanted - self.route.keys():
            try:
                node = self.client.get_node_from_key(channel)
            except (RedisClusterException, KeyError, IndexError):
                continue  # slot not served right now: tried again within a second
            old = self.route.get(channel)
            if old == node.name:
                continue
            if old is not None:
                self.links[old].drop(channel, tell_redis=False)
                self.bridge.active.discard(channel)
            self.route[channel] = node.name
            self._link(node).add(channel)
        for name, link in list(self.links.items()):
            if not link.wanted:
                await self._close(name)

    def _link(self, node: Any) -> Link:
        link = self.links.get(node.name)
        if link is None:
            assert self._tg is not None
            link = self.links[node.name] = Link(self, node, sharded=True)
            self._tasks[node.name] = self._tg.create_task(link.run(), name=f"pubsub link {node.name}")
        return link

    async def _close(self, name: str) -> None:
        self.links.pop(name, None)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=5.0)
            if pending:  # pragma: no cover - would be a bug; the task group still awaits it at shutdown
                log.error("pub/sub link %s did not stop within 5s of cancellation", name)


def _raise_if_cancelled() -> None:
    """Python 3.11's ``asyncio.wait_for``, which redis-py wraps around socket writes, can swallow a
    cancellation that arrives as the write completes; a link must still stop when cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    finally:
        await pubsub.connection_pool.disconnect()


def _root(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
