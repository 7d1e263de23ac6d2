"""Leases: the workspace operations as typed calls, each one Lua script run atomically in Redis.

Acquire is ``SET NX PX`` inside a script; renew, release, takeover and grace-shortening are
compare-and-set scripts on the lease's fence; every change publishes a sequenced event from the
same script. The scripts live in ``presence/gateway/lua/``, each with a KEYS/ARGV/returns header
that declares its arguments (passed here by name); their replies are typed in
:mod:`presence.core.outcomes` and decoded by :mod:`presence.gateway.replies`.

A lease call acts on one lock (``lock=``: ``""`` the workspace's own lease, else a named lock),
each with its own keys and fence counter (:meth:`~presence.gateway.keys.WorkspaceKeys.lock`); a
new grant of a named lock beyond PRESENCE_MAX_LOCKS held in the workspace answers ``TooMany``.
join, leave and snapshot act on every lock of the workspace. The heartbeat's renewals take
``{(workspace, lock): fence}`` and renew any mix of locks in the same calls.

``observers`` see every event a script run by *this* process published, exactly once across all
processes (see :class:`~presence.core.events.LeaseObserver`).

With ``PRESENCE_REDIS_WAIT_REPLICAS=n`` the scripts that answer a tab's request for the lease
(acquire, takeover, request) are followed by ``WAIT n`` on the same connection: a new grant is
returned only once n replicas have it, so a failover to one of them cannot lose it. A grant
that is not acknowledged within ``PRESENCE_REDIS_WAIT_TIMEOUT_MS`` is withdrawn (released with its
fence) and the call fails as Redis unavailable: the tab is answered ``unavailable`` and may retry.
A lease a script handed on (to the next in the queue, to a polite requester) is confirmed by the
grantee's server with :meth:`LeaseScripts.replicate`: a renewal, written after the grant, and WAIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TypeVar

import msgspec
from redis.crc import key_slot

from ..core import outcomes as o
from ..core.effects import Replication
from ..core.events import Event, LeaseObserver, decode_event
from ..core.outcomes import Outcome, R
from ..core.records import Snapshot, TabInfo, encode_info
from ..errors import StoreUnavailable
from ..settings import Settings
from ..wire.messages import Person
from . import replies as r
from .gateway import Gateway
from .keys import Keys, WorkspaceKeys
from .scripts import Arg, Call, Record

log = logging.getLogger("presence.leases")

RENEW_CHUNK = 500  # leases per renew script call: bounds how long one call blocks Redis
TOUCH_CHUNK = 200  # workspaces per touch script call

T = TypeVar("T", str, tuple[str, str])

_missing = msgspec.json.Decoder(dict[str, int])
_person = msgspec.json.Encoder()


def _json(by: Person | None) -> str:
    """A person as a script's JSON argument ('' for none)."""
    return _person.encode(by).decode() if by is not None else ""


