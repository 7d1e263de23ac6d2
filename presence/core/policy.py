"""Policy: the few settings the workspace core reads, as one value built at the composition root.

The core never sees the process's settings (nor their parsing and key material): only these.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.messages import Scope


@dataclass(frozen=True, slots=True)
class Policy:
    """Attributes:

    - ``lease_ttl_ms``: a lease's Redis TTL, renewed every heartbeat.
    - ``lease_scope``: ``user`` (all the user's tabs hold it) or ``tab`` (the tab that took it).
    - ``heartbeat_ms``: the heartbeat; failed work is tried again after one.
    - ``safety_margin_ms``: how long before the Redis TTL the local deadline falls.
    - ``update_window_ms``: changes within this window go out as one ``update``.
    - ``handoff_timeout_ms``: how long a holder has to answer a polite request.
    - ``handoff_takeover``: whether a request that times out takes the lease over.
    - ``idle_release_ms``: release a lease whose holder's tabs were all inactive this long (0: never).
    - ``wait_replicas``: grants are confirmed on Redis replicas before tabs are told of them.
    - ``meta_interval_ms``: a tab's presence is written at most this often (the latest wins).
    - ``max_locks_per_tab``: named locks one tab may hold at once.
    - ``clock_offset_s``: wall-clock time minus the event loop's time, so that every process puts
      a burst's updates and presence writes on the same instants (:mod:`~presence.core.cadence`).
    """

    lease_ttl_ms: int = 15000
    lease_scope: Scope = "user"
    heartbeat_ms: int = 5000
    safety_margin_ms: int = 1500
    update_window_ms: int = 50
    handoff_timeout_ms: int = 30000
    handoff_takeover: bool = True
    idle_release_ms: int = 0
    wait_replicas: bool = False
    meta_interval_ms: int = 50
    max_locks_per_tab: int = 20
    clock_offset_s: float = 0.0
