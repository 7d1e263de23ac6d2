"""API: the HTTP surface for app backends (``/api/v1``), behind ``PRESENCE_API_KEY``.

``GET /api/v1/workspaces/{id}/lease`` answers who holds a workspace's lease, its fence and the
time left, so a backend can validate the fence a browser sends with a save. A peer that keeps
presenting wrong API keys is slowed down (:mod:`presence.http.keyguard`).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import auth
from ..core.replica import Replica
from ..errors import StoreUnavailable
from ..gateway.leases import LeaseScripts
from ..settings import Settings
from ..wire.messages import valid_workspace
from .keyguard import KeyGuard


def _api_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


class Api:
    def __init__(self, settings: Settings, leases: LeaseScripts, keyguard: KeyGuard) -> None:
        self.api_key = settings.api_key
        self.leases = leases
        self.keyguard = keyguard

    async def lease(self, request: Request) -> Response:
        if self.api_key is None:
            return JSONResponse({"error": "the API is disabled: set PRESENCE_API_KEY"}, status_code=404)
        peer = request.client.host if request.client is not None else None
        if wait := self.keyguard.retry_after(peer):
            return JSONResponse(
                {"error": f"too many wrong API keys from this address; retry in {wait} s"},
                status_code=429, headers={"Retry-After": str(wait)},
            )
        if not auth.same_secret(_api_key(request), self.api_key):
            self.keyguard.failed(peer)
            return JSONResponse(
                {"error": "missing or wrong API key (Authorization: Bearer <PRESENCE_API_KEY>)"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )
        workspace = request.path_params["workspace"]
        if not valid_workspace(workspace):
            return JSONResponse({"error": "invalid workspace id"}, status_code=400)
        try:
            snapshot = await self.leases.read(workspace)
        except StoreUnavailable:
            return JSONResponse({"error": "Redis unavailable, retry later"}, status_code=503)
        replica = Replica(workspace)
        replica.reset(snapshot, force=True)
        h = replica.holder
        return JSONResponse({
            "workspace": workspace,
            "holder": msgspec.to_builtins(replica.holder_view()),
            "fence": None if h is None else h.fence,
            "ttl_ms": max(0, snapshot.ttl_ms) if h is not None else 0,
        })


def routes(settings: Settings, leases: LeaseScripts, keyguard: KeyGuard) -> list[BaseRoute]:
    return [Route("/api/v1/workspaces/{workspace:path}/lease", Api(settings, leases, keyguard).lease)]
