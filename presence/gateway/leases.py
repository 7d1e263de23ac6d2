"""Leases: the workspace operations as typed calls, each one Lua script run atomically in Redis.

Acquire is ``SET NX PX`` inside a script; renew, release, takeover and grace-shortening are
compare-and-set scripts on the lease's fence; every change publishes a sequenced event from the
same script. The scripts live in ``presence/gateway/lua/`` with a KEYS/ARGV/returns header each;
their replies are typed in :mod:`presence.gateway.replies`.

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
from dataclasses import dataclass

import msgspec
from redis.crc import key_slot

from ..core.effects import Replication
from ..core.events import Event, LeaseObserver, decode_event
from ..core.records import Snapshot, TabInfo, encode_info
from ..errors import StoreUnavailable
from ..settings import Settings
from ..wire.messages import Person
from . import replies as r
from .gateway import Gateway
from .keys import Keys, WorkspaceKeys
from .scripts import Call

log = logging.getLogger("presence.leases")

RENEW_CHUNK = 500  # leases per renew script call: bounds how long one call blocks Redis
TOUCH_CHUNK = 200  # workspaces per touch script call

_acquire: r.ReplyDecoder[r.AcquireReply] = r.ReplyDecoder(r.Granted, r.Rejoined, r.Busy, r.Waiting)
_takeover: r.ReplyDecoder[r.TakeoverReply] = r.ReplyDecoder(r.Granted, r.TakenOver, r.Rejoined, r.Cooldown)
_request: r.ReplyDecoder[r.RequestReply] = r.ReplyDecoder(r.Granted, r.Rejoined, r.Asked, r.Pending)
_handoff: r.ReplyDecoder[r.HandoffReply] = r.ReplyDecoder(r.Ended, r.TakenOver, r.Early, r.NoSuchRequest)
_release: r.ReplyDecoder[r.ReleaseReply] = r.ReplyDecoder(r.Relinquished, r.Dequeued, r.NotHolder)
_join: r.ReplyDecoder[r.Entered] = r.ReplyDecoder(r.Entered)
_leave: r.ReplyDecoder[r.LeaveReply] = r.ReplyDecoder(r.Left, r.Gone)
_status: r.ReplyDecoder[r.StatusReply] = r.ReplyDecoder(r.Done, r.Gone)
_snapshot: r.ReplyDecoder[Snapshot] = r.ReplyDecoder(Snapshot)
_expire: r.ReplyDecoder[r.ExpireReply] = r.ReplyDecoder(r.Held, r.Free)
_missing = msgspec.json.Decoder(dict[str, int])
_person = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class TouchResult:
    """One workspace's presence refresh: conns whose entry was gone, and the events published."""

    workspace: str
    missing: list[str]
    events: list[Event]


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

    def _head(self, k: WorkspaceKeys, ttl_ms: int | None = None) -> list[str | int]:
        s = self.settings
        return [k.channel, self.gateway.publish_command, ttl_ms or s.lease_ttl_ms, s.lease_scope, s.key_idle_ms]

    async def _run(
        self, decoder: r.ReplyDecoder[r.R], name: str, workspace: str, *args: str | int, ttl_ms: int | None = None
    ) -> r.Outcome[r.R]:
        out, _ = await self._script(decoder, name, workspace, args, ttl_ms, replicas=0)
        return out

    async def _script(
        self, decoder: r.ReplyDecoder[r.R], name: str, workspace: str, args: Sequence[str | int],
        ttl_ms: int | None, replicas: int,
    ) -> tuple[r.Outcome[r.R], int]:
        """Run workspace script ``name`` (then, with ``replicas``, WAIT for them): its decoded
        outcome, observed, and how many replicas acknowledged it (0 without WAIT)."""
        k = self.keys.workspace(workspace)
        script, argv = self.scripts[name], [*self._head(k, ttl_ms), *args]
        sent_at = asyncio.get_running_loop().time()
        if replicas > 0:
            timeout_ms = self.settings.redis_wait_timeout_ms
            reply, acked = await self.gateway.call_replicated(script, k.all, argv, replicas, timeout_ms)
        else:
            reply, acked = await self.gateway.call(script, k.all, argv), 0
        out = decoder.decode(reply, sent_at)
        self._observe(workspace, out.events)
        return out, acked

    async def _grant(
        self, decoder: r.ReplyDecoder[r.R], name: str, workspace: str, origin: str, *args: str | int,
        ttl_ms: int | None = None,
    ) -> r.Outcome[r.R]:
        """A script that may grant the lease to the caller; with WAIT replicas configured, a grant
        comes back only once that many replicas acknowledged it. A new one they did not is
        withdrawn; a rejoined one (other tabs may hold it, confirmed) is kept, but not confirmed
        to this caller either."""
        replicas = self.settings.redis_wait_replicas
        out, acked = await self._script(decoder, name, workspace, args, ttl_ms, replicas)
        if acked >= replicas or not isinstance(out.reply, r.Granted | r.TakenOver | r.Rejoined):
            return out
        timeout_ms = self.settings.redis_wait_timeout_ms
        withdrawn = not isinstance(out.reply, r.Rejoined)
        if withdrawn:
            log.warning("%s: grant of fence %d reached %d of %d replicas within %d ms; withdrawn",
                        workspace, out.reply.fence, acked, replicas, timeout_ms)
            with contextlib.suppress(StoreUnavailable):  # else, unrenewed, it expires within one lease TTL
                await self.release(workspace, out.reply.fence, "released", origin)
        raise StoreUnavailable(
            f"the grant reached {acked} of {replicas} replicas within {timeout_ms} ms "
            f"(PRESENCE_REDIS_WAIT_REPLICAS){' and was withdrawn' if withdrawn else ''}"
        )

    async def acquire(
        self, workspace: str, user: str, name: str, tab: str, origin: str, wait: bool = False,
        ttl_ms: int | None = None,
    ) -> r.Outcome[r.AcquireReply]:
        """Take a free lease (``ttl_ms``: a service holder's own TTL; default PRESENCE_LEASE_TTL_MS)."""
        wait_arg = "1" if wait else "0"
        args = (user, name, tab, origin, wait_arg)
        return await self._grant(_acquire, "acquire", workspace, origin, *args, ttl_ms=ttl_ms)

    async def takeover(
        self, workspace: str, user: str, name: str, tab: str, origin: str, ttl_ms: int | None = None
    ) -> r.Outcome[r.TakeoverReply]:
        cooldown = self.settings.takeover_cooldown_ms
        args = (user, name, tab, origin, cooldown)
        return await self._grant(_takeover, "takeover", workspace, origin, *args, ttl_ms=ttl_ms)

    async def renew(self, workspace: str, fence: int, ttl_ms: int) -> bool:
        """Replace the TTL of the lease granted with ``fence`` (a service holder's renewal); False
        once that fence no longer holds it."""
        [(_, call)] = self.renew_calls({workspace: fence}, ttl_ms=ttl_ms)
        reply = await self.gateway.call(call.script, call.keys, call.args)
        return bool(reply == "1")

    async def keep(self, leases: dict[str, int], ttl_ms: int) -> set[str]:
        """Give each of ``{workspace: fence}`` ``ttl_ms`` from now (Redis time), only while that
        fence still holds it: the leases of the tabs a stopping process is about to close, kept
        for the restart grace. One pipelined batch of renew script calls (compare-and-set on each
        fence, the TTL replaced by ``PEXPIRE``). Returns the workspaces whose lease was kept;
        raises ``StoreUnavailable`` when Redis does not answer."""
        calls = self.renew_calls(leases, holders=False, ttl_ms=ttl_ms)
        results = await self.gateway.batch([call for _, call in calls])
        kept: set[str] = set()
        for (chunk, _), res in zip(calls, results, strict=True):
            if isinstance(res, Exception):
                log.warning("keeping %d leases for the restart failed in Redis: %r", len(chunk), res)
                continue
            kept.update(ws for j, ws in enumerate(chunk) if res[j] == "1")
        return kept

    async def replicate(self, workspace: str, fence: int) -> Replication:
        """Renew lease ``fence`` and ``WAIT`` for PRESENCE_REDIS_WAIT_REPLICAS replicas: the renewal
        is written after the grant, so once the replicas have it they have the grant too."""
        [(_, call)] = self.renew_calls({workspace: fence})
        replicas = self.settings.redis_wait_replicas
        reply, acked = await self.gateway.call_replicated(
            call.script, call.keys, call.args, replicas, self.settings.redis_wait_timeout_ms
        )
        if reply != "1":
            return Replication.MOVED_ON
        return Replication.CONFIRMED if acked >= replicas else Replication.UNCONFIRMED

    async def request(
        self, workspace: str, user: str, name: str, tab: str, origin: str, message: str
    ) -> r.Outcome[r.RequestReply]:
        """Ask the holder for the lease (polite handoff)."""
        timeout = self.settings.handoff_timeout_ms
        return await self._grant(_request, "request", workspace, origin, user, name, tab, origin, message, timeout)

    async def handoff(
        self, workspace: str, mode: str, arg: str | int, may_take_over: bool = False, by: Person | None = None
    ) -> r.Outcome[r.HandoffReply]:
        """Resolve a pending request: ``decline`` (arg: the holder's fence), ``cancel`` or
        ``timeout`` (arg: the requester's conn). A timeout never takes the lease over during the
        takeover cooldown: the request then ends with reason ``cooldown``."""
        by_json = _person.encode(by).decode() if by is not None else ""
        may_take = "1" if may_take_over else "0"
        cooldown = self.settings.takeover_cooldown_ms
        return await self._run(_handoff, "handoff", workspace, mode, str(arg), may_take, by_json, cooldown)

    async def release(
        self, workspace: str, fence: int | None, reason: str = "released", origin: str = "",
        by: Person | None = None,
    ) -> r.Outcome[r.ReleaseReply]:
        """Release the lease granted with ``fence``; ``None`` releases whoever holds it."""
        by_json = _person.encode(by).decode() if by is not None else ""
        token = "" if fence is None else str(fence)
        return await self._run(_release, "release", workspace, token, reason, origin, by_json)

    async def join(self, workspace: str, conn: str, info: TabInfo, whole: bool = True) -> r.Outcome[r.Entered]:
        """Enter a tab; with ``whole``, the reply carries the whole workspace (a snapshot)."""
        ttl, flag = self.settings.presence_ttl_ms, "1" if whole else ""
        return await self._run(_join, "join", workspace, conn, encode_info(info), info.user, info.tab, ttl, flag)

    async def leave(self, workspace: str, conn: str, clean: bool) -> r.Outcome[r.LeaveReply]:
        return await self._run(_leave, "leave", workspace, conn, "1" if clean else "0", self.settings.grace_ms)

    async def status(self, workspace: str, conn: str, info: TabInfo) -> r.Outcome[r.StatusReply]:
        return await self._run(_status, "status", workspace, conn, encode_info(info))

    async def snapshot(self, workspace: str) -> r.Outcome[Snapshot]:
        """Read the whole workspace (after announcing a silent expiry and pruning dead tabs)."""
        return await self._run(_snapshot, "snapshot", workspace)

    async def read(self, workspace: str) -> Snapshot:
        return (await self.snapshot(workspace)).reply

    async def read_many(self, workspaces: Sequence[str]) -> dict[str, Snapshot]:
        """Read many workspaces in one pipelined batch (one round trip per Cluster node).

        Raises ``StoreUnavailable`` when Redis is unreachable or any one read failed in Redis.
        """
        calls = []
        for ws in workspaces:
            k = self.keys.workspace(ws)
            calls.append(Call(self.scripts["snapshot"], k.all, self._head(k)))
        sent_at = asyncio.get_running_loop().time()
        results = await self.gateway.batch(calls)
        out: dict[str, Snapshot] = {}
        for ws, reply in zip(workspaces, results, strict=True):
            if isinstance(reply, Exception):
                raise StoreUnavailable(f"Redis refused a snapshot of {ws!r}: {reply}")
            decoded = _snapshot.decode(reply, sent_at)
            self._observe(ws, decoded.events)
            out[ws] = decoded.reply
        return out

    async def check_expiry(self, workspace: str) -> r.Outcome[r.ExpireReply]:
        """Announce the lease's expiry if it is gone; else answer its PTTL."""
        return await self._run(_expire, "expire", workspace)

    # -- heartbeat batches ------------------------------------------------------------------

    def _group(self, workspaces: Iterable[str]) -> dict[int, list[str]]:
        """Group workspaces so each script call touches one slot on Cluster (any on plain Redis)."""
        groups: dict[int, list[str]] = defaultdict(list)
        for ws in workspaces:
            groups[key_slot(self.keys.workspace(ws).lease.encode()) if self.gateway.cluster else 0].append(ws)
        return groups

    def renew_calls(
        self, leases: dict[str, int], holders: bool = True, ttl_ms: int | None = None
    ) -> list[tuple[list[str], Call]]:
        """Calls that renew ``{workspace: fence}`` (for ``ttl_ms``, default the lease TTL); each
        with the workspaces it covers, in order. With ``holders`` they also give the holder
        records the key idle time again."""
        calls = []
        ttl, idle = ttl_ms or self.settings.lease_ttl_ms, self.settings.key_idle_ms if holders else 0
        for group in self._group(leases).values():
            for i in range(0, len(group), RENEW_CHUNK):
                chunk = group[i : i + RENEW_CHUNK]
                if holders:
                    keys = [key for ws in chunk for key in self._lease_and_holder(ws)]
                else:
                    keys = [self.keys.workspace(ws).lease for ws in chunk]
                args: list[str | int] = [ttl, ",".join([str(leases[ws]) for ws in chunk]), idle]
                calls.append((chunk, Call(self.scripts["renew"], keys, args)))
        return calls

    def _lease_and_holder(self, workspace: str) -> tuple[str, str]:
        k = self.keys.workspace(workspace)
        return k.lease, k.holder

    def touch_calls(self, tabs: dict[str, list[str]]) -> list[tuple[list[str], Call]]:
        """Calls that refresh ``{workspace: [conn, ...]}`` presence entries and prune dead ones."""
        calls = []
        for group in self._group(tabs).values():
            for i in range(0, len(group), TOUCH_CHUNK):
                chunk = group[i : i + TOUCH_CHUNK]
                keys: list[str] = []
                args: list[str | int] = [
                    self.settings.presence_ttl_ms, self.gateway.publish_command, self.settings.key_idle_ms
                ]
                for ws in chunk:
                    k = self.keys.workspace(ws)
                    keys += [k.tabs, k.info, k.seq, k.queue, k.request]
                    args += [k.channel, len(tabs[ws]), *tabs[ws]]
                calls.append((chunk, Call(self.scripts["touch"], keys, args)))
        return calls

    async def tick(
        self, leases: dict[str, int], tabs: dict[str, list[str]]
    ) -> tuple[dict[str, bool], list[TouchResult]]:
        """Renew leases and refresh presence in one pipelined batch (one round trip per node).

        Returns ``{workspace: renewed}`` and the touch results. A call that failed inside Redis
        counts as not renewed (the caller re-reads that workspace).
        """
        now = asyncio.get_running_loop().time()
        holders = now >= self._holders_due
        renew = self.renew_calls(leases, holders)
        touch = self.touch_calls(tabs)
        results = await self.gateway.batch([c for _, c in renew] + [c for _, c in touch])
        if holders and not any(isinstance(res, Exception) for res in results[: len(renew)]):
            self._holders_due = now + self.settings.key_idle_ms / 4000
        renewed: dict[str, bool] = {}
        for (chunk, _), res in zip(renew, results[: len(renew)], strict=True):
            if isinstance(res, Exception):
                log.warning("renewing %d leases failed in Redis: %r; they are re-read", len(chunk), res)
            for j, ws in enumerate(chunk):
                renewed[ws] = not isinstance(res, Exception) and res[j] == "1"
        touched: list[TouchResult] = []
        for (chunk, _), res in zip(touch, results[len(renew) :], strict=True):
            if isinstance(res, Exception):
                # Their entries live on until their TTL; the next tick refreshes them again.
                log.warning("refreshing the presence of %d workspaces failed in Redis: %r", len(chunk), res)
                touched += [TouchResult(ws, [], []) for ws in chunk]
                continue
            for ws, (missing, *events) in zip(chunk, res, strict=True):
                gone = list(_missing.decode(missing)) if missing else []
                touched.append(TouchResult(ws, gone, [decode_event(e) for e in events]))
                self._observe(ws, touched[-1].events)
        return renewed, touched
