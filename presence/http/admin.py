"""Admin: the operators' HTTP surface. ``/admin/api/*`` is JSON behind ``PRESENCE_ADMIN_TOKEN``
(``Authorization: Bearer``, compared in constant time; 401 without or with a wrong token, 404
when no admin token is configured). ``/admin/api/live`` is the dashboard's WebSocket: the token is
its first frame (browsers cannot set headers on a WebSocket, and a URL would put it in logs).
``/dashboard`` is the static page and ``/metrics`` the Prometheus text (unauthenticated, as
scrapers expect: keep it on a private network).

| method, path | |
|---|---|
| GET /admin/api/workspaces?q=&limit= | active workspaces (id contains ``q``): holder, fence, TTL, viewers |
| GET /admin/api/workspaces/{id} | one workspace with every tab |
| POST /admin/api/workspaces/{id}/release | force release ``{reason?, by?}``: holder told ``revoked`` |
| POST /admin/api/workspaces/{id}/locks/{lock}/release | the same for a named lock |
| POST /admin/api/workspaces/{id}/tabs/{conn}/close | close one tab on whichever process has it |
| GET /admin/api/servers | live server processes |
| GET /admin/api/audit?before=&limit=&forced= | audit log, newest first, paged by stream id |

Request bodies are JSON objects of at most 4 KiB; anything else (including JSON nested deeper than
the decoder goes) answers 400. A peer that keeps presenting wrong admin tokens is slowed down
(:mod:`presence.http.keyguard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import logctx
from ..auth import same_secret
from ..core.events import LeaseEvent
from ..core.outcomes import Relinquished
from ..errors import BadMessage, StoreUnavailable
from ..gateway.leases import LeaseScripts
from ..ops import audit
from ..ops.audit import AuditLog
from ..ops.control import Control
from ..ops.metrics import CONTENT_TYPE, Metrics
from ..ops.overview import Overview
from ..ops.registry import Registry
from ..settings import Settings
from ..wire.messages import Person, valid_workspace
from .headers import PAGE_HEADERS
from .keyguard import KeyGuard
from .params import whole_number
from .services import target

log = logging.getLogger("presence.admin")

Handler = Callable[[Request], Awaitable[Response]]
STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # not \d: it takes every script's digits
MAX_STREAM_PART = 2**64 - 1  # both halves of a Redis stream id are unsigned 64-bit numbers
MAX_BODY = 4096
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_NOTE = 200
LIVE_AUDIT_S = 0.25  # how often the live feed looks for new audit entries
LIVE_STATE_S = 1.0  # how often it re-reads workspaces and servers
LIVE_SEND_TIMEOUT_S = 5.0  # a dashboard that stops reading is dropped, nobody else waits

_json = msgspec.json.Encoder()

DASHBOARD_OFF = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>presence dashboard: off</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css"></head><body><main class="off">
<h1>The dashboard is off</h1>
<p>No <code>PRESENCE_ADMIN_TOKEN</code> is set on this server, so the dashboard and the admin API
are disabled. Start the server with one, then open this page again and enter it:</p>
<pre>export PRESENCE_ADMIN_TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
echo "$PRESENCE_ADMIN_TOKEN"   # what this page will ask for
presence serve                # in dev mode (no PRESENCE_SECRET): presence serve --dev</pre>
</main></body></html>
"""


