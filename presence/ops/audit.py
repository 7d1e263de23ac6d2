"""Audit log: every lease change, durably, in the Redis Stream ``<prefix>:audit``; forced changes
also in ``<prefix>:audit:forced``.

The lease scripts call :meth:`AuditLog.on_events` (a lease observer) synchronously for each event published by a
script *this* process ran, so every change is recorded exactly once across all processes. The
observer does no I/O: it appends to a bounded buffer (overflow drops the oldest entry, counted
and logged) and one writer task flushes it with pipelined ``XADD ... MAXLEN ~ N``. The stream is
a global key, never touched by a workspace script (on Redis Cluster it sits in its own slot).

Retention. Each stream keeps about ``PRESENCE_AUDIT_MAX_LEN`` entries, the newest. Routine
changes (``acquired``, ``released``) are cheap to make by the thousand: a user acquiring and
releasing in a loop would push everything else out of a single stream within seconds. So the
changes made *to* a holder rather than by it, :data:`FORCED_KINDS` (takeovers, revocations,
expiries, idle releases), are written to the forced stream as well, which routine churn never
touches: the record of who took a lease from whom survives any amount of acquire/release churn.

Entry fields (all strings in Redis; :func:`decode` types them): ``kind`` (acquired, released,
taken_over, expired, revoked, idle), ``workspace``, ``user``/``name``/``tab`` (the new holder for
acquired and taken_over, the ended holder otherwise), ``fence``, ``at`` (Redis time, ms),
``held_ms`` (how long the ended holder held it), ``from_*`` (the replaced holder of a takeover),
``reason``, ``by_id``/``by_name``, ``note`` (an operator's words), ``server``, ``origin`` (the conn
whose request made the change), ``handoff`` (the conn a lease was handed to from the queue),
``service`` ("1" when that holder is a backend job: user ``svc:<id>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from ..core.events import Event, LeaseEvent
from ..gateway.backoff import Backoff
from ..gateway.gateway import Gateway
from ..settings import Settings
from ..tasks import Service
from ..wire.messages import SERVICE_PREFIX
from .metrics import Metrics

log = logging.getLogger("presence.audit")

BATCH = 200  # entries per pipelined round trip
BUFFER = 10_000  # entries kept while Redis is slow or down; then the oldest are dropped

note: ContextVar[str] = ContextVar("audit_note", default="")
"""Set by an operator action before it runs its script: the observer runs synchronously inside
that script call, in the same task, so the note lands on exactly the entries that action made."""

_INT_FIELDS = ("fence", "at", "held_ms", "from_fence")

FORCED_KINDS = frozenset({"taken_over", "revoked", "expired", "idle"})
"""Lease changes the holder did not make: also kept in the forced stream."""


def entry(event: Event, workspace: str, server: str) -> dict[str, str] | None:
    """The stream entry for one event, or None when it is not a lease change."""
    if not isinstance(event, LeaseEvent):
        return None
    e = {"kind": event.kind, "workspace": workspace, "at": str(event.at), "server": server}
    if event.lock:
        e["lock"] = event.lock  # a named lock's change (none: the workspace's own lease)
    new, prev = event.holder, event.prev
    subject = new if new is not None else prev
    if subject is not None:
        e.update(user=subject.user, name=subject.name, tab=subject.tab, fence=str(subject.fence))
        if subject.user.startswith(SERVICE_PREFIX):
            e["service"] = "1"  # a backend job's hold (POST /api/v1/workspaces/{id}/lease)
    elif event.user is not None:
        e.update(user=event.user.id, name=event.user.name)
    if prev is not None:
        e["held_ms"] = str(max(0, event.at - prev.since))
        if new is not None:
            e.update(from_user=prev.user, from_name=prev.name, from_fence=str(prev.fence))
    if event.reason:
        e["reason"] = event.reason
    if event.by is not None:
        e.update(by_id=event.by.id, by_name=event.by.name)
    if event.origin:
        e["origin"] = event.origin
    if event.handoff:
        e["handoff"] = event.handoff  # granted from the wait queue or a handoff request, to this conn
    if text := note.get():
        e["note"] = text
    return e


def decode(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entry_id, **fields}
    for name in _INT_FIELDS:
        if name in out:
            with contextlib.suppress(ValueError):
                out[name] = int(out[name])
    return out


class AuditLog(Service):
    """Lifecycle: ``observe`` may be called any time; ``start()`` spawns the writer; ``stop()``
    flushes what is buffered (bounded wait) and ends the writer. Idempotent."""

    name = "audit writer"
    crash_message = "the audit writer died; lease events are no longer recorded"

    def __init__(
        self, gateway: Gateway, key: str, forced_key: str, settings: Settings, server_id: str, metrics: Metrics,
    ) -> None:
        super().__init__()
        self.gateway = gateway
        self.server_id = server_id
        self.metrics = metrics
        self.key = key
        self.forced_key = forced_key
        self.max_len = settings.audit_max_len
        # fakeredis ignores '~' (it never trims approximately): trim exactly there.
        self.approximate = not settings.embedded
        self.buffer: deque[dict[str, str]] = deque()
        self.capacity = BUFFER
        self.dropped = 0
        self.written = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is buffered or in flight
        self._idle.set()
        self._stopping = False
        self._last_drop_log = 0.0

    # -- recording (synchronous, no I/O) ----------------------------------------------------

    def on_events(self, workspace: str, events: Sequence[Event]) -> None:
        for event in events:
            e = entry(event, workspace, self.server_id)
            if e is not None:
                self._push(e)
        if self.buffer:
            self._idle.clear()
            self._wake.set()

    def _push(self, e: dict[str, str]) -> None:
        if len(self.buffer) >= self.capacity:
            self.buffer.popleft()
            self._dropped(1)
        self.buffer.append(e)

    def _dropped(self, n: int) -> None:
        self.dropped += n
        self.metrics.audit_dropped.inc(n)
        now = time.monotonic()
        if now - self._last_drop_log > 10:  # one line per 10 s, not one per entry
            self._last_drop_log = now
            log.error("audit buffer full (%d): dropped %d entries so far", self.capacity, self.dropped)

    # -- writing ----------------------------------------------------------------------------

    async def stop(self, timeout: float = 3.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.error("audit: %d entries not written at shutdown (Redis too slow)", len(self.buffer))
        except Exception:
            pass  # already logged by Service._crashed

    async def run(self) -> None:
        backoff = Backoff(base=0.05, cap=5.0)
        while True:
            if not self.buffer:
                self._idle.set()
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                # What woke us was a script's events, whose reply is on its way to a tab in this
                # same turn of the loop: let it go out first, the entries follow in the next turn.
                await asyncio.sleep(0)
                continue
            # Take the batch out of the buffer first: overflow while we wait must not drop it.
            batch = [self.buffer.popleft() for _ in range(min(BATCH, len(self.buffer)))]
            try:
                await self._write(batch)
            except Exception:
                delay = backoff.next_delay()
                log.exception("audit: writing %d entries failed; retrying in %.2fs", len(batch), delay)
                self._requeue(batch)
                if self._stopping:
                    log.error("audit: %d entries not written at shutdown", len(self.buffer))
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested(), delay)  # a stop cuts the wait short
                continue
            backoff.reset()
            self.written += len(batch)
            self.metrics.audit_written.inc(len(batch))

    async def _stop_requested(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    def _requeue(self, batch: list[dict[str, str]]) -> None:
        """Put a failed batch back in front, still within capacity (the oldest go first)."""
        room = self.capacity - len(self.buffer)
        keep = batch[-room:] if room > 0 else []
        if len(keep) < len(batch):
            self._dropped(len(batch) - len(keep))
        self.buffer.extendleft(reversed(keep))

    async def _write(self, batch: list[dict[str, str]]) -> None:
        writes = []
        for e in batch:
            writes.append((self.key, e))
            if e["kind"] in FORCED_KINDS:
                writes.append((self.forced_key, e))
        await self.gateway.append(writes, self.max_len, self.approximate)

    async def drain(self) -> None:
        """Return once everything observed so far is written (or dropped)."""
        await self._idle.wait()

    # -- reading ----------------------------------------------------------------------------

    async def page(self, before: str | None, limit: int, forced: bool = False) -> list[dict[str, Any]]:
        """Up to ``limit`` entries older than ``before`` (a stream id; None: the newest), newest
        first; from the forced stream when ``forced``."""
        key = self.forced_key if forced else self.key
        return [decode(i, f) for i, f in await self.gateway.newest(key, before, limit)]

    async def after(self, last: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` entries newer than stream id ``last``, oldest first."""
        return [decode(i, f) for i, f in await self.gateway.after(self.key, last, limit)]
