"""presence's clients in the peer comparison: the tab farm, plus the fan-out that the peer's clients
(``hocuspocus-clients.mjs``) run too. Run as ``python -m presence.bench.peerfarm``.

``fanout`` {changer, changes, gap_ms, wait_s}: tab ``changer`` flips its ``active`` flag (a
``status`` message) ``changes`` times, each ``gap_ms`` after every other tab saw the previous flip
(or ``wait_s`` after it was sent). The answer has when each flip was sent and, for every other tab,
when it saw the changer's ``active`` in an update and what it was (seconds since the fan-out began).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import farm
from .farm import Farm, FarmTab
from .wsclient import Message, WsClient


@dataclass
class PeerFarm(Farm):
    watched: str | None = None  # the changer's user id, while a fan-out runs
    t0: float = 0.0
    seen: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # by tab id
    expected: tuple[float, bool] | None = None  # the change in flight: when it was sent, its value
    behind: set[str] = field(default_factory=set)  # tabs that have not seen it
    all_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def _on_message(self, tab: FarmTab) -> Any:
        apply = super()._on_message(tab)

        def on_message(client: WsClient, msg: Message) -> None:
            apply(client, msg)
            if self.watched is not None and msg.get("type") == "update":
                for viewer in msg.get("viewers", ()):
                    if viewer["user"]["id"] == self.watched:
                        self._saw(tab, time.perf_counter() - self.t0, viewer["active"])
        return on_message

    def _saw(self, tab: FarmTab, t: float, active: bool) -> None:
        self.seen.setdefault(tab.tab, []).append((t, active))
        if self.expected is not None and t >= self.expected[0] and active == self.expected[1]:
            self.behind.discard(tab.tab)
            if not self.behind:
                self.all_seen.set()

    async def fanout(self, changer: int, changes: int, gap_ms: float, wait_s: float = 10.0,
                     **_: Any) -> dict[str, Any]:
        source = self.tabs[changer]
        others = [t for i, t in enumerate(self.tabs) if i != changer]
        if source.client is None or not others:
            raise RuntimeError("a fan-out needs a connected changer and other tabs")
        self.seen = {}
        self.t0 = time.perf_counter()
        self.watched = source.user
        sent: list[float] = []
        try:
            for k in range(changes):
                await asyncio.sleep(gap_ms / 1000)
                self.behind = {t.tab for t in others}
                self.all_seen.clear()
                sent.append(time.perf_counter() - self.t0)
                self.expected = (sent[-1], k % 2 == 1)
                source.client.send({"type": "status", "active": k % 2 == 1})
                with contextlib.suppress(TimeoutError):  # the bench counts the change as missed
                    await asyncio.wait_for(self.all_seen.wait(), wait_s)
            return {"sent": sent, "seen": [self.seen.get(t.tab, []) for t in others]}
        finally:
            self.watched = self.expected = None

    def ops(self) -> dict[str, Callable[..., Awaitable[dict[str, Any]]]]:
        return {**super().ops(), "fanout": self.fanout}


if __name__ == "__main__":
    farm.main(PeerFarm())
