"""Service commands: what a backend job's lease requests do (an import, a migration, an agent
holding a workspace's lease, or one of its named locks, through the HTTP API).

The job holds the lease as user ``svc:<id>`` (tab ``svc:<id>``): tabs see it like any holder
(``{id: "svc:<id>", name, service: true}``), with the usual busy, queue, request and takeover
behaviour, and the audit log records it like any holder. Nothing renews a service's lease but
the job itself (``renew``, which replaces the TTL); a tab that takes it over, a request that times
out or an expiry ends it, and the job learns it at its next renewal (refused). Taking again with
the same holder id answers the same fence (a retried take).

Each command runs one script and answers what happened as a value the HTTP layer maps to its
status codes; a request that breaks a rule raises ``BadMessage``, Redis trouble ``Unavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ..auth import MAX_NAME, MAX_SUB, is_text
from ..core import outcomes as o
from ..core.lease_view import lease_view
from ..errors import BadMessage, StoreUnavailable, TooManyLocks, Unavailable
from ..gateway.leases import LeaseScripts
from ..wire.messages import SERVICE_PREFIX, HolderView

MIN_TTL_MS = 500  # below this a renewal cannot keep up with a network hiccup
MAX_TTL_MS = 3_600_000  # an hour: a crashed job must not block a document for longer


class ServiceHolder(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """The job holds the lease with ``fence`` for ``ttl_ms`` from now (taken, or renewed)."""

    fence: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Refused:
    """Someone else holds it (``holder`` as other users see it; None: nobody any more): the job's
    take is refused, or its fence no longer holds it. ``retry_ms``: a takeover refused by the
    takeover cooldown, until it may be tried again."""

    holder: HolderView | None
    retry_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Let:
    """The job's release went through."""


class ServiceCommands:
    """``max_ttl_ms``: the longest TTL a job may ask for: an hour, and never more than half the
    key idle time (the holder record must outlive the lease it describes)."""

    def __init__(self, leases: LeaseScripts, lease_ttl_ms: int, key_idle_ms: int) -> None:
        self.leases = leases
        self.default_ttl_ms = lease_ttl_ms
        self.max_ttl_ms = min(MAX_TTL_MS, key_idle_ms // 2)

    def ttl(self, ttl_ms: int | None) -> int:
        """The TTL a job asks for (default: the lease TTL). Raises ``BadMessage`` out of bounds."""
        ttl = self.default_ttl_ms if ttl_ms is None else ttl_ms
        if not MIN_TTL_MS <= ttl <= self.max_ttl_ms:
            raise BadMessage(f"ttl_ms must be between {MIN_TTL_MS} and {self.max_ttl_ms}")
        return ttl

    @staticmethod
    def identity(holder: ServiceHolder) -> tuple[str, str]:
        """The user id (``svc:<id>``) and display name of a job. Raises ``BadMessage``."""
        name = holder.name or holder.id
        longest = MAX_SUB - len(SERVICE_PREFIX)
        if not holder.id or len(holder.id) > longest or not is_text(holder.id):
            raise BadMessage(f"holder.id must be 1-{longest} characters")
        if len(name) > MAX_NAME or not is_text(name):
            raise BadMessage(f"holder.name must be at most {MAX_NAME} characters")
        return SERVICE_PREFIX + holder.id, name

    async def take(
        self, workspace: str, lock: str, holder: ServiceHolder, ttl_ms: int | None, takeover: bool
    ) -> Held | Refused:
        user, name = self.identity(holder)
        ttl = self.ttl(ttl_ms)
        try:
            if takeover:
                taken = await self.leases.takeover(workspace, user, name, user, "", ttl_ms=ttl, lock=lock)
                match taken.reply:
                    case o.Cooldown(retry_ms=retry_ms):
                        return await self._refused(workspace, lock, retry_ms)
                    case o.TooMany(limit=limit):
                        raise TooManyLocks(f"a workspace may hold at most {limit} named locks at once")
                    case o.Granted() | o.TakenOver() | o.Rejoined() as grant:
                        return Held(grant.fence, ttl)
            else:
                out = await self.leases.acquire(workspace, user, name, user, "", ttl_ms=ttl, lock=lock)
                if isinstance(out.reply, o.TooMany):
                    raise TooManyLocks(f"a workspace may hold at most {out.reply.limit} named locks at once")
                if isinstance(out.reply, o.Granted | o.Rejoined):
                    return Held(out.reply.fence, ttl)
            return await self._refused(workspace, lock)
        except StoreUnavailable as exc:
            raise Unavailable("Redis unavailable, retry later") from exc

    async def renew(self, workspace: str, lock: str, fence: int, ttl_ms: int | None) -> Held | Refused:
        ttl = self.ttl(ttl_ms)
        try:
            if await self.leases.renew(workspace, fence, ttl, lock=lock):
                return Held(fence, ttl)
            return await self._refused(workspace, lock)
        except StoreUnavailable as exc:
            raise Unavailable("Redis unavailable, retry later") from exc

    async def release(self, workspace: str, lock: str, fence: int) -> Let | Refused:
        try:
            out = await self.leases.release(workspace, fence, "released", lock=lock)
            if isinstance(out.reply, o.Relinquished):
                return Let()
            return await self._refused(workspace, lock)
        except StoreUnavailable as exc:
            raise Unavailable("Redis unavailable, retry later") from exc

    async def _refused(self, workspace: str, lock: str, retry_ms: int | None = None) -> Refused:
        """The current holder (after a refusal), as tabs see it."""
        return Refused(lease_view(await self.leases.read(workspace), lock, with_fence=False).holder, retry_ms)


__all__ = ["Held", "Let", "Refused", "ServiceCommands", "ServiceHolder"]
