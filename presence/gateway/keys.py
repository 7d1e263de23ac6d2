"""Keys: every Redis key and channel name the server uses, in one place.

Every key of a workspace, and its channel ``<prefix>:{ws}``, share the hash tag ``{ws}``: every
workspace script touches one Cluster slot. The registry keys share the hash tag ``{#registry}``
(no workspace id can contain ``#``); the audit streams and the control channel are global.
"""

from __future__ import annotations

from dataclasses import dataclass


def _base(prefix: str, workspace: str) -> str:
    return f"{prefix}:{{{workspace}}}"


def lease_key(prefix: str, workspace: str) -> str:
    """The key of a workspace's lease; its value is the fence of the current grant."""
    return f"{_base(prefix, workspace)}:lease"


@dataclass(frozen=True, slots=True)
class WorkspaceKeys:
    """Redis names of one workspace."""

    workspace: str
    channel: str
    lease: str
    holder: str
    fence: str
    seq: str
    tabs: str
    info: str
    queue: str
    request: str

    @classmethod
    def of(cls, prefix: str, workspace: str) -> WorkspaceKeys:
        base = _base(prefix, workspace)
        return cls(
            workspace=workspace, channel=base, lease=lease_key(prefix, workspace), holder=f"{base}:holder",
            fence=f"{base}:fence", seq=f"{base}:seq", tabs=f"{base}:tabs", info=f"{base}:info",
            queue=f"{base}:queue", request=f"{base}:request",
        )

    @property
    def by_name(self) -> dict[str, str]:
        """The eight keys by the names the workspace scripts take them by (_lib.lua's header)."""
        return {
            "lease": self.lease, "holder": self.holder, "fence": self.fence, "seq": self.seq, "tabs": self.tabs,
            "info": self.info, "queue": self.queue, "request": self.request,
        }


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    servers: str  # zset id -> expiry (Redis time, ms)
    server_info: str  # hash id -> JSON
    workspaces: str  # zset workspace -> expiry

    @property
    def by_name(self) -> dict[str, str]:
        """The keys by the names announce.lua and census.lua take them by."""
        return {"servers": self.servers, "server_info": self.server_info, "workspaces": self.workspaces}


class Keys:
    """The names under one ``PRESENCE_KEY_PREFIX``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.audit = f"{prefix}:audit"
        self.audit_forced = f"{prefix}:audit:forced"  # takeovers, revocations, expiries, idle releases
        self.control = f"{prefix}:control"
        tag = f"{prefix}:{{#registry}}"
        self.registry = RegistryKeys(f"{tag}:servers", f"{tag}:server_info", f"{tag}:workspaces")
        self._workspaces: dict[str, WorkspaceKeys] = {}

    def workspace(self, workspace: str) -> WorkspaceKeys:
        k = self._workspaces.get(workspace)
        if k is None:
            if len(self._workspaces) > 10_000:
                self._workspaces.clear()  # a cache, not a registry: keep it bounded
            k = self._workspaces[workspace] = WorkspaceKeys.of(self.prefix, workspace)
        return k
