"""Watch index: this process's watched workspaces, each a light replica fed by pub/sub.

A watcher (one ``/ws`` connection of a list page) watches up to 500 workspaces. Each watched
workspace is kept here once, however many watchers watch it: the process subscribes to its
channel (the same subscription tabs use, shared through :mod:`presence.engine.channels`), reads
it once with the snapshot script, then applies the events published on the channel to a
:class:`~presence.core.replica.Replica`, exactly as the workspace cores do. After each event the
holder and the number of viewing users are compared with what the watchers were last told; a
difference is sent to every watcher of that workspace as one ``lease`` frame, encoded once.

A gap in the sequence (or a subscription confirmed again after a drop) re-reads the workspace;
events heard while a read is in flight are kept (a bounded few) and applied after it. Watching
costs subscriptions and events, never polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..core.events import Event, decode_event
from ..core.records import Snapshot
from ..core.replica import Applied, Replica
from ..errors import StoreUnavailable, Unavailable
from ..gateway.keys import Keys
from ..gateway.leases import LeaseScripts
from ..settings import Settings
from ..tasks import TaskSet
from ..wire.watch import Lease, WatchedLease, WatchHolder, encode
from .channels import Share

log = logging.getLogger("presence.watchers")

EARLY_EVENTS = 64  # events kept while a read is in flight; more and the read is simply redone


class Recipient(Protocol):
    """A watcher's connection: frames are queued, never awaited."""

    def send_frame(self, text: str, frame: bytes | None = None) -> bool: ...


class LightReplica(Replica):
    """A replica that may be read before anyone used the workspace.

    Such a read answers seq 0 (no sequence key yet), which :class:`Replica` keeps for "never read":
    every event would be a gap. Here the read counts, and the first event heard after it (whatever
    its seq: the scripts seed a new sequence from Redis time) follows on from it; the channel was
    subscribed before the read, so no event can come between. Without this, a fresh workspace's
    first change would be re-read instead of applied, and a quick second change (an acquire soon
    released) could be folded into that read and never told.
    """

    read = False

    def reset(self, snapshot: Snapshot, force: bool = False) -> bool:
        adopted = super().reset(snapshot, force)
        self.read = self.read or adopted
        return adopted

    def apply(self, event: Event) -> Applied:
        if self.read and self.seq == 0 and event.seq > 1:  # (seq 1 cannot follow on from 0: a re-read)
            self.seq = event.seq - 1
        return super().apply(event)


@dataclass(eq=False)
class Entry:
    """One watched workspace."""

    workspace: str
    channel: str
    replica: LightReplica
    watchers: set[Recipient] = field(default_factory=set)
    shown: WatchedLease | None = None  # what its watchers were last told; None until first read
    early: list[Event] | None = None  # not None while a read is in flight
    overflow: bool = False  # early events were dropped: read again
    reading: asyncio.Future[None] | None = None


def lease_of(replica: Replica) -> WatchedLease:
    """Holder and viewing users of a replica, as watchers are told them."""
    h = replica.holder
    holder = None if h is None else WatchHolder(h.person, h.since)
    return WatchedLease(holder, len({info.user for info in replica.tabs.values()}))


