"""Server: the composition root of one server process.

It builds every part once, at start-up, and hands each only the collaborators (or callables) it
uses; no part builds another. Data flows one way:

    WebSocket -> connection (connections) -> lease commands (engine) -> lease scripts (gateway,
    Redis) -> workspace core (sans I/O) -> effects -> outboxes (connections)
    pub/sub (gateway) -> router (engine: decoded once) -> workspaces and watch index -> the same core

The ops plane (metrics, audit log, registry, control, overview) observes lease events and reads
counts; the serving parts report to it through the telemetry interface and never import it.

Lifecycle: ``await start()`` (never fails because Redis is down: it recovers by itself), serve,
``await stop()`` (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from .connections.admission import Admission
from .connections.endpoint import Endpoint
from .core.policy import Policy
from .drain import RESTARTING, Drain
from .engine.channels import SharedChannels
from .engine.commands import LeaseCommands
from .engine.heartbeat import Heartbeat
from .engine.router import Router
from .engine.sweeper import Sweeper
from .engine.watchers import WatchIndex
from .engine.workspaces import Workspaces
from .errors import Restarting, StoreUnavailable
from .gateway.gateway import Gateway
from .gateway.keys import Keys
from .gateway.leases import LeaseScripts
from .gateway.pubsub import Subscriptions
from .ops.audit import AuditLog
from .ops.control import Control
from .ops.metrics import Metrics
from .ops.overview import Overview
from .ops.registry import Registry, Vitals
from .settings import Settings
from .signing import token_keys
from .tasks import TaskSet

log = logging.getLogger("presence.server")

READINESS_BUDGET_S = 0.5
"""The longest /readyz waits on Redis (/healthz never does): an orchestrator's probe gets an answer at once."""


def policy_of(settings: Settings) -> Policy:
    """The values the workspace core reads, from the process's settings."""
    s = settings
    return Policy(
        lease_ttl_ms=s.lease_ttl_ms, lease_scope=s.lease_scope, heartbeat_ms=s.heartbeat_ms,
        safety_margin_ms=s.safety_margin_ms, update_window_ms=s.update_window_ms,
        handoff_timeout_ms=s.handoff_timeout_ms, handoff_takeover=s.handoff_takeover,
        idle_release_ms=s.idle_release_ms, wait_replicas=s.redis_wait_replicas > 0,
        meta_interval_ms=s.meta_interval_ms,
        # The event loop's clock is CLOCK_MONOTONIC (asyncio's and uvloop's alike).
        clock_offset_s=time.time() - time.monotonic(),
    )


class Server:
    """The parts of one process (all attributes are fixed after construction)."""

    def __init__(self, settings: Settings, client: Any | None = None, server_id: str | None = None) -> None:
        self.settings = settings
        self.server_id = server_id or secrets.token_hex(4)
        self.stopping = False
        self._stopped = False
        self._conn_seq = 0
        self.keys = Keys(settings.key_prefix)
        self.tasks = TaskSet()
        self.metrics = Metrics(
            self.server_id, lambda: self.workspaces.counts(), lambda: self.ready,
            lambda: (len(self.endpoint.watchers), len(self.watch_index)),
        )
        self.gateway = Gateway(settings, client, self.metrics)
        self.leases = LeaseScripts(self.gateway, settings, self.keys)
        self.subscriptions = Subscriptions(
            self.gateway.client, self.gateway.cluster, self.keys.control,
            lambda channel, data: self.router.on_message(channel, data),
            lambda channel: self.router.on_resubscribed(channel),
        )
        # Tabs and watchers share the workspace channels: each unsubscribes only its own interest.
        channels = SharedChannels(self.subscriptions)
        self.workspaces = Workspaces(
            policy_of(settings), self.server_id, self.gateway, self.leases, self.keys, channels.share("tabs"),
            self.tasks, self.metrics,
        )
        self.watch_index = WatchIndex(
            settings.heartbeat_ms, settings.max_watched, self.leases, self.keys, channels.share("watchers"), self.tasks
        )
        self.admission = Admission(settings.max_tabs_per_user, settings.user_rate_limit, settings.user_rate_burst)
        self.tokens = token_keys(settings)
        self.commands = LeaseCommands(self.workspaces, self.leases, self.metrics)
        self.heartbeat = Heartbeat(settings, self.workspaces, self.leases, self.gateway, self.tasks, self.metrics)
        self.endpoint = Endpoint(
            settings, self.admission, self.workspaces, self.commands, self.metrics, self._next_conn, self.tokens,
            self.watch_index,
        )
        # The ops plane: it observes this process's lease events and reads its counts.
        self.audit = AuditLog(
            self.gateway, self.keys.audit, self.keys.audit_forced, settings, self.server_id, self.metrics
        )
        self.registry = Registry(settings, self.server_id, self.gateway, self.keys.registry, self._vitals)
        self.control = Control(self.server_id, self.keys.control, self.gateway, self.workspaces.close_tab)
        self.sweeper = Sweeper(settings.heartbeat_ms, settings.lease_ttl_ms, self.leases, self.workspaces.ids)
        self.router = Router(self.keys.control, self.control.on_message, [self.workspaces, self.watch_index])
        self.overview = Overview(self.gateway, self.leases, self.registry)
        self.leases.observers += [self.metrics, self.audit, self.sweeper]
        self.drainer = Drain(settings, self.workspaces, self.leases, self.heartbeat, self.endpoint)

    def _next_conn(self) -> str:
        self._conn_seq += 1
        return f"{self.server_id}-{self._conn_seq}"

    def _vitals(self) -> Vitals:
        return Vitals(
            self.workspaces.counts(), self.workspaces.ids(), self.ready, self.stopping,
            len(self.audit.buffer), self.audit.dropped, self.metrics.summary(),
        )

    @property
    def ready(self) -> bool:
        return self.gateway.scripts_loaded and self.subscriptions.connected

    async def readiness(self) -> dict[str, object]:
        """What /readyz answers; ``ok`` when Redis answers, scripts are loaded, pub/sub is up."""
        redis_ok = await self.gateway.ping(READINESS_BUDGET_S)
        return {
            "ok": redis_ok and self.ready and not self.stopping, "redis": redis_ok,
            "scripts": self.gateway.scripts_loaded, "pubsub": self.subscriptions.connected,
            "server": self.server_id, "stopping": self.stopping,
        }

    async def start(self) -> None:
        try:
            await self.gateway.start()
        except StoreUnavailable as exc:
            log.error("Redis unavailable at start-up (%s); serving 1013 until it answers", exc)
        await self.tokens.prepare()
        self.subscriptions.start()
        self.heartbeat.start()
        self.audit.start()
        self.registry.start()
        self.sweeper.start()

    async def drain(self) -> None:
        """Take no more tabs, keep the leases of the tabs here for the restart grace and close
        them with 1012 (:mod:`presence.drain`). Idempotent; the first step of :meth:`stop`, which
        ``presence serve`` takes before uvicorn drops the connections."""
        if self.stopping:
            return
        self.stopping = True
        self.admission.close()
        await self.drainer.run()

    async def stop(self) -> None:
        """Drain, stop background work and wait for it. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.drain()
        await self.workspaces.stop(Restarting.close_code, RESTARTING)
        await self.heartbeat.stop()
        await self.subscriptions.stop()
        await self.tasks.close()
        await self.tokens.stop()
        # After the tabs are gone (their last events are buffered), before the gateway closes.
        await self.sweeper.stop()
        await self.registry.stop()
        await self.audit.stop()  # flushes the audit log: needs Redis
        await self.gateway.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop())
