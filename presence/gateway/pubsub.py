"""Subscriptions: Redis pub/sub to this process, for the workspaces it has tabs in.

:class:`Subscriptions` keeps the set of workspace channels this process wants (changed by
:meth:`~Subscriptions.subscribe` and :meth:`~Subscriptions.unsubscribe`), the set Redis confirmed,
the callers waiting for a confirmation, and whether pub/sub is up (``connected``). The wire work is
a transport's, chosen by the kind of Redis:

- plain Redis: :class:`~presence.gateway.classic.ClassicTransport`, one pub/sub connection whose
  single reconciling task sends the SUBSCRIBE/UNSUBSCRIBE commands, so they reach Redis in the
  order the workspaces asked for them;
- Redis Cluster: :class:`~presence.gateway.sharded.ShardedTransport`, sharded subscriptions on the
  primary that serves each workspace's slot, following slot moves.

Either way a permanent control channel (classic pub/sub) keeps a connection open while no
workspace is watched, and carries the operators' commands; ``connected`` is the state of that
connection.

Whenever a workspace channel is confirmed again after its subscription was lost (the connection
dropped, or on Cluster its slot moved), messages may have been lost in between: ``on_resubscribed``
tells the server, which re-reads the workspace. redis-py's own reconnect-and-resubscribe on plain
Redis shows up here the same way.

Lifecycle: construct, ``start()`` (spawns the transport's task; never fails because Redis is down,
it keeps reconnecting), ``subscribe``/``unsubscribe`` any time, ``await stop()`` (idempotent;
returns once every task is done).

A transport reports only through the :class:`Listener` it is given; it never sees this class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import StoreUnavailable
from ..tasks import cancel_and_wait
from .classic import ClassicTransport
from .sharded import ShardedTransport
from .transport import Listener, Transport

log = logging.getLogger("presence.pubsub")


class Subscriptions:
    """Lifecycle: ``start()``; ``subscribe``/``unsubscribe`` any time; ``await stop()`` (idempotent).
    ``connected`` is true while the control channel's connection is up."""

    def __init__(
        self,
        client: Any,
        cluster: bool,
        control_channel: str,
        on_message: Callable[[str, str], None],
        on_resubscribed: Callable[[str], None],
    ) -> None:
        """``client``: the redis-py asyncio client, ``redis.asyncio.Redis`` (or a fakeredis one) or,
        with ``cluster``, ``redis.asyncio.cluster.RedisCluster``."""
        self._control_channel = control_channel
        self._on_message = on_message
        self._on_resubscribed = on_resubscribed
        self._wanted: set[str] = set()
        self._active: set[str] = set()  # confirmed by Redis, and not lost since
        self._confirmed_before: set[str] = set()  # confirmed at least once since it was last wanted
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        listener = Listener(
            wanted=self._wanted,
            confirmed=self._confirmed,
            lost=self._lost,
            link_state=self._link_state,
            message=self._message,
        )
        self._transport: Transport = (
            ShardedTransport(client, control_channel, listener)
            if cluster
            else ClassicTransport(client, control_channel, listener)
        )

    @property
    def control_channel(self) -> str:
        """The classic channel every process subscribes to, for messages to all of them."""
        return self._control_channel

    @property
    def connected(self) -> bool:
        """True while the connection holding the control channel is up."""
        return self._connected

    def start(self) -> None:
        if self._task is not None or self._stopped:
            return
        self._task = asyncio.get_running_loop().create_task(self._transport.run(), name="pubsub")
        self._task.add_done_callback(_crashed)

    async def stop(self) -> None:
        """Stop the transport and wait for all its tasks; fail pending ``subscribe`` calls at once
        (no confirmation can come any more). Idempotent."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)  # a crash was logged when it happened
        self._connected = False
        self._active.clear()
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(StoreUnavailable("pub/sub stopped"))
        self._waiters.clear()

    async def subscribe(self, channel: str, timeout: float) -> None:
        """Make sure ``channel`` is subscribed; returns once Redis confirmed it. Raises
        ``StoreUnavailable`` when that takes longer than ``timeout`` seconds."""
        if self._stopped:
            raise StoreUnavailable("pub/sub stopped")
        self._wanted.add(channel)
        if channel in self._active:
            # Confirmed already (for an earlier subscriber, still held): a later confirmation
            # after a drop must count as "again" for this one too.
            self._confirmed_before.add(channel)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(fut)
        self._transport.changed()
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise StoreUnavailable(f"no pub/sub confirmation for {channel} within {timeout:.1f}s") from None
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[channel]

    def unsubscribe(self, channel: str) -> None:
        """Stop wanting ``channel``; the transport unsubscribes it soon."""
        self._wanted.discard(channel)
        self._confirmed_before.discard(channel)
        self._transport.changed()

    # -- the Listener's callbacks: what the transport reports -------------------------------

    def _confirmed(self, channel: str) -> None:
        if channel == self._control_channel or channel not in self._wanted:
            return  # the control channel is not a workspace; an unwanted one is on its way out
        self._active.add(channel)
        for fut in self._waiters.pop(channel, []):
            if not fut.done():
                fut.set_result(None)
        if channel in self._confirmed_before:
            # Confirmed again: the subscription was lost in between and messages may be lost.
            self._on_resubscribed(channel)
        self._confirmed_before.add(channel)

    def _lost(self, channels: Iterable[str]) -> None:
        self._active.difference_update(channels)

    def _link_state(self, up: bool) -> None:
        self._connected = up

    def _message(self, channel: str, data: str) -> None:
        try:
            self._on_message(channel, data)
        except Exception:  # one bad message must not cut the connection for every workspace
            log.exception("failed to handle a message on %s", channel)


def _crashed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical(
            "the pub/sub transport died; this process no longer hears workspace changes",
            exc_info=task.exception(),
        )
