"""Fencing helpers for app backends: reject writes from a holder that lost its lease.

Every grant of a lease comes with a fence, a number that strictly grows per workspace. The
browser sends the fence it was granted along with each save; the app backend checks it before
writing (or, better, makes the write itself conditional, see the README's SQL pattern):

    guard = FenceGuard(redis.Redis.from_url(url), prefix="presence")
    guard.check("doc-1", fence)          # raises StaleFence unless fence holds the lease now

or, without access to Redis, through the server's API:

    guard = HttpFenceGuard("https://presence.example", api_key="...")
    guard.check("doc-1", fence)

A backend job takes the lease itself, as a service holder, for the length of a ``with`` block:

    with ServiceLease("https://presence.example", "...", "doc-1", "import", name="Nightly import") as lease:
        for row in rows:
            lease.check()                # raises LeaseLost once a person took the document over
            write(row, fence=lease.fence)

It renews the lease in the background (every third of its TTL), releases it on exit, and raises
:class:`LeaseLost` on exit when it was lost during the block (taken over, or expired because the
renewals could not get through), so the job learns its writes may have raced someone else's.
``check()`` keeps its own deadline from the last renewal that got through, so it raises once the
lease may have expired even while the server cannot be reached at all.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
import urllib.request
from types import TracebackType
from typing import Any, Protocol

import msgspec

from .gateway.keys import lease_key
from .httpcall import CallFailed, HttpCall

__all__ = ["FenceGuard", "HttpFenceGuard", "LeaseBusy", "LeaseLost", "ServiceLease", "StaleFence"]


class StaleFence(Exception):
    """The fence does not hold the workspace's lease (any more): refuse the write."""

    def __init__(self, workspace: str, fence: int, current: int | None) -> None:
        self.workspace = workspace
        self.fence = fence
        self.current = current
        held = f"fence {current} holds it now" if current is not None else "nobody holds it now"
        super().__init__(f"stale fence {fence} for workspace {workspace!r}: {held}")


class _SyncRedis(Protocol):
    def get(self, name: str) -> Any: ...


class FenceGuard:
    """Checks fences against Redis directly (a single GET of the lease key)."""

    def __init__(self, redis: _SyncRedis, prefix: str = "presence") -> None:
        self.redis = redis
        self.prefix = prefix

    def current(self, workspace: str) -> int | None:
        value = self.redis.get(lease_key(self.prefix, workspace))
        if value is None:
            return None
        return int(value.decode() if isinstance(value, bytes) else value)

    def check(self, workspace: str, fence: int) -> None:
        current = self.current(workspace)
        if current != fence:
            raise StaleFence(workspace, fence, current)


class HttpFenceGuard:
    """Checks fences through ``GET /api/v1/workspaces/{id}/lease`` (API key)."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def lease(self, workspace: str) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/workspaces/{urllib.parse.quote(workspace, safe='')}/lease"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            body: dict[str, Any] = json.load(resp)
        return body

    def current(self, workspace: str) -> int | None:
        fence = self.lease(workspace).get("fence")
        return None if fence is None else int(fence)

    def check(self, workspace: str, fence: int) -> None:
        current = self.current(workspace)
        if current != fence:
            raise StaleFence(workspace, fence, current)


class LeaseBusy(Exception):
    """Someone else holds the lease (``holder`` as tabs see it; ``retry_ms`` in a takeover cooldown)."""

    def __init__(self, workspace: str, holder: dict[str, Any] | None, retry_ms: int | None = None) -> None:
        self.workspace = workspace
        self.holder = holder
        self.retry_ms = retry_ms
        who = (holder or {}).get("user", {}).get("name", "someone")
        super().__init__(f"workspace {workspace!r} is held by {who}")


class LeaseLost(Exception):
    """The service's lease ended before the job released it: taken over, or expired."""

    def __init__(self, workspace: str, fence: int, holder: dict[str, Any] | None) -> None:
        self.workspace = workspace
        self.fence = fence
        self.holder = holder
        why = f"{holder.get('user', {}).get('name', 'someone')} holds it now" if holder else "it expired"
        super().__init__(f"lost the lease of {workspace!r} (fence {fence}): {why}")


class _Granted(msgspec.Struct):
    fence: int
    ttl_ms: int | None = None


class _Refused(msgspec.Struct):
    holder: dict[str, Any] | None = None
    retry_ms: int | None = None


_MAX_ANSWER = 64 * 1024  # the API's answers are a few hundred bytes


