"""The harness of ``presence bench``: what to measure (:class:`Plan`), the processes of one run
(:class:`Bench`, :class:`Farm`) and small helpers shared by the figures in :mod:`.scenarios`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..gateway.gateway import Gateway
from ..gateway.keys import Keys
from ..gateway.leases import LeaseScripts
from ..settings import Settings
from .procs import BareProc, Proc, ServerProcess, Supervisor, child_env
from .wsclient import TOKEN_TTL_S, WsClient, dev_token, hello

HOST = "127.0.0.1"
# Latency samples are spaced this far apart, the baselines' too: each request meets a server that
# finished the previous one's aftermath (audit write, pub/sub echo), as a user's request would.
GAP_S = 0.005


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure and how much: ``full()`` for docs/benchmarks.md, ``quick()`` for the test suite."""

    samples: int  # acquire round trips (figure 1)
    tabs: int  # idle tabs and reconnect storm (figures 2 and 6)
    tabs_per_workspace: int
    heartbeat_ms: int  # of the idle server (figure 2)
    idle_heartbeats: int  # length of the idle window
    leases: int  # held leases renewed (figure 3)
    renew_rounds: int
    takeovers: int  # figure 4
    kills: int  # figure 5
    kill_heartbeat_ms: int
    kill_ttl_ms: int
    parallel: int  # connections in flight at once from the farm
    rooms: tuple[int, ...]  # big room sizes (figure 7), the first is the baseline
    status_rooms: tuple[int, ...]  # status storm workspace sizes (figure 8)
    status_rounds: int

    @classmethod
    def full(cls, tabs: int = 5000, heartbeat_ms: int = 5000) -> Plan:
        return cls(samples=2000, tabs=tabs, tabs_per_workspace=5, heartbeat_ms=heartbeat_ms, idle_heartbeats=3,
                   leases=10_000, renew_rounds=5, takeovers=300, kills=3, kill_heartbeat_ms=1000,
                   kill_ttl_ms=3000, parallel=500, rooms=(100, 2000), status_rooms=(10, 100), status_rounds=4)

    @classmethod
    def quick(cls, tabs: int = 200, heartbeat_ms: int = 500) -> Plan:
        return cls(samples=100, tabs=tabs, tabs_per_workspace=5, heartbeat_ms=heartbeat_ms, idle_heartbeats=2,
                   leases=1000, renew_rounds=2, takeovers=20, kills=1, kill_heartbeat_ms=300, kill_ttl_ms=1500,
                   parallel=100, rooms=(50, 200), status_rooms=(10, 100), status_rounds=4)


