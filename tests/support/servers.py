"""``presence serve`` processes for tests: the short timings they run with (``FAST``), a group of
servers sharing one Redis (:class:`Cluster`, the ``servers`` fixture) and checks on one server."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from procs import ServerProcess

# Short, configured timings: timing-dependent tests use these and generous bounds.
FAST = {
    "PRESENCE_HEARTBEAT_MS": "300",
    "PRESENCE_DEAD_AFTER_MS": "900",
    "PRESENCE_LEASE_TTL_MS": "1500",
    "PRESENCE_GRACE_MS": "600",
    "PRESENCE_HELLO_TIMEOUT_MS": "1000",
    "PRESENCE_LOG_LEVEL": "info",
    # Dev mode (tests mint dev tokens) on a real Redis: a production setting, so it must be meant.
    "PRESENCE_DEV": "1",
}
GRACE_S = int(FAST["PRESENCE_GRACE_MS"]) / 1000
TTL_S = int(FAST["PRESENCE_LEASE_TTL_MS"]) / 1000
# 100 joins fan out ~10,000 full states to one test process: relaxed timings so the test client
# is never mistaken for a dead tab on a busy machine.
RELAXED = {"PRESENCE_HEARTBEAT_MS": "1000", "PRESENCE_DEAD_AFTER_MS": "8000", "PRESENCE_LEASE_TTL_MS": "5000"}
# Servers on a Redis Cluster (LocalRedisCluster).
CLUSTER = {"PRESENCE_REDIS_CLUSTER": "true"}


class Cluster:
    """Presence server processes sharing one Redis, created on demand and closed by the fixture."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.servers: list[ServerProcess] = []

    def server(self, name: str = "server", **env: str) -> ServerProcess:
        full = {**FAST, "PRESENCE_REDIS_URL": self.redis_url, "PRESENCE_KEY_PREFIX": self.prefix, **env}
        proc = ServerProcess(full, name=name)
        self.servers.append(proc)  # first: closed by the fixture even if the test stops while it starts
        return proc.start()

    async def server_async(self, name: str = "server", **env: str) -> ServerProcess:
        """:meth:`server` for async tests: started in a worker thread, so the event loop (and the
        tabs already open on it) goes on running while the process comes up."""
        return await asyncio.to_thread(self.server, name, **env)

    def close(self) -> None:
        for s in self.servers:
            s.close()


def assert_no_traceback(server: ServerProcess) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]


def http_status(server: ServerProcess, path: str) -> int:
    try:
        with urllib.request.urlopen(server.http_url + path, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
