"""Transport: the contract between :class:`~presence.gateway.pubsub.Subscriptions` and the wire
side of pub/sub (:mod:`~presence.gateway.classic` on plain Redis, :mod:`~presence.gateway.sharded`
on Cluster). A transport reports only through the :class:`Listener` it is given."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Listener:
    """What :class:`Subscriptions` hands its transport: the channels to hold and where to report.
    Every callback is synchronous and does no I/O."""

    wanted: Set[str]
    """The workspace channels to be subscribed (never the control channel): a live, read-only view;
    :meth:`Transport.changed` tells the transport when it changed."""
    confirmed: Callable[[str], None]
    """Redis confirmed the subscription of this channel on the connection that now serves it."""
    lost: Callable[[Iterable[str]], None]
    """These channels are no longer (or not yet again) subscribed: connection gone, slot moved,
    unsubscribed. A later ``confirmed`` of one of them counts as confirmed *again*."""
    link_state: Callable[[bool], None]
    """The connection that holds the control channel went up (True) or down (False)."""
    message: Callable[[str, str], None]
    """A message arrived on a channel (the control channel included)."""


class Transport(Protocol):
    """The wire side of :class:`Subscriptions`. Constructed as
    ``Transport(client, control_channel, listener)``."""

    async def run(self) -> None:
        """Connect, subscribe the control channel and the wanted channels, keep them subscribed
        through failures and reconnects, until cancelled; stop promptly when cancelled."""
        ...

    def changed(self) -> None:
        """``listener.wanted`` changed: send the (un)subscriptions soon. Synchronous, no I/O."""
        ...
