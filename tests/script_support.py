"""Helpers for tests that call the lease scripts directly."""

from __future__ import annotations

from presence.core.events import Event
from presence.core.outcomes import ExpireReply, Held, Outcome


def expiry(out: Outcome[ExpireReply]) -> tuple[int | None, list[Event]]:
    """An expiry check as (PTTL while the lease is alive else None, the events it published)."""
    return (out.reply.ttl_ms if isinstance(out.reply, Held) else None), out.events