class ServiceLease:
    """Holds a workspace's lease (or, with ``lock``, one of its named locks) as service
    ``svc:<holder_id>`` for a ``with`` block (see above).

    ``takeover=True`` takes it even from a person (they are told, as for any takeover). Thread-safe
    reads of ``fence`` and ``lost``; the renewal runs on a daemon thread that exits with the block.

    The lease counts as lost, whatever the renewals do, once its local deadline passes: the time
    the last confirmed grant or renewal was *sent*, plus its TTL, minus ``margin_ms`` (default a
    tenth of the TTL, 100 ms to 2 s: time for the write that follows a ``check()``). Redis counts
    the TTL from a later moment, when it ran the renewal, so ``check()`` never passes once the
    lease may have expired, even while a renewal hangs, is cut short or cannot connect.
    ``timeout`` bounds each HTTP call as a whole (however slowly an answer trickles in).
    """

    def __init__(
        self, base_url: str, api_key: str, workspace: str, holder_id: str, name: str | None = None,
        ttl_ms: int = 15000, takeover: bool = False, timeout: float = 5.0, margin_ms: int | None = None,
        lock: str = "",
    ) -> None:
        where = f"locks/{urllib.parse.quote(lock, safe='')}" if lock else "lease"
        self.url = f"{base_url.rstrip('/')}/api/v1/workspaces/{urllib.parse.quote(workspace, safe='/')}/{where}"
        self.lock = lock
        self.api_key = api_key
        self.workspace = workspace
        self.holder = {"id": holder_id, "name": name or holder_id}
        self.ttl_ms = ttl_ms
        self.takeover = takeover
        self.timeout = timeout
        self.margin_s = (max(100, min(2000, ttl_ms // 10)) if margin_ms is None else margin_ms) / 1000
        self.fence = 0
        self.lost: LeaseLost | None = None
        self.last_error: BaseException | None = None  # why the last renewal was not confirmed
        self._deadline = -float("inf")  # monotonic; only grows
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _call(
        self, method: str, body: dict[str, Any] | None = None, query: str = "", deadline_s: float | None = None
    ) -> tuple[int, bytes]:
        """The status (2xx or 409) and body of one call; ``CallFailed`` for anything else."""
        call = HttpCall(
            method, self.url + query, deadline_s=self.timeout if deadline_s is None else deadline_s,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body).encode(), max_bytes=_MAX_ANSWER,
        )
        answer = call.run()
        if answer.status != 409 and not 200 <= answer.status < 300:
            raise CallFailed(f"{method} {self.url}: HTTP {answer.status} {answer.body[:200]!r}")
        return answer.status, answer.body

    def _confirmed(self, sent: float, body: bytes) -> None:
        """A grant or renewal sent at ``sent`` (monotonic) went through: move the deadline."""
        granted = msgspec.json.decode(body, type=_Granted)
        ttl_ms = self.ttl_ms if granted.ttl_ms is None else granted.ttl_ms
        with self._lock:
            self._deadline = max(self._deadline, sent + ttl_ms / 1000 - self.margin_s)

    def _lose(self, refused: bytes | None) -> LeaseLost:
        holder = None
        if refused is not None:
            with contextlib.suppress(ValueError):
                holder = msgspec.json.decode(refused, type=_Refused).holder
        with self._lock:
            if self.lost is None:
                self.lost = LeaseLost(self.workspace, self.fence, holder)
            return self.lost

    def _expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def __enter__(self) -> ServiceLease:
        sent = time.monotonic()
        status, body = self._call("POST", {"holder": self.holder, "ttl_ms": self.ttl_ms, "takeover": self.takeover})
        if status == 409:
            refused = msgspec.json.decode(body, type=_Refused)
            raise LeaseBusy(self.workspace, refused.holder, refused.retry_ms)
        self.fence = msgspec.json.decode(body, type=_Granted).fence
        self._confirmed(sent, body)
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.workspace}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            if self.lost is not None:
                return
            left = self._deadline - time.monotonic()
            if left <= 0:
                self._lose(None)  # no renewal got through in time: it may have expired
                return
            sent = time.monotonic()
            try:
                # A renewal answered after the deadline is of no use: it gets no longer than that.
                status, body = self._call("PUT", {"fence": self.fence, "ttl_ms": self.ttl_ms},
                                          deadline_s=min(self.timeout, left))
                if status == 409:
                    self._lose(body)
                    return
                self._confirmed(sent, body)
            except Exception as exc:
                # Whatever failed (cut, hung, refused, a garbled answer), the renewal is merely
                # unconfirmed: the deadline, not this thread dying, ends the lease.
                self.last_error = exc

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease was lost or may have expired (call it before each write)."""
        if self.lost is None and self._expired():
            self._lose(None)
        if self.lost is not None:
            raise self.lost

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # each call it makes is bounded by ``timeout``
        if self.lost is None and self._expired():
            self._lose(None)
        if self.lost is None:
            try:
                status, body = self._call("DELETE", query=f"?fence={self.fence}")
            except CallFailed:
                if exc is not None:
                    return  # the block's own error matters more; the lease expires by its TTL
                raise
            if status == 409:
                self._lose(body)
        if self.lost is not None and exc is None:
            raise self.lost
