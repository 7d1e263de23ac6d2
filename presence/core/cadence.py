"""Cadence: when a burst's updates and presence writes happen, the same instants on every process.

A stream of changes (cursors moving) goes out as one ``update`` per update window, and each tab's
presence is written at most once per meta interval. Left to their own phase, the two add up: a
meta could wait a whole meta interval to be written, then a whole window on every process to be
sent, 100 ms with the defaults. On a shared cadence they line up: every process sends a burst's
updates at the multiples of the window in wall-clock time (the same instants on every process of
a machine, and within the clocks' skew across machines), and a tab's presence is written a
:data:`LEAD_S` before one of them, so every process has its event when it sends. A change after a
quiet moment still goes out at once; only what follows it waits for the cadence.
"""

from __future__ import annotations

import math

LEAD_S = 0.010
"""How long before an update instant a presence write is made: a script's round trip and a
pub/sub hop to every process, with room to spare on one network."""


def next_instant(t: float, window_s: float, offset_s: float) -> float:
    """The first update instant at or after loop time ``t``: a multiple of ``window_s`` in wall
    time (``offset_s``: wall time minus loop time). ``window_s`` 0: ``t`` itself."""
    if window_s <= 0:
        return t
    # The epsilon keeps an instant that float arithmetic puts a hair past itself.
    return math.ceil((t + offset_s) / window_s - 1e-9) * window_s - offset_s


def next_write(t: float, window_s: float, offset_s: float) -> float:
    """The first presence-write time at or after loop time ``t``: :data:`LEAD_S` (at most half a
    window) before an update instant."""
    if window_s <= 0:
        return t
    lead = min(LEAD_S, window_s / 2)
    return next_instant(t + lead, window_s, offset_s) - lead
