"""Child processes on 127.0.0.1, for ``presence bench`` and for the test suite (tests/support builds
on this module): redis-server, ``presence serve`` (one process, or a supervisor of workers) and any
other program. Each gets a free port below 55000, writes its output to a log file of its own, is
waited for until it answers, and is killed by ``close()``; its CPU time and memory come from /proc.

Starting blocks until the process answers (seconds at most); ``start_async`` does the same in a
worker thread, so an event loop (a bench's clients, a test's tabs) goes on running meanwhile.
``PRESENCE_KEEP_LOGS`` set to anything keeps every log file, for a post-mortem.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self, TypeVar

import redis

import presence

from .ports import free_port, free_ports

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
T = TypeVar("T")


# -- waiting ------------------------------------------------------------------------------------


class ProcessExited(RuntimeError):
    """The child process ended while it was waited for (the message has its log)."""


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Calls ``check`` until it returns something truthy, and returns that. An exception counts as
    "not yet" (the last one is in the error), except :class:`ProcessExited`."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ProcessExited:
            raise
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """The status and body of a GET on a loopback URL built here; an error status is returned."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


# -- the environment ----------------------------------------------------------------------------


def child_env(settings: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a child: this process's, without its ``PRESENCE_*`` settings and ``PORT``
    (a child gets only the settings given; a variable given as None is left out), with this very
    ``presence`` package first on its path."""
    root = str(Path(presence.__file__).resolve().parent.parent)
    env: dict[str, str | None] = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_") and k != "PORT"}
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings or {})
    return {k: v for k, v in env.items() if v is not None}


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to the hard limit (thousands of sockets); the
    children started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc/PID/stat), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- processes ----------------------------------------------------------------------------------


class Proc:
    """A child process with a log file. ``start()`` returns once :meth:`answers` says so; a process
    that exits meanwhile raises :class:`ProcessExited`, one that does not answer in time
    ``TimeoutError`` (and is killed)."""

    start_timeout = 60.0

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        """``env``: the child's whole environment (:func:`child_env`); None inherits this one."""
        self.name = name
        self.cmd = list(cmd)
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.log_path = Path(tempfile.mkstemp(prefix=f"presence-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return self.cmd

    def answers(self) -> bool:
        """Whether the process is ready (asked until it is, while it runs)."""
        return True

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=self.env, cwd=self.cwd, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(self._ready, self.start_timeout, f"{self.name} (pid {self.pid})", interval=0.05)
        except BaseException:
            self.kill()  # nobody else holds on to a process that never came up
            raise
        return self

    async def start_async(self) -> Self:
        """:meth:`start` without blocking the event loop."""
        await asyncio.to_thread(self.start)
        return self

    def _ready(self) -> bool:
        if not self.alive():
            assert self.proc is not None
            raise ProcessExited(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        return self.answers()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE

    def log(self, tail: int | None = 5000) -> str:
        """The end of the log (``tail=None``: all of it)."""
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, and the exit status once it has exited."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    async def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it still runs after ``timeout`` seconds."""
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

    async def kill_async(self) -> None:
        """:meth:`kill` without blocking the event loop."""
        await asyncio.to_thread(self.kill)

    def close(self, keep_log: bool = False) -> None:
        self.signal(signal.SIGCONT)  # one a test left stopped
        self.kill()
        if not (keep_log or os.environ.get("PRESENCE_KEEP_LOGS")):
            self.log_path.unlink(missing_ok=True)


class RedisServer(Proc):
    """A throw-away redis-server: loopback, a free port, no persistence, a directory of its own
    (kept across :meth:`restart`). ``binary``: another server of the same protocol (valkey-server)."""

    start_timeout = 10.0

    def __init__(self, port: int | None = None, extra: Sequence[str] = (), binary: str | None = None,
                 name: str = "redis") -> None:
        exe = binary or shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found on PATH")
        self.port = port or free_port()
        self.extra = list(extra)  # read at each start: a node restarted as a replica gets other ones
        self.dir = tempfile.mkdtemp(prefix="presence-redis-")
        super().__init__(name, [exe])

    def command(self) -> list[str]:
        return [*self.cmd, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, *self.extra]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def answers(self) -> bool:
        return bool(self.client().ping())

    def stop(self) -> None:
        """SIGKILL: without persistence, a crash that loses every key."""
        self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    async def restart_async(self) -> None:
        await asyncio.to_thread(self.restart)

    def close(self, keep_log: bool = False) -> None:
        super().close(keep_log)
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerProcess(Proc):
    """``python -m presence serve`` on a free port, with ``settings`` (``PRESENCE_*`` variables; one
    given as None is left out) and no other setting of this environment."""

    def __init__(self, settings: Mapping[str, str | None], port: int | None = None, name: str = "server",
                 args: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.settings = dict(settings)
        self.ready_path = "/readyz"
        super().__init__(name, [sys.executable, "-m", "presence", "serve", "--host", "127.0.0.1",
                                "--port", str(self.port), *args], child_env(settings))

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> Self:
        """Returns once ``/readyz`` answers 200 (``wait_ready=False``: ``/healthz``, the process is up
        though its store may not be)."""
        self.ready_path = "/readyz" if wait_ready else "/healthz"
        return super().start()

    async def start_async(self, wait_ready: bool = True) -> Self:
        await asyncio.to_thread(self.start, wait_ready)
        return self

    def answers(self) -> bool:
        return http_get(self.http_url + self.ready_path, 1.0)[0] == 200

    async def metrics(self) -> dict[str, float]:
        """The Prometheus samples by name, summed over their labels."""
        status, text = await asyncio.to_thread(http_get, f"{self.http_url}/metrics")
        if status != 200:
            raise RuntimeError(f"{self.name}: /metrics answered {status}")
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


class Supervisor(ServerProcess):
    """``python -m presence serve --workers N``: ready once every worker answers on its own address
    (worker ``slot`` on the ``slot``-th of :attr:`own`)."""

    def __init__(self, settings: Mapping[str, str | None], workers: int, name: str = "supervisor") -> None:
        self.workers = workers
        self.own = free_ports(workers)
        super().__init__({**settings, "PRESENCE_WORKER_PORTS": str(self.own[0])}, name=name,
                         args=["--workers", str(workers)])

    def own_url(self, slot: int) -> str:
        return f"http://127.0.0.1:{self.own[slot - 1]}"

    def answers(self) -> bool:
        return all(http_get(self.own_url(slot) + self.ready_path, 1.0)[0] == 200
                   for slot in range(1, self.workers + 1))

    def children(self) -> set[int]:
        return {int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()}

    def worker_pid(self, slot: int) -> int:
        """The pid of worker ``slot`` (the supervisor's child started with ``--worker slot``)."""
        for pid in self.children():
            args = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            if "--worker" in args and args[args.index("--worker") + 1] == str(slot):
                return pid
        raise RuntimeError(f"worker {slot} is not running:\n{self.log()}")

    def server_id(self, slot: int) -> str:
        """The server id of worker ``slot``'s current process (its own address's /readyz)."""
        status, body = http_get(self.own_url(slot) + "/readyz")
        assert status == 200, (status, body)
        return str(json.loads(body)["server"])

    def kill(self) -> None:
        """The supervisor and its workers (which would otherwise drain and exit on their own)."""
        workers = self.children() if self.alive() else set()
        super().kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue


class HttpProc(Proc):
    """Another program serving HTTP on ``port``: ready once ``path`` answers 200."""

    def __init__(self, name: str, cmd: Sequence[str], port: int, path: str = "/",
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.port = port
        self.path = path
        super().__init__(name, cmd, env, cwd)

    def answers(self) -> bool:
        return http_get(f"http://127.0.0.1:{self.port}{self.path}", 1.0)[0] == 200


class BareProc(HttpProc):
    """The bare baseline server (``presence.bench.bare``)."""

    def __init__(self, heartbeat_ms: int) -> None:
        port = free_port()
        super().__init__("bare", [sys.executable, "-m", "presence.bench.bare", "--port", str(port),
                                  "--heartbeat-ms", str(heartbeat_ms)], port, "/healthz", child_env())
