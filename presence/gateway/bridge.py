"""Bridge: Redis pub/sub to this process, for the workspaces it has tabs in.

One pub/sub connection per process. The set of channels is kept by :meth:`subscribe` and
:meth:`unsubscribe`; a single reconciling task sends the SUBSCRIBE/UNSUBSCRIBE commands, so they
reach Redis in the order the rooms asked for them. A permanent control channel keeps the
connection open while no workspace is watched.

Whenever a workspace channel is (re)confirmed after the connection dropped, messages may have
been lost in between: the bridge reports it through ``on_resubscribed`` and the hub re-reads the
workspace. redis-py's own reconnect-and-resubscribe shows up here the same way.

On Redis Cluster the transport is :class:`~presence.shards.ShardRouter` instead: sharded
subscriptions on the primary that serves each workspace's slot, the control channel classic; the
same confirmations, waiters and re-reads apply.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from ..errors import StoreUnavailable
from ..tasks import Service
from .gateway import Gateway as Store
from .shards import ShardRouter

log = logging.getLogger("presence.bridge")


class Bridge(Service):
    """Lifecycle: ``start()`` spawns the supervisor task; ``subscribe``/``unsubscribe`` any time;
    ``stop()`` stops it (idempotent). ``connected`` is true while the pub/sub connection is up."""

    def __init__(
        self,
        store: Store,
        control_channel: str,
        on_message: Callable[[str, str], None],
        on_resubscribed: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.store = store
        self.control_channel = control_channel
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.wanted: set[str] = set()
        self.active: set[str] = set()
        self.connected = False
        self._requested: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._wake = asyncio.Event()
        self._ever_confirmed: set[str] = set()
        self._router = ShardRouter(self) if store.cluster else None

    name = "pubsub bridge"
    crash_message = "the pub/sub bridge died; this process no longer hears workspace changes"

    async def run(self) -> None:
        if self._router is not None:
            await self._router.run()
        else:
            await self._supervise()

    async def subscribe(self, channel: str, timeout: float) -> None:
        """Make sure ``channel`` is subscribed; returns once Redis confirmed it."""
        self.wanted.add(channel)
        if channel in self.active:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(fut)
        self._wake.set()
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise StoreUnavailable(f"no pub/sub confirmation for {channel} within {timeout:.1f}s") from None
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)

    def unsubscribe(self, channel: str) -> None:
        self.wanted.discard(channel)
        self._ever_confirmed.discard(channel)
        self._wake.set()

    async def _supervise(self) -> None:
        delay = 0.05
        while True:
            pubsub = self.store.client.pubsub()
            try:
                await pubsub.subscribe(self.control_channel)
                self.connected = True
                delay = 0.05
                log.info("pub/sub connected (%d workspace channels)", len(self.wanted))
                self._requested.clear()
                self.active.clear()
                self._wake.set()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._read(pubsub), name="pubsub reader")
                    tg.create_task(self._reconcile(pubsub), name="pubsub reconciler")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure here means: reconnect from scratch
                if self.connected:
                    log.warning("pub/sub connection lost: %r; reconnecting", _root(exc))
                else:
                    log.debug("pub/sub still unavailable: %r", _root(exc))
            finally:
                self.connected = False
                self.active.clear()
                self._requested.clear()
                try:
                    await asyncio.shield(pubsub.aclose())
                except Exception:
                    log.debug("closing a broken pub/sub connection failed", exc_info=True)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    async def _reconcile(self, pubsub: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            add = self.wanted - self._requested
            remove = self._requested - self.wanted
            if add:
                self._requested |= add
                await pubsub.subscribe(*add)
            if remove:
                self._requested -= remove
                self.active -= remove
                await pubsub.unsubscribe(*remove)

    async def _read(self, pubsub: Any) -> None:
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is None:
                continue
            kind, channel = msg["type"], msg["channel"]
            if kind == "message":
                try:
                    self.on_message(channel, msg["data"])
                except Exception:
                    log.exception("failed to handle a message on %s", channel)
            elif kind == "subscribe":
                self._confirmed(channel)
            elif kind == "unsubscribe":
                self.active.discard(channel)

    def _confirmed(self, channel: str) -> None:
        if channel == self.control_channel or channel not in self.wanted:
            return
        self.active.add(channel)
        for fut in self._waiters.pop(channel, []):
            if not fut.done():
                fut.set_result(None)
        if channel in self._ever_confirmed:
            # Confirmed again: the connection dropped in between and messages may be lost.
            self.on_resubscribed(channel)
        self._ever_confirmed.add(channel)


def _root(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
