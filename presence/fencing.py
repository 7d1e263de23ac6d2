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
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from types import TracebackType
from typing import Any, Protocol

from .gateway.keys import lease_key

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


class ServiceLease:
    """Holds a workspace's lease as service ``svc:<holder_id>`` for a ``with`` block (see above).

    ``takeover=True`` takes it even from a person (they are told, as for any takeover). Thread-safe
    reads of ``fence`` and ``lost``; the renewal runs on a daemon thread that exits with the block.
    """

    def __init__(
        self, base_url: str, api_key: str, workspace: str, holder_id: str, name: str | None = None,
        ttl_ms: int = 15000, takeover: bool = False, timeout: float = 5.0,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/api/v1/workspaces/{urllib.parse.quote(workspace, safe='/')}/lease"
        self.api_key = api_key
        self.workspace = workspace
        self.holder = {"id": holder_id, "name": name or holder_id}
        self.ttl_ms = ttl_ms
        self.takeover = takeover
        self.timeout = timeout
        self.fence = 0
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _call(self, method: str, body: dict[str, Any] | None = None, query: str = "") -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        req = urllib.request.Request(self.url + query, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            if err.code != 409:
                raise
            return err.code, json.load(err)

    def __enter__(self) -> ServiceLease:
        status, body = self._call("POST", {"holder": self.holder, "ttl_ms": self.ttl_ms, "takeover": self.takeover})
        if status == 409:
            raise LeaseBusy(self.workspace, body.get("holder"), body.get("retry_ms"))
        self.fence = int(body["fence"])
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.workspace}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                status, body = self._call("PUT", {"fence": self.fence, "ttl_ms": self.ttl_ms})
            except (OSError, ValueError):
                # The server or the network is down: try again at the next third of the TTL, and
                # count the lease lost once a whole TTL passed without a renewal getting through.
                if time.monotonic() - renewed > self.ttl_ms / 1000:
                    self.lost = LeaseLost(self.workspace, self.fence, None)
                    return
                continue
            if status == 409:
                self.lost = LeaseLost(self.workspace, self.fence, body.get("holder"))
                return
            renewed = time.monotonic()

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease was lost (call it before each write)."""
        if self.lost is not None:
            raise self.lost

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is None:
            status, body = self._call("DELETE", query=f"?fence={self.fence}")
            if status == 409:
                self.lost = LeaseLost(self.workspace, self.fence, body.get("holder"))
        if self.lost is not None and exc is None:
            raise self.lost
