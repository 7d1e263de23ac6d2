"""Lease engine: the workspace operations, each one Lua script run atomically in Redis.

Acquire is ``SET NX PX`` inside a script; renew, release, takeover and grace-shortening are
compare-and-set scripts on the lease's fence; every change publishes a sequenced event from the
same script. This module maps those scripts to typed Python calls. The scripts themselves live
in ``presence/gateway/lua/`` with a KEYS/ARGV/returns header each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.crc import key_slot

from .protocol import Person
from .replica import Event, Snapshot, TabInfo, decode_event, encode_info
from .settings import Settings
from .store import Call, Store

log = logging.getLogger("presence.lease")

RENEW_CHUNK = 500  # leases per renew script call: bounds how long one call blocks Redis
TOUCH_CHUNK = 200  # workspaces per touch script call


@dataclass(frozen=True, slots=True)
class WorkspaceKeys:
    """Redis names of one workspace. All share the hash tag ``{workspace}``: one cluster slot."""

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
        base = f"{prefix}:{{{workspace}}}"
        return cls(
            workspace=workspace,
            channel=base,
            lease=f"{base}:lease",
            holder=f"{base}:holder",
            fence=f"{base}:fence",
            seq=f"{base}:seq",
            tabs=f"{base}:tabs",
            info=f"{base}:info",
            queue=f"{base}:queue",
            request=f"{base}:request",
        )

    @property
    def all(self) -> list[str]:
        """The eight keys in the order every single-workspace script expects (see _lib.lua)."""
        return [self.lease, self.holder, self.fence, self.seq, self.tabs, self.info, self.queue, self.request]


@dataclass(slots=True)
class Outcome:
    """A script's answer: its status word, its detail object and the events it published."""

    status: str
    detail: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    sent_at: float = 0.0  # loop time the script was sent

    def int(self, name: str) -> int:
        return int(self.detail[name])


_detail_decoder = msgspec.json.Decoder(dict[str, Any])
_person_encoder = msgspec.json.Encoder()


def _outcome(reply: Sequence[str], sent_at: float) -> Outcome:
    status, raw, *events = reply
    detail = _detail_decoder.decode(raw) if raw else {}
    return Outcome(status, detail, [_sent(decode_event(e), sent_at) for e in events], sent_at)


def _sent(event: Event, sent_at: float) -> Event:
    event.sent_at = sent_at
    return event


@dataclass(frozen=True, slots=True)
class Joined:
    rejoined: bool
    fence: int | None
    snapshot: Snapshot
    events: list[Event]


@dataclass(frozen=True, slots=True)
class TouchResult:
    workspace: str
    missing: list[str]
    events: list[Event]


EventsObserver = Callable[[str, list[Event]], None]


