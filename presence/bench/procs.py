"""Processes for ``presence bench``: redis-server, ``presence serve``, the bare baseline server and
the tab farm, all on 127.0.0.1, each with its CPU time and memory read from ``/proc``."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import presence

from ..http.stack import uvicorn_config as uvicorn_config

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to the hard limit (thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this very ``presence`` package first on its path, no inherited
    ``PRESENCE_*`` settings (the bench sets its own)."""
    root = str(Path(presence.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_") and k != "PORT"}
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc/PID/stat), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Proc:
    """A child process with a log file; killed by ``close()``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = Path(tempfile.mkstemp(prefix=f"presence-bench-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=raise_fd_limit,  # inherited by the exec'ed program
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (from /proc/PID/stat)."""
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def close(self, keep_log: bool = False) -> None:
        self.kill()
        if not keep_log:
            self.log_path.unlink(missing_ok=True)


def http_get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback URLs built here
        return str(r.read().decode())


async def wait_http(proc: Proc, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()}")
        try:
            await asyncio.to_thread(http_get, url, 1.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} not ready at {url} after {timeout}s:\n{proc.log()}") from None
        await asyncio.sleep(0.05)


class RedisProc(Proc):
    """A redis-server of the bench's own: loopback, a free port, no persistence."""

    def __init__(self, replica_of: tuple[str, int] | None = None) -> None:
        """``replica_of``: (host, port) of the primary this one replicates (figure 7)."""
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="presence-bench-redis-")
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found on PATH (or pass --redis-url)")
        replica = ["--replicaof", replica_of[0], str(replica_of[1])] if replica_of else []
        super().__init__("redis-replica" if replica_of else "redis",
                         [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", self.dir, *replica])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def ready(self) -> RedisProc:
        import redis.asyncio as aioredis

        deadline = time.monotonic() + 10
        while True:
            client = aioredis.Redis(port=self.port)
            try:
                if await client.ping():
                    return self
            except Exception:
                if time.monotonic() > deadline or not self.alive():
                    raise RuntimeError(f"redis-server did not start:\n{self.log()}") from None
            finally:
                await client.aclose()
            await asyncio.sleep(0.05)

    def close(self, keep_log: bool = False) -> None:
        super().close(keep_log)
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerProc(Proc):
    """``python -m presence serve`` with the given ``PRESENCE_*`` settings."""

    def __init__(self, name: str, settings: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.settings = settings
        cmd = [sys.executable, "-m", "presence", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(name, cmd, child_env(settings))

    async def ready(self) -> ServerProc:
        await wait_http(self, f"http://127.0.0.1:{self.port}/readyz")
        return self

    async def metrics(self) -> dict[str, float]:
        """The Prometheus samples by name, summed over their labels."""
        text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{self.port}/metrics")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                name = series.split("{", 1)[0]
                try:
                    out[name] = out.get(name, 0.0) + float(value)
                except ValueError:
                    continue
        return out

    async def restart(self) -> ServerProc:
        """Start again on the same port (after it exited)."""
        self.start()
        return await self.ready()


class SupervisorProc(Proc):
    """``python -m presence serve --workers N``: the supervisor, each worker's pid and own address."""

    def __init__(self, name: str, settings: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.own = free_ports(workers)  # worker k's own address: the k-th
        cmd = [sys.executable, "-m", "presence", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(workers)]
        super().__init__(name, cmd, child_env({**settings, "PRESENCE_WORKER_PORTS": str(self.own[0])}))

    async def ready(self) -> SupervisorProc:
        for port in self.own:
            await wait_http(self, f"http://127.0.0.1:{port}/readyz")
        return self

    def worker_pid(self, slot: int) -> int:
        """The pid of worker ``slot`` (the supervisor's child started with ``--worker slot``)."""
        for pid in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split():
            args = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            if "--worker" in args and args[args.index("--worker") + 1] == str(slot):
                return int(pid)
        raise RuntimeError(f"worker {slot} is not running:\n{self.log()}")

    async def worker_server(self, slot: int) -> str:
        """The server id of worker ``slot`` (its own address's /readyz)."""
        body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{self.own[slot - 1]}/readyz")
        return str(json.loads(body)["server"])


def free_ports(n: int) -> list[int]:
    """``n`` consecutive free ports."""
    while True:
        first = free_port()
        ports = list(range(first, first + n))
        if ports[-1] < 65536 and all(_bindable(p) for p in ports[1:]):
            return ports


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class BareProc(Proc):
    def __init__(self, heartbeat_ms: int) -> None:
        self.port = free_port()
        super().__init__("bare", [sys.executable, "-m", "presence.bench.bare", "--port", str(self.port),
                                  "--heartbeat-ms", str(heartbeat_ms)], child_env())

    async def ready(self) -> BareProc:
        await wait_http(self, f"http://127.0.0.1:{self.port}/healthz")
        return self


def terminate_all(procs: list[Any]) -> None:
    for p in procs:
        try:
            p.signal(signal.SIGCONT)
            p.close()
        except Exception:  # best effort at shutdown; each is killed if alive
            continue
