"""Sharded transport: the subscriptions on Redis Cluster.

On a cluster each workspace's changes are published with ``SPUBLISH`` by the script that made them,
on the primary serving the workspace's slot, and only a ``SSUBSCRIBE`` on that primary receives
them. The control channel is classic ``PUBLISH``, which the cluster bus broadcasts to every node.
So the transport keeps:

- one classic link to any primary, for the control channel (its state is
  ``Subscriptions.connected``); after a failure it tries another primary;
- one sharded link per primary that serves at least one watched workspace channel, closed once it
  serves none. SSUBSCRIBE and SUNSUBSCRIBE take the channels of one slot per command.

Each link (a :class:`~presence.gateway.classic.Link`) is one pub/sub connection with a connection
pool of its own: redis-py's cluster client closes its pooled connections after a node error, which
must not cut the subscriptions of the other nodes. A link that loses its connection reconnects and
subscribes its channels again; their confirmations count as confirmed again, which makes the server
re-read those workspaces: whatever was published in between is not lost.

When a slot moves to another primary, the old one ends our subscription with an unsolicited
``sunsubscribe`` (and answers later ``SSUBSCRIBE``s with ``MOVED``): the transport refreshes its
slot map and moves the channel to the new owner's link, whose confirmation triggers the same
re-read. A link that fails for any reason makes it refresh the map too (a failover moves slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Set
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from .backoff import Backoff, raise_if_cancelled
from .classic import Link
from .transport import Listener

log = logging.getLogger("presence.pubsub")


def _by_slot(channels: Iterable[str]) -> list[list[str]]:
    """SSUBSCRIBE and SUNSUBSCRIBE take channels of one slot per command (else CROSSSLOT)."""
    groups: dict[int, list[str]] = defaultdict(list)
    for ch in channels:
        groups[key_slot(ch.encode())].append(ch)
    return list(groups.values())


class NodeLink(Link):
    """A link to one cluster node, through a connection pool of its own."""

    def __init__(
        self, router: ShardedTransport, node: Any, name: str, wanted: Set[str], control_channel: str | None
    ) -> None:
        super().__init__(name, router.listener, wanted, control_channel)
        self.router = router
        self.node = node  # a redis.asyncio.cluster.ClusterNode

    def _open(self) -> Any:
        kwargs = dict(self.node.connection_kwargs)
        # No reconnect inside redis-py: on any error the link starts over from a fresh connection
        # (redis-py would re-send every channel in one SSUBSCRIBE, which Redis refuses across slots).
        kwargs["retry"] = Retry(NoBackoff(), 0)
        pool = ConnectionPool(connection_class=self.node.connection_class, **kwargs)
        return PubSub(connection_pool=pool)

    async def _close(self, pubsub: Any) -> None:
        try:
            await pubsub.aclose()
        finally:
            await pubsub.connection_pool.disconnect()

    def _went_down(self, failed: bool) -> None:
        super()._went_down(failed)
        if failed:  # the node may be gone, or its slots elsewhere
            self.router.request_refresh()


class ShardLink(NodeLink):
    """The sharded link to one primary: the workspace channels of the slots it serves, as the
    transport assigned them (``add`` / ``drop``). Lifecycle: ``run()`` until cancelled."""

    def __init__(self, router: ShardedTransport, node: Any) -> None:
        self.channels: set[str] = set()
        super().__init__(router, node, f"link {node.name}", self.channels, None)

    def add(self, channel: str) -> None:
        self.channels.add(channel)
        self.changed()

    def drop(self, channel: str, tell_redis: bool) -> None:
        """Stop wanting ``channel``. ``tell_redis=False`` when it moved to another node: this one no
        longer serves its slot (and would answer SUNSUBSCRIBE with MOVED)."""
        self.channels.discard(channel)
        if not tell_redis:
            self.requested.discard(channel)
        self.changed()

    async def _subscribe(self, pubsub: Any, channels: set[str]) -> None:
        for group in _by_slot(channels):
            await pubsub.ssubscribe(*group)
            raise_if_cancelled()

    async def _unsubscribe(self, pubsub: Any, channels: set[str]) -> None:
        for group in _by_slot(channels):
            await pubsub.sunsubscribe(*group)
            raise_if_cancelled()

    def _unsolicited(self, channel: str) -> None:
        # The slot moved to another node. Follow it (not by subscribing here again: MOVED).
        log.info("pub/sub %s: %s moved away; refreshing the slot map", self.name, channel)
        self.router.request_refresh()


class ControlLink(NodeLink):
    """The classic link for the control channel, to any primary (every node hears every classic
    PUBLISH); after a failure, to another one if there is a choice."""

    def __init__(self, router: ShardedTransport, node: Any, control_channel: str) -> None:
        super().__init__(router, node, "control link", frozenset(), control_channel)

    def _went_up(self) -> None:
        self.listener.link_state(True)
        log.info("pub/sub connected (cluster; %d workspace channels)", len(self.listener.wanted))

    def _went_down(self, failed: bool) -> None:
        self.listener.link_state(False)
        super()._went_down(failed)
        if failed:
            self.node = self.router.control_node(self.node)


class ShardedTransport:
    """Assigns each wanted channel to the link of the primary serving its slot, and keeps doing so
    as slots move. Lifecycle: ``run()`` until cancelled (it runs every link in a task group);
    ``changed()`` whenever the wanted channels changed."""

    def __init__(self, client: Any, control_channel: str, listener: Listener) -> None:
        self.client = client  # a redis.asyncio.cluster.RedisCluster
        self.control_channel = control_channel
        self.listener = listener
        self.links: dict[str, ShardLink] = {}  # by node name
        self.route: dict[str, str] = {}  # channel -> node name
        self.control: ControlLink | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._wake = asyncio.Event()
        self._refresh = True

    def changed(self) -> None:
        self._wake.set()

    def request_refresh(self) -> None:
        """Re-read the slot map and re-route every channel (soon, in the router's task)."""
        self._refresh = True
        self._wake.set()

    def control_node(self, previous: Any) -> Any:
        """A primary for the control channel; after a failure another one if there is a choice."""
        with contextlib.suppress(Exception):
            primaries = self.client.get_primaries()
            others = [n for n in primaries if n.name != previous.name]
            if others or primaries:
                return random.choice(others or primaries)
        return previous

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                node = await self._first_node()
                self.control = ControlLink(self, node, self.control_channel)
                tg.create_task(self.control.run(), name="pubsub control link")
                while True:
                    with contextlib.suppress(TimeoutError):
                        # Woken by subscribe/unsubscribe and by links; once a second regardless, to
                        # retry channels whose slot was not served and to refresh after failures.
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                    raise_if_cancelled()
                    self._wake.clear()
                    await self._reconcile()
        finally:
            self._tg = None

    async def _first_node(self) -> Any:
        backoff = Backoff()
        while True:
            try:
                await self.client.initialize()
                raise_if_cancelled()
                return random.choice(self.client.get_primaries())
            except Exception as exc:
                log.debug("cluster not reachable yet: %r", exc)
            await backoff.wait()

    async def _reconcile(self) -> None:
        refreshed = False
        if self._refresh:
            try:
                await self.client.initialize()  # a no-op unless the client closed itself after errors
                await self.client.nodes_manager.initialize()
                self._refresh, refreshed = False, True
            except Exception as exc:
                log.debug("slot map refresh failed: %r", exc)
        wanted = self.listener.wanted
        for channel in [c for c in self.route if c not in wanted]:
            # The link reports it lost when it sends the SUNSUBSCRIBE (or when it closes).
            self.links[self.route.pop(channel)].drop(channel, tell_redis=True)
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
                self.listener.lost([channel])
            self.route[channel] = node.name
            self._link(node).add(channel)
        for name, link in list(self.links.items()):
            if not link.channels:
                await self._close(name)

    def _link(self, node: Any) -> ShardLink:
        link = self.links.get(node.name)
        if link is None:
            assert self._tg is not None
            link = self.links[node.name] = ShardLink(self, node)
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