def _reply(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json", headers=headers)


class BadRequest(Exception):
    """The request itself is malformed: answered 400 with this message."""


def _peer(conn: Request | WebSocket) -> str | None:
    return conn.client.host if conn.client is not None else None


def decode_json(raw: str | bytes) -> Any:
    """JSON from an operator's client. JSON nested too deep is invalid JSON like any other."""
    try:
        return msgspec.json.decode(raw)
    except RecursionError:
        raise msgspec.DecodeError("JSON is nested too deeply") from None


def stream_id(raw: str) -> str:
    """A Redis stream id older than which entries are listed; ``BadRequest`` when it is none."""
    match = STREAM_ID.fullmatch(raw)
    if match is None:
        raise BadRequest("before must be a stream id like 1700000000000-0")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > MAX_STREAM_PART or seq > MAX_STREAM_PART:
        raise BadRequest(f"before: both numbers of a stream id are at most {MAX_STREAM_PART}")
    if ms == seq == 0:
        raise BadRequest("before: nothing is older than 0-0")
    return f"{ms}-{seq}"


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class Admin:
    """``stopping`` says whether the server is shutting down (the live feed then ends with 1012)."""

    def __init__(
        self, settings: Settings, files: Path, metrics: Metrics, leases: LeaseScripts, control: Control,
        registry: Registry, audit_log: AuditLog, overview: Overview, stopping: Callable[[], bool],
        keyguard: KeyGuard,
    ) -> None:
        self.files = files
        self.token = settings.admin_token
        self.metrics_ = metrics
        self.leases = leases
        self.control = control
        self.registry = registry
        self.audit_log = audit_log
        self.overview = overview
        self.stopping = stopping
        self.keyguard = keyguard

    def routes(self) -> list[BaseRoute]:
        g = self._guard
        return [
            Route("/metrics", self.metrics),
            Route("/dashboard", self.dashboard),
            Route("/admin/api/workspaces", g(self.workspaces)),
            Route("/admin/api/workspaces/{workspace:path}/locks/{lock}/release", g(self.release), methods=["POST"]),
            Route("/admin/api/workspaces/{workspace:path}/release", g(self.release), methods=["POST"]),
            Route("/admin/api/workspaces/{workspace:path}/tabs/{conn}/close", g(self.close_tab), methods=["POST"]),
            Route("/admin/api/workspaces/{workspace:path}", g(self.workspace)),
            Route("/admin/api/servers", g(self.servers)),
            Route("/admin/api/audit", g(self.audit)),
            WebSocketRoute("/admin/api/live", self.live),
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if self.token is None:
                return _reply({"error": "the admin API is disabled: set PRESENCE_ADMIN_TOKEN"}, 404)
            peer = _peer(request)
            if wait := self.keyguard.retry_after(peer):
                return _reply({"error": f"too many wrong admin tokens from this address; retry in {wait} s"}, 429,
                              {"Retry-After": str(wait)})
            if not same_secret(_bearer(request.headers.get("authorization")), self.token):
                self.keyguard.failed(peer)
                return _reply({"error": "missing or wrong admin token"}, 401,
                              {"WWW-Authenticate": 'Bearer realm="presence admin"'})
            given = request.headers.get("x-request-id", "")
            rid = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(6)
            reset = logctx.request_id.set(rid)
            try:
                response = await handler(request)
            except BadRequest as exc:
                response = _reply({"error": str(exc)}, 400)
            except StoreUnavailable as exc:
                log.warning("admin %s %s: %s", request.method, request.url.path, exc)
                response = _reply({"error": "Redis unavailable, try again"}, 503)
            finally:
                logctx.request_id.reset(reset)
            response.headers["X-Request-Id"] = rid
            return response

        return guarded

    # -- open endpoints -----------------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        return Response(self.metrics_.exposition(), media_type=CONTENT_TYPE)

    async def dashboard(self, request: Request) -> Response:
        if self.token is None:  # say so at once, rather than ask for a token that cannot exist
            return HTMLResponse(DASHBOARD_OFF, status_code=404, headers=PAGE_HEADERS)
        return FileResponse(self.files / "dashboard.html", headers=PAGE_HEADERS)

    # -- JSON API ---------------------------------------------------------------------------

    def _workspace_id(self, request: Request) -> str | None:
        ws = str(request.path_params["workspace"])
        return ws if valid_workspace(ws) else None

    async def workspaces(self, request: Request) -> Response:
        q = request.query_params.get("q", "")[:200]
        limit = _int("limit", request.query_params.get("limit"), 100, 1, 1000)
        return _reply(await self.overview.page(q, limit))

    async def workspace(self, request: Request) -> Response:
        ws = self._workspace_id(request)
        if ws is None:
            return _reply({"error": "invalid workspace id"}, 400)
        return _reply(await self.overview.workspace(ws))

    async def release(self, request: Request) -> Response:
        try:
            ws, lock = target(request)
        except BadMessage as exc:
            return _reply({"error": str(exc)}, 400)
        body = await _body(request)
        note, by = str(body.get("reason") or "")[:MAX_NOTE], str(body.get("by") or "")[:100]
        reset = audit.note.set(note)  # the audit observer runs inside the release call below
        try:
            out = await self.leases.release(ws, None, "revoked", by=Person("admin", by or "operator"), lock=lock)
        finally:
            audit.note.reset(reset)
        what = f"lock {lock!r} of {ws}" if lock else ws
        if not isinstance(out.reply, Relinquished):
            return _reply({"released": False, "error": f"nobody holds {what}"}, 409)
        prev = next((e.prev for e in out.events if isinstance(e, LeaseEvent) and e.prev is not None), None)
        log.info("lease of %s (fence %s) revoked by an operator: %s", what, out.reply.fence, note or "-")
        return _reply({
            "released": True, "fence": out.reply.fence, **({"lock": lock} if lock else {}),
            "holder": None if prev is None else {"user": prev.person, "tab": prev.tab},  # whose lease ended
        })

    async def close_tab(self, request: Request) -> Response:
        ws = self._workspace_id(request)
        conn = str(request.path_params["conn"])
        if ws is None:
            return _reply({"error": "invalid workspace id"}, 400)
        snap = await self.leases.read(ws)
        if conn not in (snap.tabs or {}):
            return _reply({"error": f"no tab {conn!r} in {ws!r}"}, 404)
        note = str((await _body(request)).get("reason") or "")[:MAX_NOTE]
        await self.control.close_tab(conn, note)
        return _reply({"closing": conn}, 202)

    async def servers(self, request: Request) -> Response:
        census = await self.registry.census()
        return _reply({"now": census.now, "servers": census.servers})

    async def audit(self, request: Request) -> Response:
        raw = request.query_params.get("before") or None
        before = None if raw is None else stream_id(raw)
        limit = _int("limit", request.query_params.get("limit"), 50, 1, 500)
        forced = request.query_params.get("forced", "").lower() in ("1", "true", "yes")
        entries = await self.audit_log.page(before, limit, forced=forced)
        return _reply({"entries": entries, "next": entries[-1]["id"] if len(entries) == limit else None})

    # -- live feed --------------------------------------------------------------------------

    async def live(self, websocket: WebSocket) -> None:
        """The dashboard's feed: ``{"token", "q"?}`` first, then ``{"q"}`` to change the filter.
        Sends ``audit`` frames (new entries, oldest first) and ``state`` frames (the overview)."""
        await websocket.accept()
        try:
            first = decode_json(await asyncio.wait_for(websocket.receive_text(), 5.0))
        except (TimeoutError, WebSocketDisconnect, msgspec.DecodeError, KeyError):
            await _close(websocket, 4400, "send {\"token\": ...} first")
            return
        if self.token is None:
            await _close(websocket, 4404, "the admin API is disabled: set PRESENCE_ADMIN_TOKEN")
            return
        peer = _peer(websocket)
        if wait := self.keyguard.retry_after(peer):
            await _close(websocket, 4429, f"too many wrong admin tokens from this address; retry in {wait} s")
            return
        if not isinstance(first, dict) or not same_secret(str(first.get("token") or ""), self.token):
            self.keyguard.failed(peer)
            await _close(websocket, 4401, "missing or wrong admin token")
            return
        view = {"q": str(first.get("q") or "")[:200], "changed": True}
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._live_reader(websocket, view))
            pusher = tg.create_task(self._live_pusher(websocket, view))
            await asyncio.wait([reader, pusher], return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
            pusher.cancel()
        await _close(websocket, 1012 if self.stopping() else 1000, "")

    async def _live_reader(self, websocket: WebSocket, view: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                try:
                    msg = decode_json(await websocket.receive_text())
                except msgspec.DecodeError:
                    continue
                if isinstance(msg, dict) and isinstance(msg.get("q"), str):
                    view["q"], view["changed"] = msg["q"][:200], True

    async def _live_pusher(self, websocket: WebSocket, view: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        last_id, next_state = "", 0.0
        while not self.stopping():
            try:
                if not last_id:  # the newest entries first, then everything after them
                    recent = await self.audit_log.page(None, 50)
                    last_id = recent[0]["id"] if recent else "0-0"
                    entries = recent[::-1]
                else:
                    entries = await self.audit_log.after(last_id, 200)
                if entries:
                    last_id = entries[-1]["id"]
                    await _send(websocket, {"type": "audit", "entries": entries})
                if view["changed"] or loop.time() >= next_state:
                    view["changed"], next_state = False, loop.time() + LIVE_STATE_S
                    await _send(websocket, {"type": "state", **await self.overview.page(view["q"], 200)})
            except StoreUnavailable:
                await _send(websocket, {"type": "unavailable"})
            except (WebSocketDisconnect, RuntimeError, TimeoutError):
                return  # the dashboard went away or stopped reading
            await asyncio.sleep(LIVE_AUDIT_S)


async def _send(websocket: WebSocket, body: object) -> None:
    await asyncio.wait_for(websocket.send_text(_json.encode(body).decode()), LIVE_SEND_TIMEOUT_S)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the peer may be gone already
        await websocket.close(code, reason)


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is an empty object. ``BadRequest`` otherwise."""
    raw = await request.body()
    if not raw.strip():
        return {}
    if len(raw) > MAX_BODY:
        raise BadRequest(f"the body must be a JSON object of at most {MAX_BODY} bytes")
    try:
        body = decode_json(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    """A query parameter clamped to [low, high]; ``BadRequest`` unless it is ASCII digits."""
    if not raw:
        return default
    value = whole_number(raw)
    if value is None:
        raise BadRequest(f"{name} must be a whole number (digits 0-9) between {low} and {high}")
    return max(low, min(high, value))

