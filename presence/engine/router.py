"""Router: every pub/sub message of this process, decoded once and delivered to whoever follows
its channel.

A workspace's channel carries its events: each is decoded once into the
:mod:`~presence.core.events` union and handed to every receiver (the workspaces this process has
tabs in, and the watched workspaces of list pages); each receiver acts only on the channels it
follows. The control channel carries operator commands, handed on as they came. A message that
does not decode counts as a lost one: the receivers re-read that workspace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from ..core.events import Event, decode_event

log = logging.getLogger("presence.router")


class Receiver(Protocol):
    def on_event(self, channel: str, event: Event) -> None: ...

    def on_resubscribed(self, channel: str) -> None:
        """The channel's subscription was confirmed again after a drop: messages may be lost."""
        ...


class Router:
    def __init__(self, control: str, on_control: Callable[[str], None], receivers: Sequence[Receiver]) -> None:
        self.control = control
        self.on_control = on_control
        self.receivers = tuple(receivers)

    def on_message(self, channel: str, data: str) -> None:
        if channel == self.control:
            self.on_control(data)
            return
        try:
            event = decode_event(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            log.warning("an undecodable event on %s (%s): %.200r; re-reading", channel, exc, data)
            self.on_resubscribed(channel)
            return
        for receiver in self.receivers:
            receiver.on_event(channel, event)

    def on_resubscribed(self, channel: str) -> None:
        for receiver in self.receivers:
            receiver.on_resubscribed(channel)
