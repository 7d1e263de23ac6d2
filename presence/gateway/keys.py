"""Keys: every Redis key and channel name the server uses, in one place.

Every key of a workspace (its named locks' too), and its channel ``<prefix>:{ws}``, share the hash
tag ``{ws}``: every workspace script touches one Cluster slot. The registry keys share the hash
tag ``{#registry}`` (no workspace id can contain ``#``); the audit streams and the control channel
are global.
"""

from __future__ import annotations

from dataclasses import dataclass


def _base(prefix: str, workspace: str) -> str:
    return f"{prefix}:{{{workspace}}}"


def lease_key(prefix: str, workspace: str, lock: str = "") -> str:
    """The key of a lease (the workspace's own, or named lock ``lock``'s); its value is the
    fence of the current grant."""
    return WorkspaceKeys.of(prefix, workspace).lock(lock).lease


LOCK_KEYS = ("lease", "holder", "fence", "queue", "request")


@dataclass(frozen=True, slots=True)
class LockKeys:
    """Redis names of one lock's lease: the lease, its holder record, fence counter, wait queue and
    pending handoff request."""

    lease: str
    holder: str
    fence: str
    queue: str
    request: str

    @classmethod
    def under(cls, base: str) -> LockKeys:
        lease, holder, fence, queue, request = (f"{base}{name}" for name in LOCK_KEYS)
        return cls(lease, holder, fence, queue, request)


@dataclass(frozen=True, slots=True)
class WorkspaceKeys:
    """Redis names of one workspace. ``lease`` ... ``request`` are its own lease's (lock ``""``),
    under the names they had before named locks existed (``<prefix>:{ws}:lease``); :meth:`lock`
    gives any lock's (a named lock L's: ``<prefix>:{ws}:lock:L:lease``, ...); ``locks`` is the set
    of the named locks that have keys."""

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
    locks: str
    lock_base: str  # the named locks' key names start with it (no key itself)

    @classmethod
    def of(cls, prefix: str, workspace: str) -> WorkspaceKeys:
        base = _base(prefix, workspace)
        own = LockKeys.under(f"{base}:")
        return cls(
            workspace=workspace, channel=base, lease=own.lease, holder=own.holder, fence=own.fence,
            seq=f"{base}:seq", tabs=f"{base}:tabs", info=f"{base}:info", queue=own.queue, request=own.request,
            locks=f"{base}:locks", lock_base=f"{base}:lock:",
        )

    def lock(self, lock: str) -> LockKeys:
        """The keys of ``lock``'s lease ("": the workspace's own)."""
        if not lock:
            return LockKeys(self.lease, self.holder, self.fence, self.queue, self.request)
        # The last segment of a key name is one of LOCK_KEYS, never part of a lock id (ids may
        # contain ':'), so no two locks share a key. _workspace.lua's lock_of builds the same names.
        return LockKeys.under(f"{self.lock_base}{lock}:")

    def by_name(self, lock: str = "") -> dict[str, str]:
        """The ten keys by the names the workspace scripts take them by (_workspace.lua's header), the
        first five ``lock``'s."""
        k = self.lock(lock)
        return {
            "lease": k.lease, "holder": k.holder, "fence": k.fence, "queue": k.queue, "request": k.request,
            "seq": self.seq, "tabs": self.tabs, "info": self.info, "locks": self.locks, "lock_base": self.lock_base,
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
