"""Classic transport: the subscriptions on one pub/sub connection (plain Redis), and the
:class:`Link` that both transports are made of.

A :class:`Link` is one pub/sub connection kept up until it is cancelled:

1. connect and subscribe the control channel, if the link carries it (then the connection is up);
2. run two tasks on the connection: a reader, which hands messages to the listener and reports
   each confirmation, and a single reconciler, which sends the (UN)SUBSCRIBE commands that make
   the channels requested on this connection equal the wanted ones, so the commands reach Redis in
   the order the workspaces asked for them;
3. on any failure: report every channel of the connection lost, close it, wait a backoff
   (:class:`~presence.gateway.backoff.Backoff`) and start over from a fresh connection, which
   subscribes every wanted channel again. Their confirmations then count as confirmed *again*, and
   the server re-reads those workspaces: whatever was published in between is not lost.

:class:`ClassicTransport` is one link for plain Redis, on a connection of the client's pool,
carrying the control channel and every workspace channel; the connection's state is
``Subscriptions.connected``. redis-py may also reconnect and resubscribe by itself within a
command's retries: those confirmations arrive like any other and count as confirmed again too.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Set
from typing import Any

from .backoff import Backoff, raise_if_cancelled, root_cause
from .transport import Listener

log = logging.getLogger("presence.pubsub")

_MESSAGE = ("message", "smessage")
_SUBSCRIBED = ("subscribe", "ssubscribe")
_UNSUBSCRIBED = ("unsubscribe", "sunsubscribe")


class Link:
    """One pub/sub connection holding ``wanted`` (and ``control_channel`` if given). Lifecycle:
    ``run()`` until cancelled; ``changed()`` whenever ``wanted`` changed.

    Subclasses say how to open and close the connection, how to (un)subscribe, and what to do when
    it goes up or down or Redis ends a subscription by itself."""

    def __init__(self, name: str, listener: Listener, wanted: Set[str], control_channel: str | None) -> None:
        self.name = name
        self.listener = listener
        self.wanted = wanted  # read-only here: whoever owns it calls changed()
        self.control_channel = control_channel
        self.requested: set[str] = set()  # sent on this connection, confirmed or not yet
        self.up = False
        self._unsubscribing: Counter[str] = Counter()  # our UNSUBSCRIBEs whose answers are due
        self._wake = asyncio.Event()
        self._backoff = Backoff()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} channels={len(self.wanted)} up={self.up}>"

    def changed(self) -> None:
        self._wake.set()

    # -- what subclasses define -------------------------------------------------------------

    def _open(self) -> Any:  # redis-py's PubSub is partly untyped
        """A new, not yet connected PubSub."""
        raise NotImplementedError

    async def _close(self, pubsub: Any) -> None:
        await pubsub.aclose()

    def _went_up(self) -> None:
        """Connected (and the control channel subscribed, if this link carries it)."""

    def _went_down(self, failed: bool) -> None:
        """The connection is gone: ``failed`` unless the link was cancelled."""
        self.listener.lost(self.requested)

    async def _subscribe(self, pubsub: Any, channels: set[str]) -> None:
        await pubsub.subscribe(*channels)
        raise_if_cancelled()

    async def _unsubscribe(self, pubsub: Any, channels: set[str]) -> None:
        await pubsub.unsubscribe(*channels)
        raise_if_cancelled()

    def _unsolicited(self, channel: str) -> None:
        """Redis ended the subscription of a wanted channel without being asked to (already
        reported lost). On one plain connection that does not happen; subscribe it again."""
        self._wake.set()

    # -- the loops --------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            raise_if_cancelled()
            pubsub = self._open()
            failed = True
            try:
                # One task per connection: on Python 3.11 a TaskGroup whose child failed leaves its
                # host task counted as cancelling (3.12 undoes that), which would trip this loop's
                # cancellation guard on the next round.
                await asyncio.create_task(self._connection(pubsub), name=f"pubsub {self.name}")
            except asyncio.CancelledError:
                failed = False  # stopped, or closed because nothing is wanted from this node any more
                raise
            except Exception as exc:  # any failure here means: reconnect from scratch
                if self.up:
                    log.warning("pub/sub %s lost: %r; reconnecting", self.name, root_cause(exc))
                else:
                    log.debug("pub/sub %s still unavailable: %r", self.name, root_cause(exc))
            finally:
                self.up = False
                self._went_down(failed)
                self.requested.clear()
                self._unsubscribing.clear()
                try:
                    await asyncio.shield(self._close(pubsub))
                except Exception:
                    log.debug("closing a broken pub/sub connection failed", exc_info=True)
            await self._backoff.wait()

    async def _connection(self, pubsub: Any) -> None:
        """Connect, then read and reconcile until something fails."""
        if self.control_channel is not None:
            await pubsub.subscribe(self.control_channel)  # connects first
        else:
            await pubsub.connect()
        raise_if_cancelled()
        self.up = True
        self._backoff.reset()
        self._went_up()
        self._wake.set()  # subscribe whatever is wanted by now
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read(pubsub), name=f"pubsub reader {self.name}")
            tg.create_task(self._reconcile(pubsub), name=f"pubsub reconciler {self.name}")

    async def _reconcile(self, pubsub: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            add = {c for c in self.wanted if c not in self.requested}
            remove = {c for c in self.requested if c not in self.wanted}
            self.requested |= add
            self.requested -= remove
            if remove:
                self._unsubscribing.update(remove)
                self.listener.lost(remove)
            if add:
                await self._subscribe(pubsub, add)
            if remove:
                await self._unsubscribe(pubsub, remove)

    async def _read(self, pubsub: Any) -> None:
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            raise_if_cancelled()
            if msg is not None:
                # A script publishes its event before Redis writes the script's reply: both come
                # in the same turn of the loop, the event first. Yield once, so the task waiting for
                # that reply applies it and answers its tab before the event is handled (then it
                # finds itself applied already); the events keep their order (one reader).
                await asyncio.sleep(0)
                self._handle(msg["type"], msg["channel"], msg["data"])

    def _handle(self, kind: str, channel: str, data: Any) -> None:
        if kind in _MESSAGE:
            # Also from a channel just dropped or moved away: the cores drop what they saw already.
            self.listener.message(channel, data)
        elif kind in _SUBSCRIBED:
            if channel in self.wanted:
                self.listener.confirmed(channel)
        elif kind in _UNSUBSCRIBED:
            if self._unsubscribing[channel] > 0:  # the answer to one of our own UNSUBSCRIBEs
                self._unsubscribing[channel] -= 1
                if self._unsubscribing[channel] == 0:
                    del self._unsubscribing[channel]
                if channel in self.wanted:
                    # Wanted again since: answers come in order, so its new SUBSCRIBE's confirmation
                    # is still to come and it is not subscribed until then.
                    self.listener.lost([channel])
            elif channel in self.wanted:
                self.requested.discard(channel)
                self.listener.lost([channel])
                self._unsolicited(channel)


class ClassicTransport(Link):
    """The subscriptions on plain Redis: one link, on a connection of ``client``'s pool, carrying
    the control channel and every wanted channel. Lifecycle: ``run()`` until cancelled."""

    def __init__(self, client: Any, control_channel: str, listener: Listener) -> None:
        super().__init__("connection", listener, listener.wanted, control_channel)
        self.client = client  # redis.asyncio.Redis (or fakeredis's)

    def _open(self) -> Any:
        return self.client.pubsub()

    def _went_up(self) -> None:
        self.listener.link_state(True)
        log.info("pub/sub connected (%d workspace channels)", len(self.wanted))

    def _went_down(self, failed: bool) -> None:
        self.listener.link_state(False)
        super()._went_down(failed)