def summary(seconds: list[float]) -> dict[str, float]:
    """Percentiles in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {"n": 0}

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))]

    return {"n": len(ms), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "mean": statistics.fmean(ms),
            "max": ms[-1]}


async def acquire_once(tab: WsClient, i: int) -> float:
    """Seconds from sending ``acquire`` (request id ``i``) to its ``acquired``; the grant is released
    again before this returns."""
    started = time.perf_counter()
    reply = await tab.request({"type": "acquire", "id": i})
    elapsed = time.perf_counter() - started
    if reply["type"] != "acquired":
        raise RuntimeError(f"acquire answered {reply}")
    await tab.request({"type": "release", "id": -1 - i})
    return elapsed


async def acquire_round_trips(b: Bench, server: ServerProcess, user: str, workspace: str, samples: int) -> list[float]:
    """Seconds from sending ``acquire`` to its ``acquired``, one tab, ``samples`` times after a warm-up;
    each grant released again and the next request ``GAP_S`` later."""
    warm = max(20, samples // 20)
    tab = await b.tab(server, user, workspace)
    took: list[float] = []
    try:
        for i in range(warm + samples):
            elapsed = await acquire_once(tab, i)
            if i >= warm:
                took.append(elapsed)
            await asyncio.sleep(GAP_S)
    finally:
        tab.close()
    return took


def timings(plan_heartbeat_ms: int, **extra: str) -> dict[str, str]:
    """Server settings scaled to one heartbeat, as the defaults are (5 s, 15 s TTL, 5 s grace).
    Dead tabs are declared after 12 s at least: on a busy machine the bench's own tabs may go
    without CPU for a while, and no figure measures dead-tab detection."""
    hb = plan_heartbeat_ms
    return {
        "PRESENCE_HEARTBEAT_MS": str(hb), "PRESENCE_DEAD_AFTER_MS": str(max(hb * 12 // 5, 12_000)),
        "PRESENCE_LEASE_TTL_MS": str(hb * 3), "PRESENCE_GRACE_MS": str(hb), **extra,
    }


class Farm:
    """The tab farm child process, one JSON command per line; ``cmd`` starts another program that
    speaks the same (the peer's clients)."""

    def __init__(self, cmd: list[str] | None = None) -> None:
        self.cmd = cmd or [sys.executable, "-m", "presence.bench.farm"]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Farm:
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, env=child_env(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**24,
        )
        return self

    async def call(self, op: str, timeout: float = 300.0, **kw: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"op": op, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the tab farm exited during {op!r}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"tab farm {op!r} failed: {answer.get('error')}\n{answer.get('traceback', '')}")
        return answer

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"op": "exit"}\n')
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Bench:
    """Owns every process of one run; ``close()`` ends them all."""

    def __init__(self, plan: Plan, redis_url: str, prefix: str, log: Any) -> None:
        self.plan = plan
        self.redis_url = redis_url
        self.prefix = prefix
        self.log = log
        self.procs: list[Proc] = []
        self.farm = Farm()
        self._n = 0

    async def server(self, name: str, keys: str | None = None, **settings: str) -> ServerProcess:
        """A ``presence serve`` process; servers with the same ``keys`` share their workspaces."""
        proc = ServerProcess(self._server_env(name, keys, settings), name=name)
        self.procs.append(proc)
        return await proc.start_async()

    async def supervisor(self, name: str, workers: int, **settings: str) -> Supervisor:
        """``presence serve --workers N``, once every worker is ready."""
        proc = Supervisor(self._server_env(name, None, settings), workers, name=name)
        self.procs.append(proc)
        return await proc.start_async()

    def _server_env(self, name: str, keys: str | None, settings: dict[str, str]) -> dict[str, str]:
        return {
            "PRESENCE_REDIS_URL": self.redis_url, "PRESENCE_KEY_PREFIX": f"{self.prefix}{keys or name}",
            "PRESENCE_LOG_LEVEL": "warning", "PRESENCE_DEV": "1",  # dev tokens (the bench mints them) on Redis
            # The latency loops send thousands of requests a second on one connection and the farm
            # opens thousands of tabs; the limits that protect a real server would measure themselves.
            "PRESENCE_RATE_LIMIT": "1000000", "PRESENCE_RATE_BURST": "2000000",
            "PRESENCE_USER_RATE_LIMIT": "1000000", "PRESENCE_USER_RATE_BURST": "2000000",
            **settings,
        }

    async def bare(self, heartbeat_ms: int) -> BareProc:
        proc = BareProc(heartbeat_ms)
        self.procs.append(proc)
        return await proc.start_async()

    def token(self, user: str) -> str:
        return dev_token(user, ttl_s=TOKEN_TTL_S)

    async def tab(self, server: ServerProcess, user: str, workspace: str, **kw: Any) -> WsClient:
        client = await WsClient.connect(HOST, server.port, **kw)
        welcome = client.next(lambda m: m.get("type") == "welcome")
        self._n += 1
        client.send(hello(self.token(user), workspace, f"{user}-{self._n}"))
        await asyncio.wait_for(welcome, 10)
        return client

    def lease_scripts(self, name: str, **kw: Any) -> LeaseScripts:
        settings = Settings(redis_url=self.redis_url, key_prefix=f"{self.prefix}{name}", dev=True, **kw).validate()
        return LeaseScripts(Gateway(settings), settings, Keys(settings.key_prefix))

    async def redis_info(self, client: Any) -> dict[str, float]:
        stats = await client.info("commandstats")
        cpu = await client.info("cpu")
        return {
            "commands": float(sum(v["calls"] for v in stats.values())),
            "evalsha": float(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
            "evalsha_usec": float(stats.get("cmdstat_evalsha", {}).get("usec", 0)),
            "cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        }

    async def close(self, keep_logs: bool = False) -> None:
        await self.farm.close()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.close(keep_log=keep_logs)
                if keep_logs and proc.log_path.exists():
                    self.log(f"log of {proc.name}: {proc.log_path}")
