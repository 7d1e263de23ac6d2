"""Examples of the HTTP API's bodies, by operationId and status, for the OpenAPI document
(:mod:`presence.http.openapi` puts them in; a test validates each against its schema)."""

from __future__ import annotations

from typing import Any

_ALICE = {"id": "alice", "name": "Alice"}
_JOB = {"id": "svc:import", "name": "Nightly import", "service": True}
_FENCE = 1732961234567890
_HOLDER = {"user": _ALICE, "since_ms": 1732961234567, "tabs": 1, "fence": _FENCE}
_LEASE = {"holder": _HOLDER, "fence": _FENCE, "ttl_ms": 13480, "viewers": 2}
_FREE = {"holder": None, "fence": None, "ttl_ms": 0, "viewers": 0}
_JOB_HOLDER = {"user": _JOB, "since_ms": 1732961290001, "tabs": 0, "fence": _FENCE + 1}
_ROW = {
    "workspace": "doc-42", "seq": 31, "ttl_ms": 13480, "tabs": 3, "servers": ["a1b2c3"],
    "holder": {**_HOLDER, "tab": "5b1f0c1e-tab", "held_ms": 64000},
    "locks": {"title": {"holder": {**_HOLDER, "fence": _FENCE + 7, "tab": "5b1f0c1e-tab", "held_ms": 9000},
                        "ttl_ms": 14200}},
    "viewers": [{"user": _ALICE, "tabs": 2, "active": True},
                {"user": {"id": "bob", "name": "Bob"}, "tabs": 1, "active": False}],
}
_SERVER = {"id": "a1b2c3", "pid": 4242, "host": "web-1", "port": 8000, "version": "0.1.0", "connections": 812,
           "workspaces": 140, "leases": 37, "ready": True, "stopping": False}

_LEASES = {"leases": {"doc-42": _LEASE, "doc-43": _FREE, "import-7": {
    "holder": _JOB_HOLDER, "fence": _FENCE + 1, "ttl_ms": 29000, "viewers": 0}}}

RESPONSES: dict[str, dict[str, Any]] = {
    "getLease": {"200": {"workspace": "doc-42", **_LEASE}},
    "takeLease": {"201": {"fence": _FENCE + 1, "ttl_ms": 30000},
                  "409": {"holder": _HOLDER, "retry_ms": 4200}},
    "renewLease": {"200": {"fence": _FENCE + 1, "ttl_ms": 30000}, "409": {"holder": _HOLDER}},
    "releaseLease": {"409": {"holder": None}},
    "getLock": {"200": {"workspace": "doc-42", "lock": "title", **_LEASE}},
    "takeLock": {"201": {"fence": _FENCE + 7, "ttl_ms": 30000}, "409": {"holder": _HOLDER}},
    "renewLock": {"200": {"fence": _FENCE + 7, "ttl_ms": 30000}, "409": {"holder": _HOLDER}},
    "releaseLock": {"409": {"holder": None}},
    "getLeases": {"200": _LEASES},
    "postLeases": {"200": _LEASES},
    "listWorkspaces": {"200": {"now": 1732961298000, "total": 140, "matching": 1, "workspaces": [_ROW],
                               "servers": [_SERVER], "totals": {"connections": 812, "leases": 37}}},
    "getWorkspace": {"200": {"now": 1732961298000, "workspace": {**_ROW, "tab_list": [
        {"conn": "9f3a2c1b-17", "user": _ALICE, "tab": "5b1f0c1e-tab", "active": True, "meta": {"field": "title"},
         "server": "a1b2c3"}]}}},
    "revokeLease": {"200": {"released": True, "fence": _FENCE, "holder": {"user": _ALICE, "tab": "5b1f0c1e-tab"}},
                    "409": {"released": False, "error": "nobody holds the lease"}},
    "revokeLock": {"200": {"released": True, "fence": _FENCE + 7, "lock": "title",
                           "holder": {"user": _ALICE, "tab": "5b1f0c1e-tab"}},
                   "409": {"released": False, "error": "nobody holds lock 'title' of doc-42"}},
    "closeTab": {"202": {"closing": "9f3a2c1b-17"}},
    "listServers": {"200": {"now": 1732961298000, "servers": [_SERVER]}},
    "getAudit": {"200": {"entries": [
        {"id": "1732961290001-0", "kind": "taken_over", "workspace": "doc-42", "user": "bob", "fence": _FENCE + 1,
         "at": 1732961290001, "from_user": "alice"},
        {"id": "1732961234567-0", "kind": "acquired", "workspace": "doc-42", "user": "alice", "fence": _FENCE,
         "at": 1732961234567}], "next": "1732961234567-0"}},
}

REQUESTS: dict[str, Any] = {
    "postLeases": {"workspaces": ["doc-42", "doc-43", "import-7"]},
    "takeLease": {"holder": {"id": "import", "name": "Nightly import"}, "ttl_ms": 30000},
    "renewLease": {"fence": _FENCE + 1, "ttl_ms": 30000},
    "takeLock": {"holder": {"id": "import", "name": "Nightly import"}, "ttl_ms": 30000},
    "renewLock": {"fence": _FENCE + 7, "ttl_ms": 30000},
    "revokeLock": {"reason": "stuck on the title", "by": "ops-oncall"},
    "revokeLease": {"reason": "left the office with the document open", "by": "ops-oncall"},
    "closeTab": {"reason": "stuck tab"},
}


def apply(paths: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Puts each operation's examples into its bodies (every example named here must find its body)."""
    for ops in paths.values():
        for op in ops.values():
            name = op["operationId"]
            for status, example in RESPONSES.get(name, {}).items():
                op["responses"][status]["content"]["application/json"]["example"] = example
            if name in REQUESTS:
                op["requestBody"]["content"]["application/json"]["example"] = REQUESTS[name]
