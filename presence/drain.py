"""Drain: what a process asked to stop (SIGTERM) does for its tabs before it goes.

A restart must never cost a lease. The tabs this process closes reconnect (to another process,
or to this one's successor) and rejoin their leases with the same fence, but a reconnect storm
of thousands of tabs on a busy machine can take longer than the lease TTL. So before closing
them, the process gives the leases its tabs hold ``PRESENCE_RESTART_GRACE_MS`` (never less than
the TTL) in one pipelined batch: a compare-and-set on each fence, the new TTL counted by Redis.
A lease whose tabs come back is renewed by their new process as usual; one nobody comes back
for ends by the grace, announced by the expiry watchers like any expiry. A crash (SIGKILL)
keeps the TTL rule: nobody is left to keep anything.

Each tab is closed with 1012; the close reason of a tab that holds a kept lease tells how long
it is kept (:func:`restart_reason`), so the client's local deadline can follow: the time told is
what is left of the grace once the close frame can have reached the tab at the latest (a peer
has ``CLOSE_TIMEOUT_S`` to take it), so a client never counts on more than Redis gives.

The heartbeat stops first: its renewals would cut the kept leases back to the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import re

from .connections.endpoint import Endpoint
from .connections.output import CLOSE_TIMEOUT_S
from .engine.heartbeat import Heartbeat
from .engine.workspaces import Workspaces
from .errors import Restarting, StoreUnavailable
from .gateway.leases import LeaseScripts
from .settings import Settings

log = logging.getLogger("presence.drain")

RESTARTING = "server restarting, reconnect"
_KEPT = re.compile(r"; lease kept for (\d+) ms$")


def restart_reason(kept_ms: int) -> str:
    """The 1012 close reason: with ``kept_ms`` > 0, how long the tab's lease is kept from now.
    The JS client reads the number (``static/presence.js``, ``restartGraceMs``)."""
    return f"{RESTARTING}; lease kept for {kept_ms} ms" if kept_ms > 0 else RESTARTING


def kept_ms(reason: str) -> int:
    """The time a close reason of :func:`restart_reason` tells (0 when none)."""
    match = _KEPT.search(reason)
    return int(match.group(1)) if match else 0


class Drain:
    """Lifecycle: ``await run()`` once, when the process stops; ``await gone(timeout)`` then
    waits for the closed tabs to leave."""

    def __init__(
        self, settings: Settings, workspaces: Workspaces, leases: LeaseScripts, heartbeat: Heartbeat,
        endpoint: Endpoint,
    ) -> None:
        self.settings = settings
        self.workspaces = workspaces
        self.leases = leases
        self.heartbeat = heartbeat
        self.endpoint = endpoint

    async def run(self) -> None:
        """Keep the leases of the local tabs for the restart grace, then close every tab and
        other connection (watchers, handshakes) with 1012."""
        await self.heartbeat.stop()
        held = self._held()
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        kept = await self._keep(held)
        # What is left of the grace when the close frame reaches the tab at the latest.
        told_ms = int(self.settings.restart_keep_ms - (loop.time() - sent_at + CLOSE_TIMEOUT_S) * 1000)
        closed = 0
        for local in self.workspaces:
            for tab in list(local.tabs.values()):
                holds = any((local.workspace, lock) in kept for lock in local.core.renewals([tab.conn]))
                tab.close(Restarting.close_code, restart_reason(told_ms if holds else 0))
                closed += 1
        self.endpoint.stop(Restarting.close_code, RESTARTING)
        if closed:
            log.info("closed %d tabs with 1012; %d of %d leases held here kept for %d ms", closed, len(kept),
                     len(held), self.settings.restart_keep_ms)

    def _held(self) -> dict[tuple[str, str], int]:
        """``{(workspace, lock): fence}`` of the leases that tabs on this process hold."""
        return {
            (local.workspace, lock): fence
            for local in self.workspaces for lock, fence in local.core.renewals(local.tabs).items()
        }

    async def _keep(self, held: dict[tuple[str, str], int]) -> set[tuple[str, str]]:
        if not held or not self.settings.restart_keep_ms:
            return set()
        try:
            return await self.leases.keep(held, self.settings.restart_keep_ms)
        except StoreUnavailable as exc:
            log.warning("could not keep %d leases for the restart (%s): they live out their TTL", len(held), exc)
            return set()

    async def gone(self, timeout: float) -> bool:
        """Wait until every closed tab has left (its close frame sent, its session ended), at most
        ``timeout`` seconds: afterwards the server may drop the connections. Whether they all did."""
        deadline = asyncio.get_running_loop().time() + timeout
        # Polled: no part announces the last session's end, and checks 20 ms apart cost nothing.
        while self.workspaces.counts().connections:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True
