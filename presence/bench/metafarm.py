"""The tab farm of figure 12 (presence meta fan-out): the farm's tabs, plus what each one shows of
the senders' metas and how many frames it receives. Run as ``python -m presence.bench.metafarm``.

``frames`` {}: the frames each tab received so far (every type, and ``update`` alone).
``metas`` {senders, hz, seconds, settle_s}: the tabs ``senders`` each send ``status{meta: {cursor:
n}}`` with n = 1, 2, ... at ``hz`` for ``seconds`` (spread evenly over the period), then the farm
waits up to ``settle_s`` for every tab to show each sender's last meta. The answer has, for every
meta sent, the seconds from its send until the last *other* tab showed it or a later one of the
same sender (a meta superseded within the server's meta interval is never shown itself: its
successor, sent later, stands for it); the metas some tab never reached; the frames each tab
received while the metas were sent; whether every tab ends with exactly each sender's last meta;
and the ``error`` frames the senders got (the server answers no meta with an error below a flood).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import farm
from .farm import Farm, FarmTab
from .wsclient import Message, WsClient

Meta = dict[str, Any] | None


@dataclass
class MetaFarm(Farm):
    frames: Counter[str] = field(default_factory=Counter)  # by tab id, every frame
    updates: Counter[str] = field(default_factory=Counter)  # by tab id, ``update`` frames
    arrivals: dict[str, list[float]] | None = None  # by tab id, when its updates came, while metas are sent
    errors: Counter[str] = field(default_factory=Counter)  # by tab id, ``error`` frames
    watched: set[str] = field(default_factory=set)  # the senders' user ids
    shown: dict[tuple[str, str], Meta] = field(default_factory=dict)  # (tab id, sender) -> its meta there now
    final: Meta = None  # each sender's last meta, once every one was sent
    behind: set[tuple[str, str]] = field(default_factory=set)  # (tab id, sender) not showing ``final``
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    # (tab id, sender) -> (when, cursor) each time the cursor it shows changed, in arrival order
    moves: dict[tuple[str, str], list[tuple[float, int]]] = field(default_factory=dict)

    def _on_message(self, tab: FarmTab) -> Any:
        apply = super()._on_message(tab)

        def on_message(client: WsClient, msg: Message) -> None:
            apply(client, msg)
            kind = msg.get("type")
            self.frames[tab.tab] += 1
            if kind == "update":
                self.updates[tab.tab] += 1
                if self.arrivals is not None:
                    self.arrivals.setdefault(tab.tab, []).append(time.perf_counter())
                self._show(tab, (*msg.get("joined", ()), *msg.get("viewers", ())))
            elif kind == "state":
                self._show(tab, msg["viewers"])
            elif kind == "welcome":
                self._show(tab, (msg.get("state") or {}).get("viewers", ()))
            elif kind == "error":
                self.errors[tab.tab] += 1
        return on_message

    def _show(self, tab: FarmTab, viewers: Iterable[Message]) -> None:
        if not self.watched:
            return
        now = time.perf_counter()
        for viewer in viewers:
            sender = viewer["user"]["id"]
            if sender not in self.watched:
                continue
            entries = viewer.get("presence") or [{}]
            meta: Meta = entries[0].get("meta")  # a sender has one tab
            key = (tab.tab, sender)
            self.shown[key] = meta
            if self.final is not None:
                if meta == self.final:
                    self.behind.discard(key)
                else:
                    self.behind.add(key)
                if not self.behind:
                    self.caught_up.set()
            cursor = meta.get("cursor") if isinstance(meta, dict) else None
            moves = self.moves.setdefault(key, [])
            if isinstance(cursor, int) and (not moves or moves[-1][1] != cursor):
                moves.append((now, cursor))

    async def frames_(self, **_: Any) -> dict[str, Any]:
        return {"frames": [self.frames[t.tab] for t in self.tabs], "updates": [self.updates[t.tab] for t in self.tabs]}

    async def metas(self, senders: list[int], hz: float, seconds: float, settle_s: float, **_: Any) -> dict[str, Any]:
        source = [self.tabs[i] for i in senders]
        if any(t.client is None for t in source):
            raise RuntimeError("a sender is not connected")
        self.watched = {t.user for t in source}
        per_sender = int(hz * seconds)
        sent: dict[str, list[float]] = {t.user: [] for t in source}  # send times of cursors 1, 2, ...
        frames0, updates0 = Counter(self.frames), Counter(self.updates)
        self.arrivals = {}
        period = 1 / hz
        started = time.perf_counter()
        for j in range(per_sender * len(source)):
            # Sender k sends its n-th meta at n periods plus k/len(source) of one: evenly spread.
            n, k = divmod(j, len(source))
            await asyncio.sleep(max(0.0, started + (n + k / len(source)) * period - time.perf_counter()))
            tab = source[k]
            assert tab.client is not None
            sent[tab.user].append(time.perf_counter())
            tab.client.send({"type": "status", "meta": {"cursor": n + 1}})
        window_s = time.perf_counter() - started
        frames = [self.frames[t.tab] - frames0[t.tab] for t in self.tabs]
        updates = [self.updates[t.tab] - updates0[t.tab] for t in self.tabs]
        arrivals, self.arrivals = self.arrivals, None
        # A stream's rate: intervals over the time they span (counting frames over the window
        # would count one more frame than intervals, a fencepost's 1/window too many).
        rates = [(len(times) - 1) / (times[-1] - times[0]) for times in arrivals.values() if len(times) > 2]
        last = self.final = {"cursor": per_sender}
        self.behind = {(t.tab, s) for t in self.tabs for s in self.watched if self.shown.get((t.tab, s)) != last}
        self.caught_up.clear()
        settle_started = time.perf_counter()
        if self.behind:
            with contextlib.suppress(TimeoutError):  # the check below counts who is behind
                await asyncio.wait_for(self.caught_up.wait(), settle_s)
        self.final = None
        latencies, missed = self._last_seen(sent)
        exact = sum(1 for t in self.tabs for s in self.watched if self.shown.get((t.tab, s)) == last)
        self.watched = set()
        return {"sent": per_sender * len(source), "window_s": window_s, "latencies": latencies, "missed": missed,
                "frames": frames, "updates": updates, "update_rates": rates,
                "settle_s": time.perf_counter() - settle_started,
                "final_exact": exact, "final_pairs": len(self.tabs) * len(sent),
                "sender_errors": sum(self.errors[t.tab] for t in source)}

    def _last_seen(self, sent: dict[str, list[float]]) -> tuple[list[float], int]:
        """For each meta sent, seconds until the last other tab showed it (or a later one)."""
        tab_of = {t.user: t.tab for t in self.tabs}
        latencies: list[float] = []
        missed = 0
        for sender, times in sent.items():
            others = [first_shown(self.moves.get((t.tab, sender), []), len(times))
                      for t in self.tabs if t.tab != tab_of[sender]]
            for n, t0 in enumerate(times):
                seen = [first[n] for first in others]
                if all(at is not None for at in seen):
                    latencies.append(max(at for at in seen if at is not None) - t0)
                else:
                    missed += 1
        return latencies, missed

    async def close_all(self, **kw: Any) -> dict[str, Any]:
        for counter in (self.frames, self.updates, self.errors):
            counter.clear()
        self.shown.clear()
        self.moves.clear()
        return await super().close_all(**kw)

    def ops(self) -> dict[str, Callable[..., Awaitable[dict[str, Any]]]]:
        return {**super().ops(), "metas": self.metas, "frames": self.frames_}


def first_shown(moves: list[tuple[float, int]], count: int) -> list[float | None]:
    """From one tab's moves of one sender's cursor: when it first showed cursor n + 1 or later,
    for n < ``count`` (None: never)."""
    first: list[float | None] = [None] * count
    top = 0
    for at, cursor in moves:
        for n in range(top, min(cursor, count)):
            first[n] = at
        top = max(top, cursor)
    return first


if __name__ == "__main__":
    farm.main(MetaFarm())