class WatchIndex:
    """Lifecycle: ``watch``/``unwatch`` any time; ``on_published``/``on_resubscribed`` from pub/sub.
    Re-reads run in ``tasks`` (awaited by the server on shutdown)."""

    def __init__(self, settings: Settings, leases: LeaseScripts, keys: Keys, channels: Share, tasks: TaskSet) -> None:
        self.settings = settings
        self.leases = leases
        self.keys = keys
        self.channels = channels
        self.tasks = tasks
        self._entries: dict[str, Entry] = {}
        self._by_channel: dict[str, Entry] = {}
        self._sets: dict[Recipient, list[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def watched(self, who: Recipient) -> list[str]:
        return list(self._sets.get(who, []))

    async def watch(self, who: Recipient, workspaces: Sequence[str]) -> dict[str, WatchedLease]:
        """Make ``workspaces`` the set ``who`` watches; answer each one's lease now.

        Raises ``Unavailable`` when Redis did not answer (the earlier set is then kept)."""
        old = self._sets.get(who, [])
        wanted = list(dict.fromkeys(workspaces))
        added = [ws for ws in wanted if ws not in set(old)]
        fresh: list[Entry] = []
        for ws in added:
            entry = self._entries.get(ws)
            if entry is None:
                entry = self._new_entry(ws)
                fresh.append(entry)
            entry.watchers.add(who)
        try:
            await self._fill(fresh)
            for ws in added:  # those another watcher's watch is still reading
                entry = self._entries.get(ws)
                if entry is not None and entry.reading is not None:
                    await asyncio.shield(entry.reading)
                if entry is None or entry.shown is None:
                    raise StoreUnavailable(f"{ws} could not be read")
        except BaseException as exc:  # Redis, or the connection's task cancelled: keep the earlier set
            for ws in added:
                self._drop(who, ws)
            if isinstance(exc, StoreUnavailable):
                raise Unavailable("Redis unavailable, retry later") from exc
            raise
        for ws in old:
            if ws not in set(wanted):
                self._drop(who, ws)
        self._sets[who] = wanted
        out: dict[str, WatchedLease] = {}
        for ws in wanted:
            shown = self._entries[ws].shown
            assert shown is not None
            out[ws] = shown
        return out

    def unwatch(self, who: Recipient) -> None:
        for ws in self._sets.pop(who, []):
            self._drop(who, ws)

    def _new_entry(self, workspace: str) -> Entry:
        channel = self.keys.workspace(workspace).channel
        entry = Entry(workspace, channel, LightReplica(workspace), early=[])
        entry.reading = asyncio.get_running_loop().create_future()
        self._entries[workspace] = entry
        self._by_channel[channel] = entry
        return entry

    async def _fill(self, fresh: list[Entry]) -> None:
        """Subscribe to the new entries' channels, then read them (events from the confirmation
        on are kept in ``early``), in one pipelined batch."""
        try:
            timeout = self.settings.heartbeat_ms / 1000
            await asyncio.gather(*(self.channels.subscribe(e.channel, timeout) for e in fresh))
            snapshots = await self.leases.read_many([e.workspace for e in fresh]) if fresh else {}
        except BaseException:
            for e in fresh:
                e.early = None
                _settle(e)
            raise
        for e in fresh:
            self._adopt(e, snapshots[e.workspace])
            _settle(e)

    def _drop(self, who: Recipient, workspace: str) -> None:
        entry = self._entries.get(workspace)
        if entry is None:
            return
        entry.watchers.discard(who)
        if not entry.watchers:
            del self._entries[workspace]
            self._by_channel.pop(entry.channel, None)
            self.channels.unsubscribe(entry.channel)

    # -- feeding the replicas -----------------------------------------------------------------

    def on_published(self, channel: str, data: str) -> None:
        entry = self._by_channel.get(channel)
        if entry is None:
            return
        event = decode_event(data)
        if entry.early is not None:  # a read is in flight: apply after it
            if len(entry.early) < EARLY_EVENTS:
                entry.early.append(event)
            else:
                entry.overflow = True
            return
        self._apply(entry, [event])

    def on_resubscribed(self, channel: str) -> None:
        entry = self._by_channel.get(channel)
        if entry is not None:
            self._reread(entry)

    def _apply(self, entry: Entry, events: Sequence[Event]) -> None:
        for event in events:
            if entry.replica.apply(event) is Applied.GAP:
                self._reread(entry)
                return
        self._tell(entry)

    def _adopt(self, entry: Entry, snapshot: Snapshot) -> None:
        """After a read: adopt it, apply what was heard meanwhile, tell what changed."""
        entry.replica.reset(snapshot, force=True)
        early, entry.early = entry.early or [], None
        if entry.overflow:
            entry.overflow = False
            self._tell(entry)
            self._reread(entry)
            return
        self._apply(entry, early)

    def _tell(self, entry: Entry) -> None:
        now = lease_of(entry.replica)
        if now == entry.shown:
            return
        first = entry.shown is None
        entry.shown = now
        if first:
            return  # the first read is answered in ``leases``, not as a change
        frame = encode(Lease(entry.workspace, now.holder, now.viewers))
        for who in list(entry.watchers):
            who.send_frame(frame)

    def _reread(self, entry: Entry) -> None:
        if entry.early is not None or self._entries.get(entry.workspace) is not entry:
            return  # a read is in flight already (its early events cover this)
        entry.early = []
        self.tasks.spawn(self._read(entry), name=f"watch read {entry.workspace}")

    async def _read(self, entry: Entry) -> None:
        try:
            snapshot = await self.leases.read(entry.workspace)
        except StoreUnavailable:
            entry.early = None
            # Try again at the next heartbeat: a watcher keeps its last values meanwhile.
            loop = asyncio.get_running_loop()
            loop.call_later(self.settings.heartbeat_ms / 1000, self._reread, entry)
            return
        if self._entries.get(entry.workspace) is entry:
            self._adopt(entry, snapshot)


def _settle(entry: Entry) -> None:
    if entry.reading is not None and not entry.reading.done():
        entry.reading.set_result(None)
    entry.reading = None
