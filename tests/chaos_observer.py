"""The chaos soaks' ground truth: every lease event Redis published, with its receipt time.

:class:`Observer` listens on one Redis, :class:`FailoverObserver` on every data node of a Sentinel
group; ``chaos_check`` judges the clients' logs against what they recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

Msg = dict[str, Any]


class Observer:
    """Ground truth: every event on every workspace channel of a key prefix, with receipt times.

    Its connection is named ``chaos-observer`` so fault injection can spare it.
    """

    NAME = "chaos-observer"

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.client = aioredis.Redis.from_url(redis_url, decode_responses=True, client_name=self.NAME)
        self.pattern = f"{prefix}:{{*}}"
        self.prefix = prefix
        self.events: dict[str, list[tuple[float, Msg]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.error: BaseException | None = None

    async def start(self) -> Observer:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def _run(self) -> None:
        pubsub = self.client.pubsub()
        try:
            await pubsub.psubscribe(self.pattern)
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None:
                    continue
                if msg["type"] == "psubscribe":
                    self._ready.set()
                    continue
                if msg["type"] == "pmessage":
                    self._record(msg["channel"], msg["data"])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # reported by check(): an observer that stopped is no observer
            self.error = exc
            raise
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _record(self, channel: str, data: str) -> None:
        """One event as received, in its workspace's list with its receipt time."""
        workspace = channel[len(self.prefix) + 2 : -1]
        self.events[workspace].append((time.monotonic(), json.loads(data)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.aclose()

    failover = False  # see FailoverObserver

    def blind(self, start: float, end: float) -> str:
        """Why the observer may have missed events between receipt times ``start`` and ``end``."""
        return ""

    def ordered(self, events: list[tuple[float, Msg]]) -> list[tuple[float, Msg]]:
        return sorted(events, key=lambda e: int(e[1]["seq"]))


class FailoverObserver(Observer):
    """Ground truth across failovers: every workspace event published on any of the data nodes
    ``ports`` (primary and replicas: replicas get every PUBLISH through replication). Each node has
    a connection of its own that reconnects when the node restarts; an event seen on several
    nodes counts once, at its first receipt. Events are in Redis order by (Redis time, seq).

    What it misses while a link is down is missed for good, so a link is never down for long:
    a lost link is noticed at once and made again every 20 ms (``links`` records each loss and
    return). Sentinel kills the clients of an instance it promotes (this observer's too): the
    link is back within some 10-70 ms, while the servers write to the new primary only once the
    Sentinels name it, after they saw it report the master role (their INFO period: 0.2-1 s
    later). A node the soak restarts is waited for (:meth:`linked`): the Sentinels now and then
    promote a node a second after it came back, and redis-py's own reconnection (a backoff of up
    to a second between attempts) could leave the observer deaf to such a new primary; the checker
    then reported the grants it missed as grants Redis never made. A jump in the sequence numbers
    now says the observer missed events (``chaos_check``).

    An instance that still takes writes when Sentinel reconfigures it (a primary it replaced
    while alive, then promotes again or demotes) is another matter: the events still in its
    output buffers die with the killed connections, the grant stays. So the soak's Redis nodes
    refuse writes without a replica (``min-replicas-to-write``), and no replaced primary takes
    any."""

    failover = True

    def __init__(self, ports: list[int], prefix: str) -> None:
        super().__init__(f"redis://127.0.0.1:{ports[0]}/0", prefix)
        self.ports = ports
        self._seen: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.links: list[tuple[float, int, bool]] = []  # (time, port, up): each link lost and back
        self._up_at = dict.fromkeys(ports, 0.0)  # port -> when its link came up (0: down)
        self._changed = asyncio.Condition()

    def ordered(self, events: list[tuple[float, Msg]]) -> list[tuple[float, Msg]]:
        return sorted(events, key=lambda e: (int(e[1].get("at", 0)), int(e[1]["seq"])))

    async def start(self) -> FailoverObserver:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._node(port)) for port in self.ports]
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: all(self._up_at.values())), 10)
        self._ready.set()
        return self

    async def linked(self, port: int, since: float, timeout: float = 10) -> None:
        """Wait until the link to node ``port`` is subscribed again after ``since`` (monotonic):
        a node restarted must not be promoted, and written to, before the observer listens to it."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self._up_at[port] > since), timeout)

    async def _link(self, port: int, up: bool) -> None:
        if bool(self._up_at[port]) == up:
            return
        now = time.monotonic()
        self._up_at[port] = now if up else 0.0
        self.links.append((now, port, up))
        async with self._changed:
            self._changed.notify_all()

    def blind(self, start: float, end: float) -> str:
        lost: dict[int, float] = {}
        down: list[str] = []
        for t, port, up in [*self.links, (math.inf, 0, True)]:
            if not up:
                lost[port] = t
            for p in [p for p, since in lost.items() if up and (p == port or t == math.inf)]:
                since = lost.pop(p)
                if since < end and t > start:
                    down.append(f":{p} for {t - since:.3f}s" if t < math.inf else f":{p} from then on")
        return f" (while its link to {', '.join(down)} was down)" if down else ""

    async def _node(self, port: int) -> None:
        while True:
            # No retries inside redis-py: a lost link is noticed here at once and made again every
            # 20 ms (redis-py's own backoff waits up to a second between attempts, blind all along).
            client = aioredis.Redis(port=port, decode_responses=True, client_name=self.NAME, socket_timeout=None,
                                    retry=Retry(NoBackoff(), 0))
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(self.pattern)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "psubscribe":
                        await self._link(port, up=True)
                    elif msg["type"] == "pmessage" and msg["data"] not in self._seen:
                        self._seen.add(msg["data"])
                        self._record(msg["channel"], msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                await self._link(port, up=False)
                await asyncio.sleep(0.02)  # the node is down or restarting: connect again
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()
