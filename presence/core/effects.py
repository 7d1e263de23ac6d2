"""Effects: what the workspace core asks the I/O shell to do, in order.

The shell (:mod:`presence.engine.workspaces`) carries each one out as it says: it sends, arms and
disarms timers, and runs the scripts asked for, then hands each script's outcome back to the
core, which decides what it means. The shell decides no lease question itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..wire.messages import ServerMessage
from .records import TabInfo


class Timer(enum.Enum):
    """The core's timers; at most one of each kind is armed per key (a lock, or a tab's conn)."""

    DEADLINE = "deadline"  # the local lease deadline of a holder on this process (per lock)
    EXPIRY = "expiry"  # a little after the lease's PTTL: look whether it expired silently (per lock)
    REQUEST = "request"  # a local requester's handoff deadline (per lock)
    IDLE = "idle"  # the holder's tabs all inactive for PRESENCE_IDLE_RELEASE_MS (per lock)
    FLUSH = "flush"  # send the changes of this loop turn (or update window) as one update
    REPLICATE = "replicate"  # try again to confirm a handoff to a local tab on the replicas (per lock)
    STATUS = "status"  # write a tab's latest presence, at most once per meta interval (per conn)


@dataclass(frozen=True, slots=True)
class Send:
    """Queue ``message`` to each of the tabs ``to`` (conns)."""

    to: tuple[str, ...]
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Arm:
    """Arm ``timer`` of ``key`` to fire at loop time ``at`` (replacing an armed one); then call
    :meth:`~presence.core.workspace.Workspace.fire`."""

    timer: Timer
    at: float
    key: str = ""


@dataclass(frozen=True, slots=True)
class Disarm:
    timer: Timer
    key: str = ""


@dataclass(frozen=True, slots=True)
class Resync:
    """Re-read the whole workspace from Redis; hand the snapshot to ``reread``."""


@dataclass(frozen=True, slots=True)
class CheckExpiry:
    """Run the expiry check of ``lock``; hand its outcome to ``expiry_checked``."""

    lock: str = ""


@dataclass(frozen=True, slots=True)
class RequestDue:
    """The handoff request of local tab ``conn`` for ``lock`` reached its deadline: run the
    handoff script in mode ``timeout`` (taking the lease over if ``may_take_over``); hand its
    outcome to ``request_checked``."""

    conn: str
    may_take_over: bool
    lock: str = ""


@dataclass(frozen=True, slots=True)
class IdleDue:
    """The holder of lease ``fence`` of ``lock`` has been idle too long: release it with reason
    ``idle``; hand the outcome to ``applied``."""

    fence: int
    lock: str = ""


class Replication(enum.Enum):
    """How a :class:`Replicate` went."""

    CONFIRMED = "confirmed"  # renewed, and the replicas acknowledged it in time
    UNCONFIRMED = "unconfirmed"  # renewed, but too few replicas acknowledged it in time
    MOVED_ON = "moved_on"  # the fence no longer holds the lease (events tell what happened)
    FAILED = "failed"  # Redis unavailable: nothing known


@dataclass(frozen=True, slots=True)
class Replicate:
    """Lease ``fence`` of ``lock`` was handed to a local tab by someone else's change: with
    PRESENCE_REDIS_WAIT_REPLICAS, renew it and ``WAIT`` for the replicas, then report with
    ``replicated`` (the tab is told it holds it then)."""

    fence: int
    lock: str = ""


@dataclass(frozen=True, slots=True)
class WriteStatus:
    """Write tab ``conn``'s presence entry ``info`` (its latest ``status``); hand the outcome to
    ``applied``."""

    conn: str
    info: TabInfo


Effect = Send | Arm | Disarm | Resync | CheckExpiry | RequestDue | IdleDue | Replicate | WriteStatus
