"""App: the Starlette application (routes and lifespan) around one :class:`Hub`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from . import admin, api, auth, session
from .hub import Hub
from .settings import Settings

log = logging.getLogger("presence.app")


def static_dir() -> Path:
    """The copy inside the installed wheel (``presence/static``), or ``static/`` of the source tree.

    (Not ``importlib.resources.files``: ``static/`` has no ``__init__.py``, and the str() of the
    ``MultiplexedPath`` it returns for such a namespace package is its repr, not a path.)
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "static", here.parent / "static"):
        if (candidate / "presence.js").is_file():
            return candidate
    return here.parent / "static"


class CachedStatic(StaticFiles):
    """Static files with a short cache lifetime plus ETag revalidation (no stale client after an upgrade)."""

    def file_response(self, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "public, max-age=300, must-revalidate")
        return response


def create_app(settings: Settings, hub: Hub | None = None) -> Starlette:
    hub = hub or Hub(settings)
    files = static_dir()

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
        await hub.start()
        log.info("presence server %s started (scope %s)", hub.server_id, settings.lease_scope)
        try:
            yield
        finally:
            await hub.stop()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        redis_ok = await hub.store.ping()
        body = {
            "redis": redis_ok, "scripts": hub.store.scripts_loaded, "pubsub": hub.bridge.connected,
            "server": hub.server_id, "stopping": hub.stopping,
        }
        ok = redis_ok and hub.ready and not hub.stopping
        return JSONResponse(body, status_code=200 if ok else 503)

    async def demo(request: Request) -> Response:
        if not settings.dev_mode:
            return PlainTextResponse("the demo is only served in dev mode", status_code=404)
        return FileResponse(files / "demo.html", headers={"Cache-Control": "no-cache"})

    async def demo_token(request: Request) -> Response:
        if not settings.dev_mode:
            return PlainTextResponse("demo tokens exist only in dev mode", status_code=404)
        user = request.query_params.get("user", "").strip()[:64]
        if not user:
            return JSONResponse({"error": "give ?user=ID (and optionally &name=NAME)"}, status_code=400)
        name = request.query_params.get("name", "").strip()[:100] or user
        return JSONResponse({"token": auth.mint(settings.signing_key, user, name, ttl_s=3600)})

    routes = [
        WebSocketRoute("/ws", session.serve),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/demo", demo),
        Route("/demo/token", demo_token),
        *api.routes,  # /api/v1: fences for app backends
        Mount("/static", app=CachedStatic(directory=files, check_dir=False), name="static"),
        *admin.routes(hub, files),  # /admin/api, /dashboard, /metrics
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(session.ExposeAbort)])
    app.state.hub = hub
    app.state.settings = settings
    return app