class LeaseScripts:
    """Typed calls to the workspace scripts, through the gateway."""

    def __init__(self, gateway: Gateway, settings: Settings, keys: Keys) -> None:
        self.gateway = gateway
        # When the heartbeat's renewals next refresh the holder records' idle expiry (loop time):
        # a quarter of the key idle time after the last tick that did, so they keep at least
        # three quarters of it whichever process renews them.
        self._holders_due = 0.0
        self.settings = settings
        self.keys = keys
        self.scripts = gateway.scripts
        self.observers: list[LeaseObserver] = []

    def _observe(self, workspace: str, events: Sequence[Event]) -> None:
        if not events:
            return
        for observer in self.observers:
            try:
                observer.on_events(workspace, events)
            except Exception:
                log.exception("lease observer %r failed", observer)

    def _head(self, k: WorkspaceKeys, ttl_ms: int | None, lock: str) -> dict[str, Arg]:
        """The arguments every workspace script takes (_workspace.lua)."""
        s = self.settings
        return dict(
            channel=k.channel, publish=self.gateway.publish_command, lease_ttl_ms=ttl_ms or s.lease_ttl_ms,
            scope=s.lease_scope, key_idle_ms=s.key_idle_ms, lock=lock,
        )

    def _call(
        self, name: str, workspace: str, args: dict[str, Arg], ttl_ms: int | None = None, lock: str = ""
    ) -> Call:
        """A call of workspace script ``name`` on ``lock`` ("": the workspace's own lease, and the
        scripts that act on every lock) with its own ``args``, by name."""
        k = self.keys.workspace(workspace)
        script = self.scripts[name]
        return Call(script, script.keys(**k.by_name(lock)), script.argv(**self._head(k, ttl_ms, lock), **args))

    async def _run(
        self, decoder: r.ReplyDecoder[R], workspace: str, ttl_ms: int | None = None, lock: str = "", **args: Arg
    ) -> Outcome[R]:
        out, _ = await self._script(decoder, workspace, args, ttl_ms, lock, replicas=0)
        return out

    async def _script(
        self, decoder: r.ReplyDecoder[R], workspace: str, args: dict[str, Arg], ttl_ms: int | None, lock: str,
        replicas: int,
    ) -> tuple[Outcome[R], int]:
        """Run the workspace script ``decoder`` decodes (then, with ``replicas``, WAIT for them): its
        decoded outcome, observed, and how many replicas acknowledged it (0 without WAIT)."""
        c = self._call(decoder.script, workspace, args, ttl_ms, lock)
        sent_at = asyncio.get_running_loop().time()
        if replicas > 0:
            timeout_ms = self.settings.redis_wait_timeout_ms
            reply, acked = await self.gateway.call_replicated(c.script, c.keys, c.args, replicas, timeout_ms)
        else:
            reply, acked = await self.gateway.call(c.script, c.keys, c.args), 0
        out = decoder.decode(reply, sent_at)
        self._observe(workspace, out.events)
        return out, acked

    async def _grant(
        self, decoder: r.ReplyDecoder[R], workspace: str, ttl_ms: int | None, lock: str, **args: Arg
    ) -> Outcome[R]:
        """A script that may grant the lease to the caller; with WAIT replicas configured, a grant
        comes back only once that many replicas acknowledged it. A new one they did not is
        withdrawn; a rejoined one (other tabs may hold it, confirmed) is kept, but not confirmed
        to this caller either."""
        replicas = self.settings.redis_wait_replicas
        args["max_locks"] = self.settings.max_locks
        out, acked = await self._script(decoder, workspace, args, ttl_ms, lock, replicas)
        if acked >= replicas or not isinstance(out.reply, o.Granted | o.TakenOver | o.Rejoined):
            return out
        timeout_ms = self.settings.redis_wait_timeout_ms
        withdrawn = not isinstance(out.reply, o.Rejoined)
        if withdrawn:
            log.warning("%s: grant of fence %d%s reached %d of %d replicas within %d ms; withdrawn",
                        workspace, out.reply.fence, f" of lock {lock!r}" if lock else "", acked, replicas, timeout_ms)
            with contextlib.suppress(StoreUnavailable):  # else, unrenewed, it expires within one lease TTL
                await self.release(workspace, out.reply.fence, "released", str(args["origin"]), lock=lock)
        raise StoreUnavailable(
            f"the grant reached {acked} of {replicas} replicas within {timeout_ms} ms "
            f"(PRESENCE_REDIS_WAIT_REPLICAS){' and was withdrawn' if withdrawn else ''}"
        )

    async def acquire(
        self, workspace: str, user: str, name: str, tab: str, origin: str, wait: bool = False,
        ttl_ms: int | None = None, lock: str = "",
    ) -> Outcome[o.AcquireReply]:
        """Take a free lease (``ttl_ms``: a service holder's own TTL; default PRESENCE_LEASE_TTL_MS)
        of ``lock`` ("": the workspace's own)."""
        return await self._grant(
            r.ACQUIRE, workspace, ttl_ms, lock, user=user, name=name, tab=tab, origin=origin,
            wait="1" if wait else "0",
        )

    async def takeover(
        self, workspace: str, user: str, name: str, tab: str, origin: str, ttl_ms: int | None = None, lock: str = ""
    ) -> Outcome[o.TakeoverReply]:
        cooldown = self.settings.takeover_cooldown_ms
        return await self._grant(
            r.TAKEOVER, workspace, ttl_ms, lock, user=user, name=name, tab=tab, origin=origin, cooldown_ms=cooldown
        )

    async def renew(self, workspace: str, fence: int, ttl_ms: int, lock: str = "") -> bool:
        """Replace the TTL of the lease granted with ``fence`` (a service holder's renewal); False
        once that fence no longer holds it."""
        [(_, call)] = self.renew_calls({(workspace, lock): fence}, ttl_ms=ttl_ms)
        reply = await self.gateway.call(call.script, call.keys, call.args)
        return bool(reply == "1")

    async def keep(self, leases: dict[tuple[str, str], int], ttl_ms: int) -> set[tuple[str, str]]:
        """Give each of ``{(workspace, lock): fence}`` ``ttl_ms`` from now (Redis time), only while
        that fence still holds it: the leases of the tabs a stopping process is about to close,
        kept for the restart grace. One pipelined batch of renew script calls (compare-and-set on
        each fence, the TTL replaced by ``PEXPIRE``). Returns the leases that were kept; raises
        ``StoreUnavailable`` when Redis does not answer."""
        calls = self.renew_calls(leases, holders=False, ttl_ms=ttl_ms)
        results = await self.gateway.batch([call for _, call in calls])
        kept: set[tuple[str, str]] = set()
        for (chunk, _), res in zip(calls, results, strict=True):
            if isinstance(res, Exception):
                log.warning("keeping %d leases for the restart failed in Redis: %r", len(chunk), res)
                continue
            kept.update(lease for j, lease in enumerate(chunk) if res[j] == "1")
        return kept

    async def replicate(self, workspace: str, fence: int, lock: str = "") -> Replication:
        """Renew lease ``fence`` and ``WAIT`` for PRESENCE_REDIS_WAIT_REPLICAS replicas: the renewal
        is written after the grant, so once the replicas have it they have the grant too."""
        [(_, call)] = self.renew_calls({(workspace, lock): fence})
        replicas = self.settings.redis_wait_replicas
        reply, acked = await self.gateway.call_replicated(
            call.script, call.keys, call.args, replicas, self.settings.redis_wait_timeout_ms
        )
        if reply != "1":
            return Replication.MOVED_ON
        return Replication.CONFIRMED if acked >= replicas else Replication.UNCONFIRMED

    async def request(
        self, workspace: str, user: str, name: str, tab: str, origin: str, message: str, lock: str = ""
    ) -> Outcome[o.RequestReply]:
        """Ask the holder for the lease (polite handoff)."""
        return await self._grant(
            r.REQUEST, workspace, None, lock, user=user, name=name, tab=tab, origin=origin, message=message,
            timeout_ms=self.settings.handoff_timeout_ms,
        )

    async def handoff(
        self, workspace: str, mode: str, arg: str | int, may_take_over: bool = False, by: Person | None = None,
        lock: str = "",
    ) -> Outcome[o.HandoffReply]:
        """Resolve a pending request: ``decline`` (arg: the holder's fence), ``cancel`` or
        ``timeout`` (arg: the requester's conn). A timeout never takes the lease over during the
        takeover cooldown: the request then ends with reason ``cooldown``."""
        return await self._run(
            r.HANDOFF, workspace, lock=lock, mode=mode, target=str(arg), may_take_over="1" if may_take_over else "0",
            by=_json(by), cooldown_ms=self.settings.takeover_cooldown_ms,
        )

    async def release(
        self, workspace: str, fence: int | None, reason: str = "released", origin: str = "",
        by: Person | None = None, lock: str = "",
    ) -> Outcome[o.ReleaseReply]:
        """Release the lease granted with ``fence``; ``None`` releases whoever holds it."""
        token = "" if fence is None else str(fence)
        return await self._run(
            r.RELEASE, workspace, lock=lock, fence=token, reason=reason, origin=origin, by=_json(by)
        )

    async def join(self, workspace: str, conn: str, info: TabInfo, whole: bool = True) -> Outcome[o.Entered]:
        """Enter a tab; with ``whole``, the reply carries the whole workspace (a snapshot)."""
        return await self._run(
            r.JOIN, workspace, conn=conn, info=encode_info(info), user=info.user, tab=info.tab,
            presence_ttl_ms=self.settings.presence_ttl_ms, whole="1" if whole else "", name=info.name,
        )

    async def leave(self, workspace: str, conn: str, clean: bool) -> Outcome[o.LeaveReply]:
        return await self._run(
            r.LEAVE, workspace, conn=conn, clean="1" if clean else "0", grace_ms=self.settings.grace_ms
        )

    async def status(self, workspace: str, conn: str, info: TabInfo) -> Outcome[o.StatusReply]:
        return await self._run(r.STATUS, workspace, conn=conn, info=encode_info(info), user=info.user, name=info.name)

    async def snapshot(self, workspace: str) -> Outcome[Snapshot]:
        """Read the whole workspace (after announcing a silent expiry and pruning dead tabs)."""
        return await self._run(r.SNAPSHOT, workspace)

    async def read(self, workspace: str) -> Snapshot:
        return (await self.snapshot(workspace)).reply

    async def read_many(self, workspaces: Sequence[str]) -> dict[str, Snapshot]:
        """Read many workspaces in one pipelined batch (one round trip per Cluster node).

        Raises ``StoreUnavailable`` when Redis is unreachable or any one read failed in Redis.
        """
        calls = [self._call(r.SNAPSHOT.script, ws, {}) for ws in workspaces]
        sent_at = asyncio.get_running_loop().time()
        results = await self.gateway.batch(calls)
        out: dict[str, Snapshot] = {}
        for ws, reply in zip(workspaces, results, strict=True):
            if isinstance(reply, Exception):
                raise StoreUnavailable(f"Redis refused a snapshot of {ws!r}: {reply}")
            decoded = r.SNAPSHOT.decode(reply, sent_at)
            self._observe(ws, decoded.events)
            out[ws] = decoded.reply
        return out

    async def check_expiry(self, workspace: str, lock: str = "") -> Outcome[o.ExpireReply]:
        """Announce the lease's expiry if it is gone; else answer its PTTL."""
        return await self._run(r.EXPIRE, workspace, lock=lock)

    # -- heartbeat batches ------------------------------------------------------------------

    def _group(self, items: Iterable[T]) -> dict[int, list[T]]:
        """Group workspaces (or ``(workspace, lock)`` pairs: every lock of a workspace is in its
        slot) so each script call touches one slot on Cluster (any on plain Redis)."""
        groups: dict[int, list[T]] = defaultdict(list)
        for item in items:
            ws = item if isinstance(item, str) else item[0]
            groups[key_slot(self.keys.workspace(ws).lease.encode()) if self.gateway.cluster else 0].append(item)
        return groups

    def renew_calls(
        self, leases: dict[tuple[str, str], int], holders: bool = True, ttl_ms: int | None = None
    ) -> list[tuple[list[tuple[str, str]], Call]]:
        """Calls that renew ``{(workspace, lock): fence}`` (for ``ttl_ms``, default the lease TTL);
        each with the leases it covers, in order: one call per RENEW_CHUNK leases of one slot,
        whatever their locks. With ``holders`` they also give the holder records, queues and
        ``locks`` sets the key idle time again."""
        calls = []
        ttl, idle = ttl_ms or self.settings.lease_ttl_ms, self.settings.key_idle_ms if holders else 0
        script = self.scripts["renew"]
        for group in self._group(leases).values():
            for i in range(0, len(group), RENEW_CHUNK):
                chunk = group[i : i + RENEW_CHUNK]
                keys = [key for lease in chunk for key in self._renewed_keys(lease, holders)]
                fences = ",".join([str(leases[lease]) for lease in chunk])
                args = script.argv(lease_ttl_ms=ttl, fences=fences, key_idle_ms=idle)
                calls.append((chunk, Call(script, script.keys(leases=keys), args)))
        return calls

    def _renewed_keys(self, lease: tuple[str, str], holders: bool) -> tuple[str, ...]:
        """What renew.lua takes per lease: the lease key, and with ``holders`` what lives with it."""
        workspace, lock = lease
        k = self.keys.workspace(workspace)
        lk = k.lock(lock)
        return (lk.lease, lk.holder, lk.queue, k.locks) if holders else (lk.lease,)

    def touch_calls(self, tabs: dict[str, list[str]]) -> list[tuple[list[str], Call]]:
        """Calls that refresh ``{workspace: [conn, ...]}`` presence entries and prune dead ones."""
        calls = []
        script = self.scripts["touch"]
        for group in self._group(tabs).values():
            for i in range(0, len(group), TOUCH_CHUNK):
                chunk = group[i : i + TOUCH_CHUNK]
                ks = [self.keys.workspace(ws) for ws in chunk]
                keys = script.keys(workspaces=[
                    {"tabs": k.tabs, "info": k.info, "seq": k.seq, "queue": k.queue, "request": k.request,
                     "locks": k.locks, "lock_base": k.lock_base}
                    for k in ks
                ])
                conns: list[Record] = [
                    {"channel": k.channel, "n": len(tabs[k.workspace]), "conns": tabs[k.workspace]} for k in ks
                ]
                args = script.argv(
                    presence_ttl_ms=self.settings.presence_ttl_ms, publish=self.gateway.publish_command,
                    key_idle_ms=self.settings.key_idle_ms, workspaces=conns,
                )
                calls.append((chunk, Call(script, keys, args)))
        return calls

    async def tick(
        self, leases: dict[tuple[str, str], int], tabs: dict[str, list[str]]
    ) -> tuple[dict[tuple[str, str], bool], dict[str, Outcome[o.Touched]]]:
        """Renew leases (``{(workspace, lock): fence}``) and refresh presence in one pipelined
        batch (one round trip per node).

        Returns ``{(workspace, lock): renewed}`` and each workspace's refresh. A call that failed
        inside Redis counts as not renewed (the caller re-reads that workspace).
        """
        now = asyncio.get_running_loop().time()
        holders = now >= self._holders_due
        renew = self.renew_calls(leases, holders)
        touch = self.touch_calls(tabs)
        results = await self.gateway.batch([c for _, c in renew] + [c for _, c in touch])
        if holders and not any(isinstance(res, Exception) for res in results[: len(renew)]):
            self._holders_due = now + self.settings.key_idle_ms / 4000
        renewed: dict[tuple[str, str], bool] = {}
        for (chunk, _), res in zip(renew, results[: len(renew)], strict=True):
            if isinstance(res, Exception):
                log.warning("renewing %d leases failed in Redis: %r; they are re-read", len(chunk), res)
            for j, lease in enumerate(chunk):
                renewed[lease] = not isinstance(res, Exception) and res[j] == "1"
        touched: dict[str, Outcome[o.Touched]] = {}
        for (workspaces, _), res in zip(touch, results[len(renew) :], strict=True):
            if isinstance(res, Exception):
                # Their entries live on until their TTL; the next tick refreshes them again.
                log.warning("refreshing the presence of %d workspaces failed in Redis: %r", len(workspaces), res)
                continue
            for ws, (missing, *events) in zip(workspaces, res, strict=True):
                gone = list(_missing.decode(missing)) if missing else []
                touched[ws] = Outcome(o.Touched(gone), [decode_event(e) for e in events], now)
                self._observe(ws, touched[ws].events)
        return renewed, touched
