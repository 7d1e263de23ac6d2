"""Local: one workspace this process has tabs in, as the engine keeps it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ..core.effects import Timer
from ..core.workspace import Workspace
from .outbox import TabOutbox


@dataclass(eq=False)
class Local:
    """One workspace on this process: its core, its tabs' outboxes, the core's armed timers, the
    presence write in flight of each tab (so a tab's writes land in order), and the join that is
    reading the whole workspace (``reading``, set while it runs: the joins that come meanwhile wait
    for it rather than each reading the whole room again, which made a join storm quadratic in Redis)."""

    core: Workspace
    channel: str
    tabs: dict[str, TabOutbox] = field(default_factory=dict)
    timers: dict[tuple[Timer, str], asyncio.TimerHandle] = field(default_factory=dict)
    writes: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    reading: asyncio.Event | None = None

    @property
    def workspace(self) -> str:
        return self.core.workspace
