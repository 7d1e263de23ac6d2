"""Service holders: backend jobs (an import, a migration, an agent) take the same lease as people.

    POST   /api/v1/workspaces/{id}/lease  {holder: {id, name}, ttl_ms?, takeover?}
           -> 201 {fence, ttl_ms}, or 409 {holder} (409 {holder, retry_ms} in a takeover cooldown)
    PUT    /api/v1/workspaces/{id}/lease  {fence, ttl_ms?}  -> 200 {fence, ttl_ms}, or 409 {holder}
    DELETE /api/v1/workspaces/{id}/lease?fence=N            -> 200 {released: true}, or 409 {holder}

The job holds the lease as user ``svc:<id>`` (tab ``svc:<id>``): tabs see ``{id: "svc:<id>", name,
service: true}`` with the usual busy, queue, request and takeover behaviour, and the audit log records
it like any holder. Nothing renews a service's lease but the job itself (PUT, which replaces the TTL);
a tab that takes it over, a request that times out or an expiry ends it, and the job learns it at its
next renewal (409). Taking again with the same holder id answers the same fence (a retried POST).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..auth import MAX_NAME, MAX_SUB, is_text
from ..core import outcomes as r
from ..core.replica import Replica
from ..errors import StoreUnavailable
from ..gateway.leases import LeaseScripts
from ..settings import Settings
from ..wire.messages import SERVICE_PREFIX, valid_workspace

MIN_TTL_MS = 500  # below this a renewal cannot keep up with a network hiccup
MAX_TTL_MS = 3_600_000  # an hour: a crashed job must not block a document for longer
MAX_BODY = 4096


class ServiceHolder(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str | None = None


class Take(msgspec.Struct, forbid_unknown_fields=True):
    holder: ServiceHolder
    ttl_ms: int | None = None
    takeover: bool = False


class Renew(msgspec.Struct, forbid_unknown_fields=True):
    fence: int
    ttl_ms: int | None = None


def _bad(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


def _unavailable() -> Response:
    return JSONResponse({"error": "Redis unavailable, retry later"}, status_code=503)


class ServiceLeases:
    """The three handlers; ``refused`` answers a request without the API key (None: allowed)."""

    def __init__(
        self, settings: Settings, leases: LeaseScripts, refused: Callable[[Request], Response | None]
    ) -> None:
        self.settings = settings
        self.leases = leases
        self.refused = refused

    async def _body(self, request: Request, kind: type[Take] | type[Renew]) -> Take | Renew | Response:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _bad(f"the body is larger than {MAX_BODY} bytes")
        try:
            return msgspec.json.decode(raw or b"{}", type=kind)
        except msgspec.DecodeError as exc:
            return _bad(f"invalid body: {exc}")

    def _ttl(self, ttl_ms: int | None) -> int | Response:
        ttl = self.settings.lease_ttl_ms if ttl_ms is None else ttl_ms
        if not MIN_TTL_MS <= ttl <= MAX_TTL_MS:
            return _bad(f"ttl_ms must be between {MIN_TTL_MS} and {MAX_TTL_MS}")
        return ttl

    async def _holder(self, workspace: str, status: int = 409, **extra: object) -> Response:
        """The current holder (after a refusal), as tabs see it."""
        replica = Replica(workspace)
        replica.reset(await self.leases.read(workspace), force=True)
        view = replica.holder_view(with_fence=False)
        return JSONResponse({"holder": msgspec.to_builtins(view), **extra}, status_code=status)

    def _workspace(self, request: Request) -> str | None:
        ws: str = request.path_params["workspace"]
        return ws if valid_workspace(ws) else None

    async def take(self, request: Request) -> Response:
        if (refused := self.refused(request)) is not None:
            return refused
        if (workspace := self._workspace(request)) is None:
            return _bad("invalid workspace id")
        body = await self._body(request, Take)
        if isinstance(body, Response):
            return body
        assert isinstance(body, Take)
        h = body.holder
        name = h.name or h.id
        if not h.id or len(h.id) > MAX_SUB - len(SERVICE_PREFIX) or not is_text(h.id):
            return _bad(f"holder.id must be 1-{MAX_SUB - len(SERVICE_PREFIX)} characters")
        if len(name) > MAX_NAME or not is_text(name):
            return _bad(f"holder.name must be at most {MAX_NAME} characters")
        ttl = self._ttl(body.ttl_ms)
        if isinstance(ttl, Response):
            return ttl
        user = SERVICE_PREFIX + h.id
        try:
            if body.takeover:
                taken = await self.leases.takeover(workspace, user, name, user, "", ttl_ms=ttl)
                match taken.reply:
                    case r.Cooldown(retry_ms=retry_ms):
                        return await self._holder(workspace, retry_ms=retry_ms)
                    case r.Granted() | r.TakenOver() | r.Rejoined() as grant:
                        return JSONResponse({"fence": grant.fence, "ttl_ms": ttl}, status_code=201)
            else:
                out = await self.leases.acquire(workspace, user, name, user, "", ttl_ms=ttl)
                match out.reply:
                    case r.Granted() | r.Rejoined() as grant:
                        return JSONResponse({"fence": grant.fence, "ttl_ms": ttl}, status_code=201)
            return await self._holder(workspace)
        except StoreUnavailable:
            return _unavailable()

    async def renew(self, request: Request) -> Response:
        if (refused := self.refused(request)) is not None:
            return refused
        if (workspace := self._workspace(request)) is None:
            return _bad("invalid workspace id")
        body = await self._body(request, Renew)
        if isinstance(body, Response):
            return body
        assert isinstance(body, Renew)
        ttl = self._ttl(body.ttl_ms)
        if isinstance(ttl, Response):
            return ttl
        try:
            if await self.leases.renew(workspace, body.fence, ttl):
                return JSONResponse({"fence": body.fence, "ttl_ms": ttl})
            return await self._holder(workspace)
        except StoreUnavailable:
            return _unavailable()

    async def release(self, request: Request) -> Response:
        if (refused := self.refused(request)) is not None:
            return refused
        if (workspace := self._workspace(request)) is None:
            return _bad("invalid workspace id")
        raw = request.query_params.get("fence", "")
        if not raw.isdigit() or len(raw) > 18:
            return _bad("name the fence to release: ?fence=<the fence of your grant>")
        try:
            out = await self.leases.release(workspace, int(raw), "released")
            if isinstance(out.reply, r.Relinquished):
                return JSONResponse({"released": True})
            return await self._holder(workspace)
        except StoreUnavailable:
            return _unavailable()
