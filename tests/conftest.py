from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from procs import LocalRedisCluster, RedisServer, ServerProcess, TlsFiles, TlsRedisServer
from script_support import lease_scripts

from presence.gateway.leases import LeaseScripts

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run long soak/chaos tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("PRESENCE_RUNSLOW"):
        return
    skip = pytest.mark.skip(reason="long test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests isolate themselves by key prefix."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that kill, restart or flush it."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


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


@pytest.fixture
def servers(redis_server: RedisServer, prefix: str) -> Iterator[Cluster]:
    c = Cluster(redis_server.url, prefix)
    yield c
    c.close()


@pytest.fixture
async def tabs() -> AsyncIterator[list]:  # type: ignore[type-arg]
    """Collects test tabs and closes them after the test."""
    opened: list = []  # type: ignore[type-arg]
    yield opened
    for t in opened:
        with contextlib.suppress(Exception):
            await t.drop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A local 3-primary Redis Cluster for the session; tests isolate themselves by key prefix.
    Tests that kill nodes or move slots use ``own_redis_cluster``."""
    cluster = LocalRedisCluster().start()
    yield cluster
    cluster.close()


@pytest.fixture
def own_redis_cluster() -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster().start()
    yield cluster
    cluster.close()


@pytest.fixture(params=["redis", "fakeredis", pytest.param("cluster", marks=pytest.mark.cluster)])
async def lease(request: pytest.FixtureRequest) -> AsyncIterator[LeaseScripts]:
    """The lease scripts on a real redis-server, the embedded fakeredis and the local Redis Cluster
    (a module that needs one store defines its own ``lease``)."""
    async for scripts in lease_scripts(request):
        yield scripts


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1; skips when openssl is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: no TLS tests")
    return TlsFiles(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def tls_redis(tls_files: TlsFiles) -> Iterator[TlsRedisServer]:
    """A TLS-only redis-server; skips when this redis-server was built without TLS."""
    server = TlsRedisServer(tls_files)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        server.close()
        pytest.skip(f"redis-server without TLS support: {exc}")
    yield server
    server.close()
