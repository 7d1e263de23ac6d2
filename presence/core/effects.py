"""Effects: what the workspace core asks the I/O shell to do. The core returns them in order; the
shell (:mod:`presence.engine.workspaces`) carries them out and never decides anything itself."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..wire.messages import ServerMessage


class Timer(enum.Enum):
    """The core's timers; at most one of each kind is armed per workspace."""

    DEADLINE = "deadline"  # the local lease deadline of a holder on this process
    EXPIRY = "expiry"  # a little after the lease's PTTL: look whether it expired silently
    REQUEST = "request"  # a local requester's handoff deadline
    IDLE = "idle"  # the holder's tabs all inactive for PRESENCE_IDLE_RELEASE_MS
    FLUSH = "flush"  # send the changes of this loop turn (or update window) as one update
    REPLICATE = "replicate"  # try again to confirm a handoff to a local tab on the replicas


@dataclass(frozen=True, slots=True)
class Send:
    """Queue ``message`` to each of the tabs ``to`` (conns)."""

    to: tuple[str, ...]
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Arm:
    """Arm ``timer`` to fire at loop time ``at`` (replacing an armed one); then call ``fire``."""

    timer: Timer
    at: float


@dataclass(frozen=True, slots=True)
class Disarm:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Resync:
    """Re-read the whole workspace from Redis and reset with the snapshot."""


@dataclass(frozen=True, slots=True)
class CheckExpiry:
    """Run the expiry check: announce the lease's end if the key is gone, else re-arm at its PTTL."""


@dataclass(frozen=True, slots=True)
class RequestDue:
    """The handoff request of local tab ``conn`` reached its deadline: take over or end it."""

    conn: str


@dataclass(frozen=True, slots=True)
class IdleDue:
    """The holder of lease ``fence`` has been idle too long: release it with reason ``idle``."""

    fence: int


class Replication(enum.Enum):
    """How a :class:`Replicate` went."""

    CONFIRMED = "confirmed"  # renewed, and the replicas acknowledged it in time
    UNCONFIRMED = "unconfirmed"  # renewed, but too few replicas acknowledged it in time
    MOVED_ON = "moved_on"  # the fence no longer holds the lease (events tell what happened)
    FAILED = "failed"  # Redis unavailable: nothing known


@dataclass(frozen=True, slots=True)
class Replicate:
    """Lease ``fence`` was handed to a local tab by someone else's change: with
    PRESENCE_REDIS_WAIT_REPLICAS, renew it and ``WAIT`` for the replicas, then report with
    :meth:`~presence.core.workspace.Workspace.replicated` (the tab is told it holds it then)."""

    fence: int


Effect = Send | Arm | Disarm | Resync | CheckExpiry | RequestDue | IdleDue | Replicate
