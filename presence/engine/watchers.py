"""Watch index: this process's watched workspaces, each a light copy fed by pub/sub.

A watcher (one ``/ws`` connection of a list page) watches up to 500 workspaces. Each watched
workspace is kept here once, however many watchers watch it: the process subscribes to its
channel (the same subscription tabs use, shared through :mod:`presence.engine.channels`), reads
it once with the snapshot script, then follows the events published on the channel through its
core (:class:`~presence.core.watched.Watched`, following them as the workspace cores do: events
heard while a read is in flight are kept and applied after it; a gap or a lost subscription
re-reads). After each event
the holder and the number of viewing users are compared with what the watchers were last told; a
difference is sent to every watcher of that workspace as one ``lease`` frame, encoded once.

A ``watch`` costs what changed: the workspaces added and dropped, not the size of the set. The
process watches at most ``max_watched`` (watcher, workspace) pairs in all. Watching costs
subscriptions and events, never polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..core.events import Event
from ..core.records import Snapshot
from ..core.replica import Applied
from ..core.watched import Watched
from ..errors import StoreUnavailable, TooManyWatched, Unavailable
from ..gateway.keys import Keys
from ..gateway.leases import LeaseScripts
from ..tasks import TaskSet
from ..wire.watch import Lease, WatchedLease, encode
from .channels import Share

log = logging.getLogger("presence.watchers")


class Recipient(Protocol):
    """A watcher's connection (an :class:`~presence.engine.outbox.Outbox`): frames are queued,
    never awaited."""

    def send_frame(self, text: str, frame: bytes | None = None) -> bool: ...


@dataclass(eq=False)
class Entry:
    """One watched workspace."""

    workspace: str
    channel: str
    core: Watched
    watchers: set[Recipient] = field(default_factory=set)
    shown: WatchedLease | None = None  # what its watchers were last told; None until first read
    reading: asyncio.Future[None] | None = None  # the first read, while in flight
    rereading: bool = False


class WatchIndex:
    """Lifecycle: ``watch``/``unwatch`` any time; ``on_event``/``on_resubscribed`` from pub/sub.
    Re-reads run in ``tasks`` (awaited by the server on shutdown)."""

    def __init__(
        self, heartbeat_ms: int, max_watched: int, leases: LeaseScripts, keys: Keys, channels: Share, tasks: TaskSet
    ) -> None:
        self.retry_s = heartbeat_ms / 1000
        self.max_watched = max_watched
        self.leases = leases
        self.keys = keys
        self.channels = channels
        self.tasks = tasks
        self._entries: dict[str, Entry] = {}
        self._by_channel: dict[str, Entry] = {}
        self._sets: dict[Recipient, dict[str, None]] = {}  # each watcher's set, in its order
        self._pairs = 0  # (watcher, workspace) pairs, for the process-wide bound

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def pairs(self) -> int:
        return self._pairs

    def watched(self, who: Recipient) -> list[str]:
        return list(self._sets.get(who, {}))

    async def watch(self, who: Recipient, workspaces: Sequence[str]) -> dict[str, WatchedLease]:
        """Make ``workspaces`` the set ``who`` watches; answer each one's lease now.

        Raises ``Unavailable`` when Redis did not answer, ``TooManyWatched`` past the process's
        bound (the earlier set is then kept)."""
        old = self._sets.get(who, {})
        wanted = dict.fromkeys(workspaces)
        added = [ws for ws in wanted if ws not in old]
        dropped = [ws for ws in old if ws not in wanted]
        if self._pairs + len(added) - len(dropped) > self.max_watched:
            raise TooManyWatched(f"this server watches {self.max_watched} workspaces in all; try again later")
        fresh: list[Entry] = []
        for ws in added:
            entry = self._entries.get(ws)
            if entry is None:
                entry = self._new_entry(ws)
                fresh.append(entry)
            entry.watchers.add(who)
        self._pairs += len(added)
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
        for ws in dropped:
            self._drop(who, ws)
        self._sets[who] = wanted
        out: dict[str, WatchedLease] = {}
        for ws in wanted:
            shown = self._entries[ws].shown
            assert shown is not None
            out[ws] = shown
        return out

    def unwatch(self, who: Recipient) -> None:
        for ws in self._sets.pop(who, {}):
            self._drop(who, ws)

    def _new_entry(self, workspace: str) -> Entry:
        channel = self.keys.workspace(workspace).channel
        entry = Entry(workspace, channel, Watched(workspace))
        entry.reading = asyncio.get_running_loop().create_future()
        self._entries[workspace] = entry
        self._by_channel[channel] = entry
        return entry

    async def _fill(self, fresh: list[Entry]) -> None:
        """Subscribe to the new entries' channels, then read them (events from the confirmation
        on are kept by their followers), in one pipelined batch."""
        try:
            await asyncio.gather(*(self.channels.subscribe(e.channel, self.retry_s) for e in fresh))
            snapshots = await self.leases.read_many([e.workspace for e in fresh]) if fresh else {}
        finally:
            for e in fresh:
                _settle(e)
        for e in fresh:
            self._adopt(e, snapshots[e.workspace])

    def _drop(self, who: Recipient, workspace: str) -> None:
        entry = self._entries.get(workspace)
        if entry is None or who not in entry.watchers:
            return
        entry.watchers.discard(who)
        self._pairs -= 1
        if not entry.watchers:
            del self._entries[workspace]
            self._by_channel.pop(entry.channel, None)
            self.channels.unsubscribe(entry.channel)

    # -- following the workspaces ---------------------------------------------------------------

    def on_event(self, channel: str, event: Event) -> None:
        entry = self._by_channel.get(channel)
        if entry is None:
            return
        result = entry.core.take(event)
        if result is Applied.GAP:
            self._reread(entry)
        elif result is Applied.APPLIED:
            self._tell(entry)

    def on_resubscribed(self, channel: str) -> None:
        entry = self._by_channel.get(channel)
        if entry is not None:
            entry.core.want()
            self._reread(entry)

    def _adopt(self, entry: Entry, snapshot: Snapshot) -> None:
        """After a read: adopt it, apply what was heard meanwhile, tell what changed."""
        entry.core.adopt(snapshot)
        self._tell(entry)
        if entry.core.stale:  # a gap among those, or too many to keep: read again
            self._reread(entry)

    def _tell(self, entry: Entry) -> None:
        now = entry.core.lease()
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
        if entry.rereading or entry.reading is not None or self._entries.get(entry.workspace) is not entry:
            return  # a read is in flight already (its follower keeps what comes meanwhile)
        entry.rereading = True
        entry.core.want()
        self.tasks.spawn(self._read(entry), name=f"watch read {entry.workspace}")

    async def _read(self, entry: Entry) -> None:
        try:
            snapshot = await self.leases.read(entry.workspace)
        except StoreUnavailable:
            # Try again at the next heartbeat: a watcher keeps its last values meanwhile.
            asyncio.get_running_loop().call_later(self.retry_s, self._retry, entry)
            return
        finally:
            entry.rereading = False
        if self._entries.get(entry.workspace) is entry:
            self._adopt(entry, snapshot)

    def _retry(self, entry: Entry) -> None:
        self._reread(entry)


def _settle(entry: Entry) -> None:
    if entry.reading is not None and not entry.reading.done():
        entry.reading.set_result(None)
    entry.reading = None
