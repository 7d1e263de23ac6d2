"""Shared channels: one process's pub/sub subscriptions, wanted by more than one part.

Tabs (:class:`~presence.engine.workspaces.Workspaces`) and watchers
(:class:`~presence.engine.watchers.WatchIndex`) both subscribe to workspace channels, each
unsubscribing when it no longer needs one. A channel stays subscribed while any part wants it:
each part gets its own :class:`Share`, and the underlying subscription is dropped only when the
last share lets go of it.
"""

from __future__ import annotations

from typing import Protocol


class Subscriber(Protocol):
    """What :class:`~presence.gateway.pubsub.Subscriptions` offers."""

    @property
    def connected(self) -> bool: ...

    async def subscribe(self, channel: str, timeout: float) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...


class SharedChannels:
    def __init__(self, subscriptions: Subscriber) -> None:
        self.subscriptions = subscriptions
        self._wanted: dict[str, set[str]] = {}  # channel -> names of the shares that want it

    def share(self, name: str) -> Share:
        return Share(self, name)

    async def _subscribe(self, name: str, channel: str, timeout: float) -> None:
        self._wanted.setdefault(channel, set()).add(name)
        await self.subscriptions.subscribe(channel, timeout)

    def _unsubscribe(self, name: str, channel: str) -> None:
        owners = self._wanted.get(channel)
        if owners is None:
            return
        owners.discard(name)
        if not owners:
            del self._wanted[channel]
            self.subscriptions.unsubscribe(channel)


class Share:
    """One part's view of the shared subscriptions (the ``Channels`` a part is handed)."""

    def __init__(self, shared: SharedChannels, name: str) -> None:
        self._shared = shared
        self._name = name

    @property
    def connected(self) -> bool:
        return self._shared.subscriptions.connected

    async def subscribe(self, channel: str, timeout: float) -> None:
        await self._shared._subscribe(self._name, channel, timeout)

    def unsubscribe(self, channel: str) -> None:
        self._shared._unsubscribe(self._name, channel)
