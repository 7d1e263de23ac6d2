"""Real processes for high-availability tests: a primary, replicas and three Redis Sentinels.

:class:`SentinelGroup` starts a primary and its replicas (``RedisServer``, so redis-server or, with
``PRESENCE_TEST_SERVER=valkey``, valkey-server) and three ``<server> --sentinel`` processes, each
from a generated config with a short ``down-after-milliseconds``, and waits until every Sentinel
knows the replicas and the other Sentinels. Tests kill, pause and resume nodes and wait for a
failover with :meth:`SentinelGroup.wait_new_primary`.

The data nodes start a full resynchronisation at once (``repl-diskless-sync-delay 0``; Redis waits
5 s by default, for more replicas to join the same transfer): a replica that was (re)started is a
copy of its primary within milliseconds, so a failover promotes a replica that missed only the
last changes, not one that never synced. ``min_replicas_to_write`` sets Redis'
``min-replicas-to-write`` on every data node, as docs/deployment.md advises against a primary that goes on
taking writes after the Sentinels replaced it.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from pathlib import Path

import redis
from procs import RedisServer, free_port, server_binary, wait_until

from presence.bench.procs import Proc

MASTER = "mymaster"


class Sentinel(Proc):
    """``<server> sentinel.conf --sentinel`` on ``port``: started once it answers PING."""

    start_timeout = 10.0

    def __init__(self, conf: Path, port: int) -> None:
        self.port = port
        super().__init__(f"sentinel-{port}", [server_binary(), str(conf), "--sentinel"])

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)

    def answers(self) -> bool:
        return bool(self.client().ping())


class SentinelGroup:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority).

    ``nodes`` maps port -> RedisServer for every data node, whatever its role now."""

    def __init__(self, replicas: int = 1, sentinels: int = 3, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 4000, min_replicas_to_write: int = 0) -> None:
        self.node_args = ["--repl-diskless-sync-delay", "0"]
        if min_replicas_to_write:
            self.node_args += ["--min-replicas-to-write", str(min_replicas_to_write)]
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.dir = tempfile.mkdtemp(prefix="presence-sentinel-")
        self.nodes: dict[int, RedisServer] = {}
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_procs: list[Sentinel] = []
        self.replica_count = replicas
        self.first_primary = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> SentinelGroup:
        try:
            primary = self._node_server([]).start()
            self.nodes[primary.port] = primary
            self.first_primary = primary.port
            for _ in range(self.replica_count):
                replica = self._node_server(["--replicaof", "127.0.0.1", str(primary.port)]).start()
                self.nodes[replica.port] = replica
            wait_until(lambda: self._replicas_online(primary.port) >= self.replica_count, 20, "replicas in sync")
            for port in self.sentinel_ports:
                self._start_sentinel(port, primary.port)
            wait_until(self._sentinels_agree, 30, "Sentinels see the replicas and each other", interval=0.1)
        except BaseException:
            self.close()
            raise
        return self

    def _node_server(self, args: list[str]) -> RedisServer:
        port = free_port()
        return RedisServer(port, extra=[*self._node_args(port), *args])

    def _node_args(self, port: int) -> list[str]:
        """Every data node logs (appending across restarts) in the group's directory."""
        return [*self.node_args, "--logfile", str(Path(self.dir, f"redis-{port}.log"))]

    def _start_sentinel(self, port: int, primary_port: int) -> None:
        conf = Path(self.dir, f"sentinel-{port}.conf")
        quorum = len(self.sentinel_ports) // 2 + 1
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        sentinel = Sentinel(conf, port)
        self.sentinel_procs.append(sentinel)  # first: closed with the group even if it never answers
        sentinel.start()

    def close(self, keep_logs: str | None = None) -> None:
        """Stop every process; ``keep_logs``: a directory to copy the Redis and Sentinel logs to."""
        for proc in [*self.sentinel_procs, *self.nodes.values()]:
            proc.close(keep_log=bool(keep_logs))
        if keep_logs:
            Path(keep_logs).mkdir(parents=True, exist_ok=True)
            for sentinel in self.sentinel_procs:
                shutil.move(sentinel.log_path, Path(keep_logs, f"{sentinel.name}.log"))
            for log in Path(self.dir).glob("*.log"):
                shutil.copy(log, keep_logs)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- addresses --------------------------------------------------------------------------

    @property
    def sentinels_env(self) -> str:
        """The value of ``PRESENCE_REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    def env(self) -> dict[str, str]:
        return {"PRESENCE_REDIS_SENTINELS": self.sentinels_env, "PRESENCE_REDIS_SENTINEL_MASTER": MASTER}

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=2)

    def node(self, port: int) -> redis.Redis:
        return self.nodes[port].client()

    def primary_port(self) -> int:
        """The primary the Sentinels name now (asks the first one that answers)."""
        for port in self.sentinel_ports:
            try:
                _host, primary = self.sentinel(port).sentinel_get_master_addr_by_name(MASTER)
                return int(primary)
            except redis.RedisError:
                continue
        raise RuntimeError("no Sentinel answers")

    def replica_ports(self) -> list[int]:
        primary = self.primary_port()
        return [p for p in self.nodes if p != primary]

    # -- state ------------------------------------------------------------------------------

    def _replicas_online(self, primary_port: int) -> int:
        info = self.node(primary_port).info("replication")
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                   and v.get("state") == "online")

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            state = self.sentinel(port).sentinel_master(MASTER)
            if int(state["num-slaves"]) < self.replica_count:
                return False
            if int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                return False
        return True

    def wait_new_primary(self, old: int, timeout: float = 30) -> int:
        """Wait until every Sentinel names a primary other than ``old`` and it says role master."""
        def promoted() -> int | None:
            names = set()
            for port in self.sentinel_ports:
                _host, primary = self.sentinel(port).sentinel_get_master_addr_by_name(MASTER)
                names.add(int(primary))
            if len(names) != 1:
                return None
            (new,) = names
            if new == old or self.node(new).info("replication")["role"] != "master":
                return None
            return new
        result: int = wait_until(promoted, timeout, f"failover away from :{old}", interval=0.1)
        return result

    async def wait_new_primary_async(self, old: int, timeout: float = 30) -> int:
        return await asyncio.to_thread(self.wait_new_primary, old, timeout)

    # -- faults -----------------------------------------------------------------------------

    def kill(self, port: int) -> None:
        self.nodes[port].stop()

    async def kill_async(self, port: int) -> None:
        await asyncio.to_thread(self.kill, port)

    def pause(self, port: int) -> None:
        proc = self.nodes[port].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        proc = self.nodes[port].proc
        assert proc is not None
        proc.send_signal(signal.SIGCONT)

    def restart_as_replica(self, port: int) -> None:
        """Start a killed node again, empty, as a replica of the current primary (as an operator
        brings a crashed primary back).

        Empty: a replica keeps the snapshot of its last full resynchronisation in its directory
        (``dump.rdb``) and would load it on start, coming back with the data of some earlier
        moment, and a failover before its next resynchronisation would promote that."""
        node = self.nodes[port]
        for snapshot in Path(node.dir).glob("*.rdb"):
            snapshot.unlink()
        node.extra = [*self._node_args(port), "--replicaof", "127.0.0.1", str(self.primary_port())]
        node.start()

    async def restart_as_replica_async(self, port: int) -> None:
        await asyncio.to_thread(self.restart_as_replica, port)
