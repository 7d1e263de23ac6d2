"""Subscriptions (interim): the pub/sub bridge behind the interface the server uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bridge import Bridge


@dataclass
class _Client:
    client: Any
    cluster: bool


class Subscriptions(Bridge):
    def __init__(
        self, client: Any, cluster: bool, control_channel: str, on_message: Callable[[str, str], None],
        on_resubscribed: Callable[[str], None],
    ) -> None:
        super().__init__(_Client(client, cluster), control_channel, on_message, on_resubscribed)  # type: ignore[arg-type]
