"""Metrics: this process's Prometheus metrics, in a registry the app owns (never the global one,
so several servers in one test process do not collide).

Each ``presence serve`` process is a single uvicorn worker with its own registry at its own
``/metrics``: Prometheus scrapes every process and its ``instance`` label tells them apart, so no
multiprocess mode is needed. Cluster totals are sums over instances, e.g.
``sum(presence_connections)`` or ``sum(rate(presence_lease_events_total{kind="taken_over"}[5m]))``.
Lease events are counted by the process whose Lua script made the change (the lease observers),
so each change is counted exactly once across the fleet.

Gauges of the process's state (connections, workspaces, leases) are read from the serving parts at scrape
time: they cannot drift from the truth the way inc/dec bookkeeping can.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..core.events import LEASE_KINDS, Event
from ..engine.workspaces import Counts
from ..wire.messages import Error, ServerMessage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. Acquire is one script round trip: sub-millisecond on a LAN, seconds when Redis struggles.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TICK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Children:
    """A labelled metric's children by their label values. prometheus_client's ``labels()`` checks
    the values and takes a lock on every call, a few microseconds that every request paid several
    times; the values here come from small fixed sets (script names, message types, codes)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_TYPE_NAMES: dict[type, str] = {}


def _type_name(message: ServerMessage) -> str:
    """A message's type label, lowercased once per type."""
    t = type(message)
    name = _TYPE_NAMES.get(t)
    if name is None:
        name = _TYPE_NAMES[t] = t.__name__.lower()
    return name


class _ProcessState(Collector):
    def __init__(self, server_id: str, counts: Callable[[], Counts], ready: Callable[[], bool]) -> None:
        self.server_id = server_id
        self.counts = counts
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        c = self.counts()
        yield GaugeMetricFamily("presence_connections", "Open tab connections on this process", c.connections)
        yield GaugeMetricFamily("presence_workspaces", "Workspaces with a tab on this process", c.workspaces)
        yield GaugeMetricFamily(
            "presence_leases_held", "Leases (workspaces' own and named locks) held by a tab on this process", c.leases
        )
        yield GaugeMetricFamily("presence_ready", "1 when Redis, scripts and pub/sub are up", int(self.ready()))
        info = GaugeMetricFamily("presence_server", "This process (value 1)", labels=["server", "version"])
        info.add_metric([self.server_id, __version__], 1)
        yield info


class _Watching(Collector):
    """Watchers (list views) on this process and the workspaces they watch, read at scrape time."""

    def __init__(self, watching: Callable[[], tuple[int, int]]) -> None:
        self.watching = watching

    def collect(self) -> Iterator[Metric]:
        watchers, watched = self.watching()
        yield GaugeMetricFamily("presence_watchers", "Open watcher connections (list views) on this process", watchers)
        yield GaugeMetricFamily(
            "presence_watched_workspaces", "Workspaces watched by a watcher on this process (one subscription each)",
            watched,
        )


class Metrics:
    """Everything this process measures: a :class:`~presence.telemetry.Telemetry` for the serving
    parts and a :class:`~presence.core.events.LeaseObserver` of this process's lease changes.
    Gauges come from ``counts`` and ``ready`` at scrape time."""

    def __init__(
        self, server_id: str, counts: Callable[[], Counts], ready: Callable[[], bool],
        watching: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        r.register(_ProcessState(server_id, counts, ready))
        if watching is not None:
            r.register(_Watching(watching))
        self.acquire_seconds = Histogram(
            "presence_acquire_seconds", "Acquire/takeover script latency, by operation and result",
            ["op", "result"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.renew_seconds = Histogram(
            "presence_renew_seconds", "Latency of a heartbeat's batched renew+presence round trip",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.redis_seconds = Histogram(
            "presence_redis_seconds", "Redis command latency (script name, pipeline, audit, registry)",
            ["op"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.tick_seconds = Histogram(
            "presence_heartbeat_tick_seconds", "Duration of one heartbeat tick", buckets=TICK_BUCKETS, registry=r,
        )
        self.lease_events = PromCounter(
            "presence_lease_events", "Lease changes made by this process's scripts, by kind "
            "(acquired, released, taken_over, expired, revoked, idle) and by lease (workspace: a "
            "workspace's own lease; named: a named lock)", ["kind", "lease"], registry=r,
        )
        self.errors = PromCounter("presence_errors", "error messages sent to tabs, by code", ["code"], registry=r)
        self.closes = PromCounter(
            "presence_closes", "Connections closed by the server, by close code", ["code"], registry=r
        )
        self.messages_in = PromCounter("presence_messages_in", "Frames received, by type", ["type"], registry=r)
        self.messages_out = PromCounter("presence_messages_out", "Messages queued, by type", ["type"], registry=r)
        self.audit_written = PromCounter("presence_audit_written", "Audit entries written", registry=r)
        self.audit_dropped = PromCounter(
            "presence_audit_dropped", "Audit entries dropped because the buffer was full", registry=r
        )
        self._acquire_seconds, self._redis_seconds = _Children(self.acquire_seconds), _Children(self.redis_seconds)
        self._lease_events, self._errors = _Children(self.lease_events), _Children(self.errors)
        self._messages_in, self._messages_out = _Children(self.messages_in), _Children(self.messages_out)
        for kind in LEASE_KINDS:  # present at 0 from the start: rate() needs a baseline
            for lease in ("workspace", "named"):
                self._lease_events(kind, lease)
        # Plain copies for the dashboard (see summary): cheap to read, no registry walk.
        self.event_counts: Counter[str] = Counter()
        self.acquire_buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    # -- telemetry --------------------------------------------------------------------------

    def lease_request(self, op: str, result: str, seconds: float) -> None:
        self._acquire_seconds(op, result).observe(seconds)
        self.acquire_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def redis_latency(self, op: str, seconds: float) -> None:
        self._redis_seconds(op).observe(seconds)

    def tick(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)

    def renewed(self, seconds: float) -> None:
        self.renew_seconds.observe(seconds)

    def message_in(self, kind: str) -> None:
        self._messages_in(kind).inc()

    def message_out(self, message: ServerMessage, count: int = 1) -> None:
        self._messages_out(_type_name(message)).inc(count)
        if isinstance(message, Error):
            self._errors(message.code).inc(count)

    def closed(self, code: int) -> None:
        self.closes.labels(str(code)).inc()

    def on_events(self, workspace: str, events: Sequence[Event]) -> None:
        for event in events:
            if event.lease:
                self._lease_events(event.kind, "named" if event.lock else "workspace").inc()
                self.event_counts[event.kind] += 1

    # -- reading ----------------------------------------------------------------------------

    def summary(self) -> dict[str, object]:
        """Cumulative counters for the server registry; the dashboard plots their differences."""
        return {"events": dict(self.event_counts), "acquire_buckets": list(self.acquire_buckets)}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
