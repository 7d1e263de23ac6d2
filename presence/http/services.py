"""Service holders over HTTP: a backend job takes, renews and releases a workspace's lease (or one
of its named locks) like a person does (:mod:`presence.engine.services` says what each does).

    POST   .../lease  {holder: {id, name}, ttl_ms?, takeover?}
           -> 201 {fence, ttl_ms}, or 409 {holder} (409 {holder, retry_ms} in a takeover cooldown;
              409 {error} when the workspace holds PRESENCE_MAX_LOCKS named locks already)
    PUT    .../lease  {fence, ttl_ms?}  -> 200 {fence, ttl_ms}, or 409 {holder}
    DELETE .../lease?fence=N            -> 204, or 409 {holder}

where ``...`` is ``/api/v1/workspaces/{id}`` (the workspace's own lease) or
``/api/v1/workspaces/{id}/locks/{lock}`` (a named lock). This module maps HTTP to the commands
and their answers back; it decides nothing about leases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..engine.services import Held, Let, Refused, ServiceCommands, ServiceHolder
from ..errors import BadMessage, RequestError, TooManyLocks, Unavailable
from ..wire.messages import LOCK_RE, valid_workspace
from .bodies import capped_body
from .params import whole_number

MAX_BODY = 4096


class Take(msgspec.Struct, forbid_unknown_fields=True):
    holder: ServiceHolder
    ttl_ms: int | None = None
    takeover: bool = False


class Renew(msgspec.Struct, forbid_unknown_fields=True):
    fence: int
    ttl_ms: int | None = None


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def answer(result: Held | Refused | Let, created: bool = False) -> Response:
    """A command's answer as HTTP."""
    match result:
        case Held(fence=fence, ttl_ms=ttl_ms):
            return JSONResponse({"fence": fence, "ttl_ms": ttl_ms}, status_code=201 if created else 200)
        case Refused(holder=holder, retry_ms=retry_ms):
            body: dict[str, object] = {"holder": msgspec.to_builtins(holder)}
            if retry_ms is not None:
                body["retry_ms"] = retry_ms
            return JSONResponse(body, status_code=409)
        case Let():
            return Response(status_code=204)


def target(request: Request) -> tuple[str, str]:
    """The workspace and lock a request names. Raises ``BadMessage``."""
    workspace: str = request.path_params["workspace"]
    lock: str = request.path_params.get("lock", "")
    if not valid_workspace(workspace):
        raise BadMessage("invalid workspace id")
    if "lock" in request.path_params and LOCK_RE.fullmatch(lock) is None:
        raise BadMessage("invalid lock id: 1-64 characters of A-Z a-z 0-9 . _ : -")
    return workspace, lock


class ServiceLeases:
    """The three handlers; ``refused`` answers a request without the API key (None: allowed)."""

    def __init__(self, commands: ServiceCommands, refused: Callable[[Request], Response | None]) -> None:
        self.commands = commands
        self.refused = refused

    async def _body(self, request: Request, kind: type[Take] | type[Renew]) -> Take | Renew:
        raw = await capped_body(request, MAX_BODY)
        if raw is None:
            raise BadMessage(f"the body is larger than {MAX_BODY} bytes")
        try:
            return msgspec.json.decode(raw or b"{}", type=kind)
        except msgspec.DecodeError as exc:
            raise BadMessage(f"invalid body: {exc}") from None

    async def _handle(self, request: Request, run: Callable[[str, str], Awaitable[Response]]) -> Response:
        if (refused := self.refused(request)) is not None:
            return refused
        try:
            workspace, lock = target(request)
            return await run(workspace, lock)
        except Unavailable as exc:
            return _error(503, str(exc))
        except TooManyLocks as exc:
            return _error(409, str(exc))
        except RequestError as exc:
            return _error(400, str(exc))

    async def take(self, request: Request) -> Response:
        async def run(workspace: str, lock: str) -> Response:
            body = await self._body(request, Take)
            assert isinstance(body, Take)
            return answer(await self.commands.take(workspace, lock, body.holder, body.ttl_ms, body.takeover), True)

        return await self._handle(request, run)

    async def renew(self, request: Request) -> Response:
        async def run(workspace: str, lock: str) -> Response:
            body = await self._body(request, Renew)
            assert isinstance(body, Renew)
            return answer(await self.commands.renew(workspace, lock, body.fence, body.ttl_ms))

        return await self._handle(request, run)

    async def release(self, request: Request) -> Response:
        async def run(workspace: str, lock: str) -> Response:
            fence = whole_number(request.query_params.get("fence", ""))
            if fence is None:
                raise BadMessage("name the fence to release: ?fence=<the fence of your grant, in digits 0-9>")
            return answer(await self.commands.release(workspace, lock, fence))

        return await self._handle(request, run)
