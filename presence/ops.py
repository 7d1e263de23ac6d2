"""Ops: the operations plane of one server process (audit log, server registry, control
commands, expiry sweeper), attached to its hub and started and stopped with it. Metrics live on the hub itself
(``hub.metrics``) because the core calls them directly."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .audit import AuditLog
from .control import Control
from .registry import Registry
from .sweeper import Sweeper

if TYPE_CHECKING:
    from .hub import Hub


class Ops:
    def __init__(self, hub: Hub) -> None:
        self.audit = AuditLog(hub.store, hub.settings, hub.server_id, hub.metrics)
        self.registry = Registry(hub, self.audit)
        self.control = Control(hub)
        self.sweeper = Sweeper(hub)
        hub.lease.observers.append(self.audit.observe)
        hub.lease.observers.append(self.sweeper.on_events)
        hub.control_handlers.append(self.control.on_message)

    def start(self) -> None:
        self.audit.start()
        self.registry.start()
        self.sweeper.start()

    async def stop(self) -> None:
        """After the hub's tabs are gone (their last events are buffered), before the store closes."""
        await self.sweeper.stop()
        await self.registry.stop()
        await self.audit.stop()