class LeaseStore:
    """Typed calls to the workspace scripts.

    ``observers`` are called with ``(workspace, events)`` for every event a script run by *this*
    process published: each change is seen exactly once across all processes (audit, metrics).
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.scripts = store.scripts
        self.observers: list[EventsObserver] = []
        self._keys: dict[str, WorkspaceKeys] = {}

    def _observe(self, workspace: str, events: list[Event]) -> None:
        if not events:
            return
        for observer in self.observers:
            try:
                observer(workspace, events)
            except Exception:
                log.exception("events observer %r failed", observer)

    def keys(self, workspace: str) -> WorkspaceKeys:
        k = self._keys.get(workspace)
        if k is None:
            if len(self._keys) > 10_000:
                self._keys.clear()  # a cache, not a registry: keep it bounded
            k = self._keys[workspace] = WorkspaceKeys.of(self.settings.key_prefix, workspace)
        return k

    def _head(self, k: WorkspaceKeys) -> list[str | int]:
        s = self.settings
        return [k.channel, self.store.publish_command, s.lease_ttl_ms, s.lease_scope]

    async def _run(self, name: str, workspace: str, *args: str | int) -> Outcome:
        k = self.keys(workspace)
        sent_at = asyncio.get_running_loop().time()
        reply = await self.store.call(self.scripts[name], k.all, [*self._head(k), *args])
        out = _outcome(reply, sent_at)
        self._observe(workspace, out.events)
        return out

    async def acquire(
        self, workspace: str, user: str, name: str, tab: str, origin: str, wait: bool = False
    ) -> Outcome:
        return await self._run("acquire", workspace, user, name, tab, origin, "1" if wait else "0")

    async def takeover(self, workspace: str, user: str, name: str, tab: str, origin: str) -> Outcome:
        cooldown = self.settings.takeover_cooldown_ms
        return await self._run("takeover", workspace, user, name, tab, origin, cooldown)

    async def request(
        self, workspace: str, user: str, name: str, tab: str, origin: str, message: str
    ) -> Outcome:
        """Ask the holder for the lease (polite handoff)."""
        timeout = self.settings.handoff_timeout_ms
        return await self._run("request", workspace, user, name, tab, origin, message, timeout)

    async def handoff(
        self, workspace: str, mode: str, arg: str | int, may_take_over: bool = False, by: Person | None = None
    ) -> Outcome:
        """Resolve a pending request: ``decline`` (arg: the holder's fence), ``cancel`` or
        ``timeout`` (arg: the requester's conn)."""
        by_json = _person_encoder.encode(by).decode() if by is not None else ""
        return await self._run("handoff", workspace, mode, str(arg), "1" if may_take_over else "0", by_json)

    async def release(
        self, workspace: str, fence: int | None, reason: str = "released", origin: str = "",
        by: Person | None = None,
    ) -> Outcome:
        """Release the lease granted with ``fence``; ``None`` releases whoever holds it."""
        by_json = _person_encoder.encode(by).decode() if by is not None else ""
        token = "" if fence is None else str(fence)
        return await self._run("release", workspace, token, reason, origin, by_json)

    async def join(self, workspace: str, conn: str, info: TabInfo) -> Joined:
        out = await self._run(
            "join", workspace, conn, encode_info(info), info.user, info.tab, self.settings.presence_ttl_ms
        )
        d = out.detail
        snapshot = msgspec.convert(d["snapshot"], Snapshot, strict=False)
        snapshot.sent_at = out.sent_at
        fence = int(d["fence"]) if d.get("fence") is not None else None
        return Joined(bool(d["rejoined"]), fence, snapshot, out.events)

    async def leave(self, workspace: str, conn: str, clean: bool) -> Outcome:
        return await self._run("leave", workspace, conn, "1" if clean else "0", self.settings.grace_ms)

    async def status(self, workspace: str, conn: str, info: TabInfo) -> Outcome:
        return await self._run("status", workspace, conn, encode_info(info))

    async def snapshot(self, workspace: str) -> tuple[Snapshot, list[Event]]:
        out = await self._run("snapshot", workspace)
        snapshot = msgspec.convert(out.detail, Snapshot, strict=False)
        snapshot.sent_at = out.sent_at
        return snapshot, out.events

    async def check_expiry(self, workspace: str) -> tuple[int | None, list[Event]]:
        """Announce the lease's expiry if it is gone; else return its PTTL."""
        out = await self._run("expire", workspace)
        return (out.int("ttl_ms") if out.status == "held" else None), out.events

    # -- heartbeat batches ------------------------------------------------------------------

    def _group(self, workspaces: Iterable[str]) -> dict[int, list[str]]:
        """Group workspaces so each script call touches one slot on Cluster (any on plain Redis)."""
        groups: dict[int, list[str]] = defaultdict(list)
        for ws in workspaces:
            groups[key_slot(self.keys(ws).lease.encode()) if self.store.cluster else 0].append(ws)
        return groups

    def renew_calls(self, leases: dict[str, int]) -> list[tuple[list[str], Call]]:
        """Calls that renew ``{workspace: fence}``; each with the workspaces it covers, in order."""
        calls = []
        ttl = self.settings.lease_ttl_ms
        for group in self._group(leases).values():
            for i in range(0, len(group), RENEW_CHUNK):
                chunk = group[i : i + RENEW_CHUNK]
                keys = [self.keys(ws).lease for ws in chunk]
                args: list[str | int] = [ttl, ",".join([str(leases[ws]) for ws in chunk])]
                calls.append((chunk, Call(self.scripts["renew"], keys, args)))
        return calls

    def touch_calls(self, tabs: dict[str, list[str]]) -> list[tuple[list[str], Call]]:
        """Calls that refresh ``{workspace: [conn, ...]}`` presence entries and prune dead ones."""
        calls = []
        for group in self._group(tabs).values():
            for i in range(0, len(group), TOUCH_CHUNK):
                chunk = group[i : i + TOUCH_CHUNK]
                keys: list[str] = []
                args: list[str | int] = [self.settings.presence_ttl_ms, self.store.publish_command]
                for ws in chunk:
                    k = self.keys(ws)
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
        renew = self.renew_calls(leases)
        touch = self.touch_calls(tabs)
        sent_at = asyncio.get_running_loop().time()
        results = await self.store.batch([c for _, c in renew] + [c for _, c in touch])
        renewed: dict[str, bool] = {}
        for (chunk, _), res in zip(renew, results[: len(renew)], strict=True):
            for j, ws in enumerate(chunk):
                renewed[ws] = not isinstance(res, Exception) and res[j] == "1"
        touched: list[TouchResult] = []
        for (chunk, _), res in zip(touch, results[len(renew) :], strict=True):
            if isinstance(res, Exception):
                touched += [TouchResult(ws, [], []) for ws in chunk]
                continue
            for ws, (missing, *events) in zip(chunk, res, strict=True):
                gone = list(_detail_decoder.decode(missing)) if missing else []
                touched.append(TouchResult(ws, gone, [_sent(decode_event(e), sent_at) for e in events]))
                self._observe(ws, touched[-1].events)
        return renewed, touched
