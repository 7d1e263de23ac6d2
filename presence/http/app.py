"""App: the Starlette application (routes and lifespan) around one :class:`~presence.server.Server`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from ..connections.capacity import ConnectionLimit
from ..connections.transport import ExposeTransport
from ..server import Server
from ..settings import Settings
from . import admin, api, dev, openapi
from .keyguard import KeyGuard

log = logging.getLogger("presence.app")


def static_dir() -> Path:
    """The copy inside the installed wheel (``presence/static``), or ``static/`` of the source tree.

    (Not ``importlib.resources.files``: ``static/`` has no ``__init__.py``, and the str() of the
    ``MultiplexedPath`` it returns for such a namespace package is its repr, not a path.)
    """
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "static", package.parent / "static"):
        if (candidate / "presence.js").is_file():
            return candidate
    return package.parent / "static"


def base_url(host: str, port: int) -> str:
    """The URL a person on this machine opens: a wildcard bind address is reached on loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class CachedStatic(StaticFiles):
    """Static files with a short cache lifetime plus ETag revalidation (no stale client after an upgrade)."""

    def file_response(self, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "public, max-age=300, must-revalidate")
        return response


def create_app(settings: Settings, server: Server | None = None) -> Starlette:
    server = server or Server(settings)
    files = static_dir()
    keyguard = KeyGuard()  # wrong admin tokens and API keys, counted together per peer

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.dev_mode:
            log.warning(
                "DEV MODE: no PRESENCE_SECRET set; tokens are signed with a public key and anyone can "
                "mint them (GET /demo/token). Never expose this server."
            )
        if settings.embedded:
            log.warning(
                "embedded store: no PRESENCE_REDIS_URL set; running on in-process fakeredis, "
                "one process only, nothing survives a restart"
            )
        await server.start()
        base = base_url(settings.host, settings.port)
        log.info("presence server %s started on %s (bound to %s:%s; scope %s; %s)", server.server_id, base,
                 settings.host, settings.port, settings.lease_scope, server.tokens.description)
        if settings.dev_mode:
            dashboard = "" if settings.admin_token else " (set PRESENCE_ADMIN_TOKEN and PRESENCE_DEV=1 to use it)"
            for path, what in (("/demo", "the demo editor (open it in two windows)"), ("/", "start page"),
                               ("/dashboard", "operators' dashboard" + dashboard),
                               ("/metrics", "Prometheus metrics")):
                log.info("open %s%s: %s", base, path, what)
        try:
            yield
        finally:
            await server.stop()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def openapi_json(request: Request) -> Response:
        return Response(openapi.render(), media_type="application/json", headers={"Cache-Control": "no-cache"})

    async def readyz(request: Request) -> Response:
        body = await server.readiness()
        ok = body.pop("ok")
        return JSONResponse(body, status_code=200 if ok else 503)

    routes = [
        WebSocketRoute("/ws", server.endpoint.serve),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi_json),  # the HTTP API described (docs/openapi.json)
        *dev.DevRoutes(settings, files, server.leases).routes(),  # /, /demo...: dev mode only
        *api.routes(settings, server.leases, keyguard),  # /api/v1: fences for app backends
        Mount("/static", app=CachedStatic(directory=files, check_dir=False), name="static"),
        *admin.Admin(
            settings, files, server.metrics, server.leases, server.control, server.registry, server.audit,
            server.overview, lambda: server.stopping, keyguard,
        ).routes(),  # /admin/api, /dashboard, /metrics
    ]
    middleware = [
        Middleware(ConnectionLimit, max_connections=settings.max_connections, telemetry=server.metrics),
        # Starlette types a middleware as a coroutine function before 0.38 and as any awaitable since;
        # ExposeTransport returns the awaitable of the app it hands on, right under both. /ws is the
        # route above, taken directly.
        Middleware(cast(Any, ExposeTransport), path="/ws", endpoint=server.endpoint.serve),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
