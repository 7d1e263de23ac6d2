"""The OpenAPI description of the HTTP API: ``/api/v1`` (app backends) and ``/admin/api`` (operators).

Served at ``GET /openapi.json`` (built on the first request, then kept); ``docs/openapi.json`` is the
same document, written by

    python -m presence.http.openapi --write

A test checks that every route of those two prefixes is described here (path and method) and that
nothing described is missing from the app, and that ``docs/openapi.json`` is current.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from .. import __version__, docfile
from ..wire.messages import HolderView, Person, Viewer
from . import examples

DOC_PATH = Path("docs") / "openapi.json"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": properties, **extra}
    out["required"] = list(properties) if required is None else required
    return out


INT, STR, BOOL = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
WORKSPACE = {
    "name": "workspace", "in": "path", "required": True,
    "description": "Workspace id: 1-200 characters of A-Z a-z 0-9 . _ ~ : @ / - (slashes included, unescaped).",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~:@/-]{1,200}$"},
}
LOCK = {
    "name": "lock", "in": "path", "required": True,
    "description": "A named lock: 1-64 characters of A-Z a-z 0-9 . _ : -.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
}
REQUEST_ID = {
    "X-Request-Id": {
        "description": "The request's id (yours, if you sent a valid one); the server's log lines of it carry it.",
        "schema": STR,
    }
}


def _json(description: str, schema: Schema, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _error(description: str) -> dict[str, Any]:
    return _json(description, _ref("Error"))


ADMIN_ERRORS = {
    "401": _error("Missing or wrong admin token."),
    "404": _error("No PRESENCE_ADMIN_TOKEN is configured: the admin API is disabled."),
    "503": _error("Redis unavailable; try again."),
}


def _admin(
    operation_id: str, summary: str, description: str, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    ok = {code: {**r, "headers": REQUEST_ID} for code, r in responses.items()}
    return {"tags": ["admin"], "operationId": operation_id, "summary": summary, "description": description,
            "security": [{"admin": []}], "responses": {**ok, **ADMIN_ERRORS}, **extra}


def _service(
    operation_id: str, summary: str, description: str, body: Schema | None, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tags": ["api"], "operationId": operation_id, "summary": summary, "description": description,
        "security": [{"apiKey": []}],
        "parameters": [WORKSPACE],
        "responses": {**responses,
                      "400": _error("Invalid workspace id or body."),
                      "401": _error("Missing or wrong API key."),
                      "404": _error("No PRESENCE_API_KEY is configured: the API is disabled."),
                      "503": _error("Redis unavailable; retry later.")},
        **extra,
    }
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return out


def _components() -> dict[str, Schema]:
    (_, _, _), defs = msgspec.json.schema_components(
        [Person, HolderView, Viewer], ref_template="#/components/schemas/{name}"
    )
    held = _obj({
        "user": _ref("Person"), "since_ms": INT, "tabs": INT, "fence": INT, "tab": STR,
        "held_ms": {"type": "integer", "description": "how long it has been held (Redis clock)"},
    })
    workspace_row = _obj({
        "workspace": STR, "seq": INT,
        "holder": _nullable(held),
        "ttl_ms": _nullable({"type": "integer", "description": "the lease's PTTL in Redis"}),
        "viewers": {"type": "array", "items": _ref("Viewer")},
        "tabs": {"type": "integer", "description": "open tabs (a tab id counts once)"},
        "servers": {"type": "array", "items": STR, "description": "ids of the server processes with tabs in it"},
        "locks": {"type": "object", "description": "the named locks that are held: lock -> {holder, ttl_ms}",
                  "additionalProperties": _obj({"holder": held, "ttl_ms": _nullable(INT)})},
    })
    tab = _obj({"conn": STR, "user": _ref("Person"), "tab": STR, "active": BOOL,
                "meta": {"type": "object"}, "server": STR})
    return {
        **defs,
        "Error": _obj({"error": STR}),
        "Lease": {"allOf": [_obj({"workspace": STR, "lock": {
            "type": "string", "description": "a named lock's answer names it (absent: the workspace's own lease)",
        }}, ["workspace"]), _ref("LeaseState")]},
        "LeaseState": _obj({
            "holder": _nullable(_ref("HolderView")),
            "fence": _nullable({"type": "integer", "description": "the holder's fence; null when nobody holds it"}),
            "ttl_ms": {"type": "integer", "description": "time left of the lease in Redis; 0 when nobody holds it"},
            "viewers": {"type": "integer", "description": "users with at least one tab in the workspace"},
        }),
        "Grant": _obj({"fence": INT, "ttl_ms": INT}),
        "WorkspaceRow": workspace_row,
        "WorkspaceDetail": {"allOf": [workspace_row, _obj({"tab_list": {"type": "array", "items": tab}})]},
        "Server": {
            "type": "object", "additionalProperties": True,
            "description": "A live server process as it announces itself: id, pid, host, port, version, "
                           "started_ms, connections, workspaces, leases, ready, stopping, scope, heartbeat_ms, "
                           "lease_ttl_ms, audit_buffered, audit_dropped, and counters for the dashboard.",
            "properties": {"id": STR, "pid": INT, "host": STR, "port": INT, "version": STR, "connections": INT,
                           "workspaces": INT, "leases": INT, "ready": BOOL, "stopping": BOOL},
        },
        "AuditEntry": {
            "type": "object", "additionalProperties": True,
            "description": "One lease change: kind (acquired, released, taken_over, expired, revoked, idle), "
                           "workspace, user/name/tab, fence, at (Redis time, ms), held_ms, from_* (the replaced "
                           "holder of a takeover), reason, by_id/by_name, note, server, origin, handoff.",
            "properties": {"id": {"type": "string", "description": "the stream id, e.g. 1700000000000-0"},
                           "kind": STR, "workspace": STR, "user": STR, "fence": INT, "at": INT},
            "required": ["id", "kind", "workspace"],
        },
    }


def _batch_read() -> dict[str, Any]:
    """``/api/v1/leases``: the same read as a GET (ids in the query) or a POST (ids in the body)."""
    ids = {"type": "array", "minItems": 1, "maxItems": 500, "items": WORKSPACE["schema"]}
    responses = {
        "200": _json("Every named workspace's lease.", _obj({"leases": {
            "type": "object", "additionalProperties": _ref("LeaseState"),
            "description": "workspace id -> its lease"}})),
        "400": _error("No workspace named, more than 500, or an invalid id (or body)."),
        "401": _error("Missing or wrong API key."),
        "404": _error("No PRESENCE_API_KEY is configured: the API is disabled."),
        "429": _error("Too many wrong API keys from this address; see Retry-After."),
        "503": _error("Redis unavailable; retry later."),
    }
    return {
        "get": {
            "tags": ["api"], "operationId": "getLeases", "summary": "Many workspaces' leases at once",
            "description": "For a list page's first paint or a backend's sweep: up to 500 workspaces, read "
                           "in one pipelined round trip. Each id is answered once, whatever the repeats.",
            "parameters": [{
                "name": "workspace", "in": "query", "required": True, "style": "form", "explode": True,
                "description": "a workspace id; repeat for each (1 to 500)", "schema": ids,
            }],
            "security": [{"apiKey": []}], "responses": responses,
        },
        "post": {
            "tags": ["api"], "operationId": "postLeases",
            "summary": "Many workspaces' leases at once (ids in the body)",
            "description": "The same read and answer as the GET form, for ids too many or too long for a URL "
                           "(500 ids of 200 characters). It changes nothing: safe to retry.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _obj(
                {"workspaces": {**ids, "description": "workspace ids (1 to 500)"}}, ["workspaces"],
                additionalProperties=False)}}},
            "security": [{"apiKey": []}],
            "responses": {**responses, "413": _error("The body is larger than 256 KiB.")},
        },
    }


def openapi() -> dict[str, Any]:
    """The document, with an operationId on every operation and examples of its bodies."""
    note = {"type": "object", "properties": {"reason": STR, "by": STR}}
    doc = _document(note)
    examples.apply(doc["paths"])
    return doc

def _lease_operations(named: bool) -> dict[str, Any]:
    """GET, POST, PUT and DELETE of the workspace's own lease, or (``named``) of a named lock."""
    what, suffix = ("a named lock", "Lock") if named else ("a workspace's lease", "Lease")
    params = [WORKSPACE, LOCK] if named else [WORKSPACE]
    ttl = {"type": "integer", "minimum": 500, "maximum": 3600000}
    return {
        "get": {
            "tags": ["api"], "operationId": f"get{suffix}", "summary": f"Who holds {what}, with its fence",
            "description": "For a backend that checks the fence a browser sent with a save: the save may "
                           "proceed only if `fence` equals the one sent (the conditional write is still the "
                           "one that closes every race; see the docs, Fences).",
            "parameters": params, "security": [{"apiKey": []}],
            "responses": {
                "200": _json("The lease now.", _ref("Lease")),
                "400": _error("Invalid workspace or lock id."),
                "401": _error("Missing or wrong API key."),
                "404": _error("No PRESENCE_API_KEY is configured: the API is disabled."),
                "503": _error("Redis unavailable; retry later."),
            },
        },
        "post": _service(
            f"take{suffix}", f"Take {what} for a backend job",
            "The job holds it as user `svc:<holder.id>`: tabs see `{id: \"svc:<id>\", name, service: true}` "
            "and get `busy`, can queue, request it or (if their token allows) take it over. Taking "
            "again with the same holder id answers the same fence. `takeover: true` takes it from "
            "whoever holds it (refused during PRESENCE_TAKEOVER_COOLDOWN_MS: 409 with `retry_ms`). "
            "The TTL is at most an hour, and at most half the key idle time.",
            _obj({"holder": _obj({"id": {"type": "string", "minLength": 1, "maxLength": 196},
                                  "name": {"type": "string", "maxLength": 100}}, ["id"]),
                  "ttl_ms": {**ttl, "description": "default PRESENCE_LEASE_TTL_MS"},
                  "takeover": {"type": "boolean", "default": False}}, ["holder"]),
            {"201": _json("Granted.", _ref("Grant")),
             "409": _json("Someone else holds it.", _obj({
                 "holder": _nullable(_ref("HolderView")), "retry_ms": INT}, ["holder"]))},
            parameters=params,
        ),
        "put": _service(
            f"renew{suffix}", f"Renew a backend job's hold of {what}",
            "Replaces the lease's TTL while `fence` still holds it (renew every third of the TTL). "
            "409 once it does not: taken over, or expired.",
            _obj({"fence": INT, "ttl_ms": ttl}, ["fence"]),
            {"200": _json("Renewed.", _ref("Grant")),
             "409": _json("That fence no longer holds it.", _obj({"holder": _nullable(_ref("HolderView"))}))},
            parameters=params,
        ),
        "delete": _service(
            f"release{suffix}", f"Release a backend job's hold of {what}",
            "Releases the lease granted with `fence` (the next in the wait queue gets it).",
            None,
            {"204": {"description": "Released."},
             "409": _json("That fence does not hold it.", _obj({"holder": _nullable(_ref("HolderView"))}))},
            parameters=[*params, {"name": "fence", "in": "query", "required": True,
                                  "description": "in digits 0-9 (others: 400)",
                                  "schema": {"type": "integer", "minimum": 1}}],
        ),
    }


