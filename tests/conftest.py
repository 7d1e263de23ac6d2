"""The fixtures of every test: they start what a test asks for (redis-server, a Redis Cluster,
``presence serve`` processes, a key set) when it asks, never at import. The helpers they use live in
tests/support (on the path through pyproject.toml's ``pythonpath``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from keysets import KeySetServer
from procs import LocalRedisCluster, RedisServer, TlsFiles, TlsRedisServer
from script_support import lease_scripts
from servers import Cluster

from presence.gateway.leases import LeaseScripts
from presence.signing import JwksKeys


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run long soak/chaos tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:  # the groups first: the longest units of work
        order = [*dict.fromkeys(GROUPS.values()), None]
        items.sort(key=lambda item: order.index(_group(item.nodeid)))
    if config.getoption("--runslow") or os.environ.get("PRESENCE_RUNSLOW"):
        return
    skip = pytest.mark.skip(reason="long test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Under pytest-xdist a test file runs on one worker (its module fixtures are started once), and the
# files of one group run one after the other on one worker: the bench and the chaos soaks load both
# cores themselves, and one Chromium at a time keeps its pages answering their pings on 2 cores.
GROUPS = {"tests/system/test_bench.py": "cpu", "tests/system/test_chaos.py": "cpu", "tests/browser/": "browser"}


def _group(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return next((group for prefix, group in GROUPS.items() if path.startswith(prefix)), None)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Units of work handed out in the order collected (the groups first), a unit at a time to the
    worker about to run out."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFileAndGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid) or nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # by our order, not by the number of tests
    return ByFileAndGroup(config, log)


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


@pytest.fixture
def keyset() -> Iterator[KeySetServer]:
    """An identity provider's key set, served on a free port (empty until the test sets its keys)."""
    server = KeySetServer()
    yield server
    server.close()


@pytest.fixture
async def running() -> AsyncIterator[list[JwksKeys]]:
    """Key sets a test prepared (their refreshers run): stopped after it."""
    started: list[JwksKeys] = []
    yield started
    for keys in started:
        await keys.stop()
