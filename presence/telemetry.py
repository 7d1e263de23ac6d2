"""Telemetry: what the serving parts report as they work, without knowing who listens.

The connection handling, the heartbeat and the Redis gateway call a :class:`Telemetry`; the ops
plane's metrics implement it and the composition root hands them in. The default does nothing,
so a part built on its own (a test, the bench's clients) needs no metrics.
"""

from __future__ import annotations

from typing import Protocol

from .wire.messages import ServerMessage


class Telemetry(Protocol):
    def redis_latency(self, op: str, seconds: float) -> None: ...

    def lease_request(self, op: str, result: str, seconds: float) -> None: ...

    def message_in(self, kind: str) -> None: ...

    def message_out(self, message: ServerMessage, count: int = 1) -> None:
        """``message`` was queued to ``count`` tabs."""
        ...

    def closed(self, code: int) -> None: ...

    def tick(self, seconds: float) -> None: ...

    def renewed(self, seconds: float) -> None: ...


class _Silent:
    def redis_latency(self, op: str, seconds: float) -> None:
        pass

    def lease_request(self, op: str, result: str, seconds: float) -> None:
        pass

    def message_in(self, kind: str) -> None:
        pass

    def message_out(self, message: ServerMessage, count: int = 1) -> None:
        pass

    def closed(self, code: int) -> None:
        pass

    def tick(self, seconds: float) -> None:
        pass

    def renewed(self, seconds: float) -> None:
        pass


NO_TELEMETRY: Telemetry = _Silent()
