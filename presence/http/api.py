"""API: the HTTP surface for app backends (``/api/v1``), behind ``PRESENCE_API_KEY``.

``GET /api/v1/workspaces/{id}/lease`` answers who holds a workspace's lease, its fence and the
time left, so a backend can validate the fence a browser sends with a save
(``GET /api/v1/workspaces/{id}/locks/{lock}``: the same of a named lock);
``GET /api/v1/leases?workspace=a&workspace=b`` answers the same (and the number of viewing users)
for up to 500 workspaces at once, read in one pipelined round trip (a list page's first paint);
``POST /api/v1/leases`` with ``{"workspaces": [...]}`` is the same read for ids too many or too long
for a URL (500 ids of 200 characters are about 100 KB). A peer that keeps
presenting wrong API keys is slowed down (:mod:`presence.http.keyguard`).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import auth
from ..core.lease_view import lease_view
from ..engine.services import ServiceCommands
from ..errors import BadMessage, StoreUnavailable
from ..gateway.leases import LeaseScripts
from ..settings import Settings
from ..wire.messages import valid_workspace
from .bodies import capped_body
from .keyguard import KeyGuard
from .services import ServiceLeases, target

MAX_BATCH = 500  # workspaces per GET /api/v1/leases: one pipelined read, bounded
# 500 ids of 200 characters, each escaped at worst to twice its length ("\/"), with room to spare.
MAX_BATCH_BODY = 256 * 1024


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

    def refused(self, request: Request) -> Response | None:
        """The answer to a request without the API key (or from a peer slowed down); None if allowed."""
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
        return None

    async def lease(self, request: Request) -> Response:
        if (refused := self.refused(request)) is not None:
            return refused
        try:
            workspace, lock = target(request)
        except BadMessage as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            snapshot = await self.leases.read(workspace)
        except StoreUnavailable:
            return JSONResponse({"error": "Redis unavailable, retry later"}, status_code=503)
        named = {"lock": lock} if lock else {}
        return JSONResponse({"workspace": workspace, **named, **msgspec.to_builtins(lease_view(snapshot, lock))})

    async def many(self, request: Request) -> Response:
        """``GET /api/v1/leases?workspace=a&workspace=b``, or ``POST /api/v1/leases`` with
        ``{"workspaces": ["a", "b"]}`` (ids that would not fit in a URL): many leases in one round trip."""
        if (refused := self.refused(request)) is not None:
            return refused
        if request.method == "POST":
            named = await _named_in_body(request)
            if isinstance(named, Response):
                return named
        else:
            named = request.query_params.getlist("workspace")
        wanted = list(dict.fromkeys(named))  # once each, in order
        if not wanted:
            return JSONResponse({"error": "name at least one workspace: ?workspace=a&workspace=b, or POST "
                                          '{"workspaces": ["a", "b"]}'}, status_code=400)
        if len(wanted) > MAX_BATCH:
            return JSONResponse({"error": f"at most {MAX_BATCH} workspaces per request"}, status_code=400)
        if bad := [ws for ws in wanted if not valid_workspace(ws)]:
            return JSONResponse({"error": f"invalid workspace id: {bad[0][:200]!r}"}, status_code=400)
        try:
            snapshots = await self.leases.read_many(wanted)
        except StoreUnavailable:
            return JSONResponse({"error": "Redis unavailable, retry later"}, status_code=503)
        return JSONResponse({"leases": {ws: msgspec.to_builtins(lease_view(snapshots[ws])) for ws in wanted}})


class BatchRead(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/leases``."""

    workspaces: list[str]


async def _named_in_body(request: Request) -> list[str] | Response:
    raw = await capped_body(request, MAX_BATCH_BODY)
    if raw is None:
        return JSONResponse({"error": f"the body is larger than {MAX_BATCH_BODY} bytes"}, status_code=413)
    try:
        body = msgspec.json.decode(raw, type=BatchRead)
    except (msgspec.DecodeError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, msgspec.DecodeError) else "JSON is nested too deeply"
        return JSONResponse({"error": f'the body must be {{"workspaces": ["id", ...]}}: {why}'}, status_code=400)
    return body.workspaces


def routes(settings: Settings, leases: LeaseScripts, keyguard: KeyGuard) -> list[BaseRoute]:
    api = Api(settings, leases, keyguard)
    jobs = ServiceLeases(ServiceCommands(leases, settings.lease_ttl_ms, settings.key_idle_ms), api.refused)
    routes: list[BaseRoute] = [Route("/api/v1/leases", api.many, methods=["GET", "POST"])]
    # A workspace id may contain '/', so a named lock's path is matched first.
    for path in ("/api/v1/workspaces/{workspace:path}/locks/{lock}", "/api/v1/workspaces/{workspace:path}/lease"):
        routes += [
            Route(path, api.lease, methods=["GET"]),
            Route(path, jobs.take, methods=["POST"]),
            Route(path, jobs.renew, methods=["PUT"]),
            Route(path, jobs.release, methods=["DELETE"]),
        ]
    return routes
