"""Dev mode's own routes: a start page at ``/``, the demo pages, demo tokens and the demo's documents.

None of them exists outside dev mode (404). The documents stand in for an app backend: the text of
each demo document is kept in this process's memory, and a save is accepted only with the fence
that holds the lease now and only if no newer fence has saved since, the checks a real backend
makes (docs/guide.md, "Fences"), so a tab that lost the lease is refused and told why. With
``?lock=`` a document is one part of a workspace (a field of the demo form), saved under the fence
of that named lock instead of the workspace's lease.

| method, path | |
|---|---|
| GET / | a start page: the demo, the dashboard, the API description |
| GET /demo | the demo editor (``static/demo.html``) |
| GET /demo/list | twenty documents with live badges (``static/demo-list.html``, one LeaseWatcher) |
| GET /demo/form | a form of four fields, each its own named lock (``static/demo-form.html``) |
| GET /demo/token?user=&name=&read_only= | a demo token signed with the public dev key (``read_only=1``: read-only) |
| GET /demo/docs/{id}[?lock=] | ``{workspace, text, fence, saved_by, saved_at_ms, version}`` (and ``lock``) |
| PUT /demo/docs/{id}[?lock=] | ``Authorization: Bearer <token>``, ``{text, fence}``: 200 saved, 409 refused (why) |
"""

from __future__ import annotations

import html
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .. import __version__, auth
from ..core.records import HolderRecord
from ..errors import BadToken, CloseError, StoreUnavailable
from ..gateway.leases import LeaseScripts
from ..settings import Settings
from ..wire.messages import LOCK_RE, SERVICE_PREFIX, Person, valid_workspace
from .headers import PAGE_HEADERS

MAX_DOCUMENTS = 1000  # the least recently saved or read go first: a dev server's memory stays small
MAX_TEXT = 100_000  # characters of one document


class Saved(msgspec.Struct):
    """One demo document as last saved."""

    text: str
    fence: int  # the fence of the lease its last save held
    by: Person
    at_ms: int  # wall clock of this process
    version: int


class SaveBody(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    fence: int


_save_body = msgspec.json.Decoder(SaveBody)


class Documents:
    """The demo's documents: text saved under the fence of the lease (or of a named lock), in memory,
    bounded. A document is ``(workspace, lock)``; lock "" is the whole workspace's."""

    def __init__(self, settings: Settings, leases: LeaseScripts) -> None:
        self.key = settings.signing_key
        self.leases = leases
        self.docs: OrderedDict[tuple[str, str], Saved] = OrderedDict()

    def _view(self, key: tuple[str, str]) -> dict[str, object]:
        workspace, lock = key
        named: dict[str, object] = {"lock": lock} if lock else {}
        doc = self.docs.get(key)
        if doc is None:
            return {"workspace": workspace, **named, "text": "", "fence": None, "saved_by": None, "saved_at_ms": None,
                    "version": 0}
        self.docs.move_to_end(key)
        return {"workspace": workspace, **named, "text": doc.text, "fence": doc.fence,
                "saved_by": msgspec.to_builtins(doc.by), "saved_at_ms": doc.at_ms, "version": doc.version}

    @staticmethod
    def _document(request: Request) -> tuple[str, str] | Response:
        """The ``(workspace, lock)`` a request is about, or the 400 answer."""
        workspace = str(request.path_params["workspace"])
        if not valid_workspace(workspace):
            return JSONResponse({"error": "invalid workspace id"}, status_code=400)
        lock = request.query_params.get("lock", "")
        if lock and LOCK_RE.fullmatch(lock) is None:
            return JSONResponse({"error": "lock ids are 1-64 characters of A-Z a-z 0-9 . _ : -"}, status_code=400)
        return workspace, lock

    async def read(self, request: Request) -> Response:
        key = self._document(request)
        if isinstance(key, Response):
            return key
        return JSONResponse(self._view(key), headers={"Cache-Control": "no-store"})

    async def save(self, request: Request) -> Response:
        key = self._document(request)
        if isinstance(key, Response):
            return key
        workspace, lock = key
        header = request.headers.get("authorization", "")
        try:
            if not header.lower().startswith("bearer "):
                raise BadToken("missing token (Authorization: Bearer <token>)")
            identity = auth.verify(header[7:].strip(), self.key)
            identity.check_workspace(workspace)
        except CloseError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403 if exc.close_code == 4403 else 401)
        try:
            body = _save_body.decode(await request.body())
        except msgspec.MsgspecError as exc:
            return JSONResponse({"error": f"the body must be {{text, fence}}: {exc}"}, status_code=400)
        if len(body.text) > MAX_TEXT:
            return JSONResponse({"error": f"a demo document holds at most {MAX_TEXT} characters"}, status_code=413)
        try:
            holder = (await self.leases.read(workspace)).lock(lock).holder
        except StoreUnavailable:
            return JSONResponse({"error": "Redis unavailable, retry later"}, status_code=503)
        # No await from here on: the check and the write are one step (a conditional write).
        refused = self._refusal(key, body.fence, identity.user, holder)
        if refused is not None:
            return JSONResponse({"saved": False, **refused}, status_code=409)
        previous = self.docs.pop(key, None)
        self.docs[key] = doc = Saved(
            body.text, body.fence, identity.user, int(time.time() * 1000), (previous.version if previous else 0) + 1
        )
        while len(self.docs) > MAX_DOCUMENTS:
            self.docs.popitem(last=False)
        return JSONResponse({"saved": True, "fence": doc.fence, "version": doc.version, "saved_at_ms": doc.at_ms})

    def _refusal(
        self, key: tuple[str, str], fence: int, user: Person, holder: HolderRecord | None
    ) -> dict[str, object] | None:
        """Why a save with ``fence`` is refused, or None. A newer fence that saved comes first: it is
        the story the writer needs ("Bob saved after you"); then the lease itself. The messages are for
        people (the demo shows them), so they speak of versions and leases, never of fence numbers: the
        fences are in the other fields, for programs."""
        lease = f"lock on {key[1]}" if key[1] else "lease"
        doc = self.docs.get(key)
        if doc is not None and doc.fence > fence:
            return {
                "reason": "saved_after", "by": msgspec.to_builtins(doc.by), "fence": doc.fence, "at_ms": doc.at_ms,
                "message": f"{doc.by.name} saved a newer version after you (version {doc.version})",
            }
        if holder is None:
            return {"reason": "not_holder", "by": None, "fence": None,
                    "message": f"your edit {lease} has ended and nobody holds it now"}
        if holder.fence != fence or holder.user != user.id:
            who = "you, with a newer lease" if holder.user == user.id else holder.name
            return {"reason": "not_holder", "by": msgspec.to_builtins(holder.person), "fence": holder.fence,
                    "message": f"{who} took the {lease} after you"}
        return None


