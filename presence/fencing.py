"""Fencing helpers for app backends: reject writes from a holder that lost its lease.

Every grant of a lease comes with a fence, a number that strictly grows per workspace. The
browser sends the fence it was granted along with each save; the app backend checks it before
writing (or, better, makes the write itself conditional, see the README's SQL pattern):

    guard = FenceGuard(redis.Redis.from_url(url), prefix="presence")
    guard.check("doc-1", fence)          # raises StaleFence unless fence holds the lease now

or, without access to Redis, through the server's API:

    guard = HttpFenceGuard("https://presence.example", api_key="...")
    guard.check("doc-1", fence)
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any, Protocol

from .gateway.keys import lease_key


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