def _revoke(note: Schema, named: bool) -> dict[str, Any]:
    what, suffix = ("a named lock", "Lock") if named else ("a lease", "Lease")
    return {"post": _admin(
        f"revoke{suffix}", f"Force-release {what}",
        "The holder's tabs, on every process, get `released` with reason `revoked` and "
        "`by: {id: admin, name: <by>}`; the audit log records `reason` as the note.",
        {"200": _json("Released.", _obj({
            "released": {"const": True}, "fence": INT, **({"lock": STR} if named else {}),
            "holder": _nullable(_obj({"user": _ref("Person"), "tab": STR})),
        })),
         "400": _error("Invalid workspace or lock id."),
         "409": _json("Nobody holds it.", _obj({"released": {"const": False}, "error": STR}))},
        parameters=[WORKSPACE, LOCK] if named else [WORKSPACE],
        requestBody={"required": False, "content": {"application/json": {"schema": note}}},
    )}



def _document(note: Schema) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "presence HTTP API",
            "version": __version__,
            "description": (
                "The HTTP surface of a presence server: `/api/v1` for app backends (is this fence still the "
                "lease's?), `/admin/api` for operators. The WebSocket protocol of `/ws` is described in "
                "docs/protocol.md and docs/protocol.schema.json. Liveness is `GET /healthz`, readiness "
                "`GET /readyz`, Prometheus metrics `GET /metrics`."
            ),
        },
        "tags": [{"name": "api", "description": "For app backends (PRESENCE_API_KEY)"},
                 {"name": "admin", "description": "For operators (PRESENCE_ADMIN_TOKEN)"}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "PRESENCE_API_KEY (or the X-Api-Key header)"},
                "admin": {"type": "http", "scheme": "bearer", "description": "PRESENCE_ADMIN_TOKEN"},
            },
            "schemas": _components(),
        },
        "paths": {
            "/api/v1/workspaces/{workspace}/lease": _lease_operations(named=False),
            "/api/v1/workspaces/{workspace}/locks/{lock}": _lease_operations(named=True),
            "/api/v1/leases": _batch_read(),
            "/admin/api/workspaces": {"get": _admin(
                "listWorkspaces", "Active workspaces",
                "Active workspaces whose id contains `q` (case-insensitive), the first `limit` by id, with the live "
                "servers and their totals.",
                {"200": _json("A page of workspaces.", _obj({
                    "now": INT, "total": INT, "matching": INT,
                    "workspaces": {"type": "array", "items": _ref("WorkspaceRow")},
                    "servers": {"type": "array", "items": _ref("Server")},
                    "totals": {"type": "object"},
                })),
                 "400": _error("`limit` is not a whole number in digits 0-9.")},
                parameters=[
                    {"name": "q", "in": "query", "schema": STR, "description": "part of the workspace id"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                                 "default": 100}},
                ],
            )},
            "/admin/api/workspaces/{workspace}": {"get": _admin(
                "getWorkspace", "One workspace with every tab", "The workspace as tabs see it, and each of its tabs.",
                {"200": _json("The workspace.", _obj({"now": INT, "workspace": _ref("WorkspaceDetail")})),
                 "400": _error("Invalid workspace id.")},
                parameters=[WORKSPACE],
            )},
            "/admin/api/workspaces/{workspace}/release": _revoke(note, named=False),
            "/admin/api/workspaces/{workspace}/locks/{lock}/release": _revoke(note, named=True),
            "/admin/api/workspaces/{workspace}/tabs/{conn}/close": {"post": _admin(
                "closeTab", "Close one tab",
                "Closes the tab with close code 4000 on whichever process has it (the client reconnects).",
                {"202": _json("Closing.", _obj({"closing": STR})),
                 "400": _error("Invalid workspace id."),
                 "404": _error("No such tab in that workspace, or the admin API is disabled.")},
                parameters=[WORKSPACE, {"name": "conn", "in": "path", "required": True, "schema": STR,
                                        "description": "the tab's connection id (`conn` of its welcome)"}],
                requestBody={"required": False, "content": {"application/json": {
                    "schema": {"type": "object", "properties": {"reason": STR}}}}},
            )},
            "/admin/api/servers": {"get": _admin(
                "listServers", "Live server processes", "Every process that announced itself within three heartbeats.",
                {"200": _json("The servers.", _obj({"now": INT, "servers": {"type": "array",
                                                                              "items": _ref("Server")}}))},
            )},
            "/admin/api/audit": {"get": _admin(
                "getAudit", "The audit log", "Lease changes, newest first; `next` is the `before` of the next page.",
                {"200": _json("A page of entries.", _obj({
                    "entries": {"type": "array", "items": _ref("AuditEntry")}, "next": _nullable(STR)})),
                 "400": _error("`before` is not a stream id, or `limit` not a whole number in digits 0-9.")},
                parameters=[
                    {"name": "before", "in": "query", "schema": {"type": "string", "pattern": r"^[0-9]+-[0-9]+$"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                                                 "default": 50}},
                ],
            )},
            "/admin/api/live": {"get": {
                "tags": ["admin"], "operationId": "liveFeed", "summary": "The dashboard's live feed (WebSocket)",
                "description": "A WebSocket. Send `{\"token\": \"<PRESENCE_ADMIN_TOKEN>\", \"q\": \"...\"}` "
                               "first (browsers cannot set headers on a WebSocket, and a URL would land in logs), "
                               "then `{\"q\"}` to change the filter. Receives `{\"type\": \"state\", ...}` (the "
                               "workspaces page, about every second) and `{\"type\": \"audit\", \"entries\"}` "
                               "frames. Closes 4400 (no token frame in 5 s), 4401 (wrong token), 4404 (the "
                               "admin API is disabled), 1012 (the server is stopping).",
                "responses": {"101": {"description": "Switching to the WebSocket protocol."}},
            }},
        },
    }


@functools.cache
def render() -> str:
    """The document as served at ``/openapi.json`` and written to docs/openapi.json: built once per process."""
    return json.dumps(openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    raise SystemExit(docfile.main(sys.argv[1:], render, DOC_PATH, "presence.http.openapi"))