START_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>presence (dev mode)</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/demo.css">
</head><body><main class="start">
<h1>presence <span class="muted">{version}, dev mode</span></h1>
<p>This server runs in <strong>dev mode</strong>: no <code>PRESENCE_SECRET</code> is set, so tokens are signed
with a public key and anyone can mint them. Fine on your machine; never expose it.</p>
<ul>
<li><a href="/demo">The demo editor</a>: open it in two windows (or two browsers) and edit one document
from both; take over, ask for it, wait in line, and watch a stale save get refused.</li>
<li><a href="/demo/form">The demo form</a>: four fields, each a lock of its own: while Bob edits the
title, Alice edits the notes, and each sees where the other is.</li>
<li><a href="/demo/list">The documents list</a>: who is editing which document, live, over one connection.</li>
<li><a href="/dashboard">The operators' dashboard</a>: {dashboard}</li>
<li><a href="/metrics">Prometheus metrics</a>, <a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a></li>
<li><a href="/openapi.json">The HTTP API</a> (OpenAPI) and <a href="/static/presence.js">the JS client</a>;
the WebSocket protocol is described in <code>docs/protocol.md</code> of the source.</li>
</ul></main></body></html>
"""


class DevRoutes:
    def __init__(self, settings: Settings, files: Path, leases: LeaseScripts) -> None:
        self.settings = settings
        self.files = files
        self.documents = Documents(settings, leases)

    def routes(self) -> list[BaseRoute]:
        only = self._dev_only
        return [
            Route("/", only(self.start)),
            Route("/demo", only(self._page("demo.html"))),
            Route("/demo/list", only(self._page("demo-list.html"))),
            Route("/demo/form", only(self._page("demo-form.html"))),
            Route("/demo/token", only(self.token)),
            Route("/demo/docs/{workspace:path}", only(self.documents.read), methods=["GET"]),
            Route("/demo/docs/{workspace:path}", only(self.documents.save), methods=["PUT"]),
        ]

    def _dev_only(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if not self.settings.dev_mode:
                return PlainTextResponse("not found (the demo and its routes exist only in dev mode)", status_code=404)
            return await handler(request)

        return guarded

    async def start(self, request: Request) -> Response:
        dashboard = (
            "the admin token is set; the page asks for it" if self.settings.admin_token
            else "off until you set <code>PRESENCE_ADMIN_TOKEN</code> and restart with <code>--dev</code>"
        )
        page = START_PAGE.format(version=html.escape(__version__), dashboard=dashboard)
        return HTMLResponse(page, headers=PAGE_HEADERS)

    def _page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        """A demo page: one file of static/, with the pages' headers."""

        async def page(request: Request) -> Response:
            return FileResponse(self.files / name, headers=PAGE_HEADERS)

        return page

    async def token(self, request: Request) -> Response:
        user = request.query_params.get("user", "").strip()[:64]
        if not user:
            return JSONResponse({"error": "give ?user=ID (and optionally &name=NAME)"}, status_code=400)
        if user.startswith(SERVICE_PREFIX):
            return JSONResponse({"error": f"user ids starting with {SERVICE_PREFIX!r} are reserved for backend jobs"},
                                status_code=400)
        name = request.query_params.get("name", "").strip()[:100] or user
        read_only = request.query_params.get("read_only", "") in ("1", "true")
        s = self.settings
        return JSONResponse({"token": auth.mint(
            s.signing_key, user, name, ttl_s=3600, issuer=s.token_issuer, audience=s.token_audience,
            lease=False if read_only else None,
        )})
