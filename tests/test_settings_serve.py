"""`presence serve` refuses settings it cannot run with before it serves anything: exit status 2,
one line on stderr naming the setting, no traceback, no process left running. Against real
`presence serve` processes (and, for Cluster mode, a real redis-server that is not a cluster)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest
from procs import ROOT, RedisServer, ServerProcess, free_port

SECRET = "s" * 40
ENV = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def serve(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "presence", "serve", "--port", str(free_port())],
        capture_output=True, text=True, env={**ENV, **env}, cwd=ROOT, timeout=timeout,
    )


@pytest.mark.parametrize(("env", "named"), [
    ({"PRESENCE_KEY_IDLE_DAYS": "nan"}, "PRESENCE_KEY_IDLE_DAYS"),
    ({"PRESENCE_KEY_IDLE_DAYS": "inf"}, "PRESENCE_KEY_IDLE_DAYS"),
    ({"PRESENCE_RATE_LIMIT": "nan"}, "PRESENCE_RATE_LIMIT"),
    ({"PRESENCE_USER_RATE_LIMIT": "inf"}, "PRESENCE_USER_RATE_LIMIT"),
    ({"PRESENCE_LOG_LEVEL": "verbose"}, "PRESENCE_LOG_LEVEL"),
    ({"PRESENCE_REDIS_URL": "redis://127.0.0.1:99999/0", "PRESENCE_SECRET": SECRET}, "PRESENCE_REDIS_URL"),
    ({"PRESENCE_REDIS_URL": "redis://127.0.0.1:1/0?socket_timeout=abc", "PRESENCE_SECRET": SECRET},
     "PRESENCE_REDIS_URL"),
    ({"PRESENCE_REDIS_URL": "redis://127.0.0.1:1/abc", "PRESENCE_SECRET": SECRET}, "PRESENCE_REDIS_URL"),
    ({"PRESENCE_KEY_IDLE_DAYS": "1e300"}, "PRESENCE_KEY_IDLE_DAYS"),
    ({"PRESENCE_AUDIT_MAX_LEN": "1e20"}, "PRESENCE_AUDIT_MAX_LEN"),
    ({"PRESENCE_LEASE_TTL_MS": "1e16"}, "PRESENCE_LEASE_TTL_MS"),
    ({"PRESENCE_JWKS_URL": "https://idp.example:abc/jwks.json"}, "PRESENCE_JWKS_URL"),
    ({"PRESENCE_API_KEY": " " * 16, "PRESENCE_SECRET": SECRET}, "PRESENCE_API_KEY"),
    ({"PRESENCE_SECRET": ""}, "PRESENCE_SECRET"),
    ({"PRESENCE_SECRET": "", "PRESENCE_DEV": "1"}, "PRESENCE_SECRET"),
    ({"PRESENCE_REDIS_URL": "redis://127.0.0.1:1/0"}, "PRESENCE_DEV=1"),
    ({"PRESENCE_API_KEY": "k" * 32, "PRESENCE_ALLOWED_ORIGINS": "https://app.example"}, "PRESENCE_DEV=1"),
])
def test_serve_refuses_a_bad_setting_with_one_line_and_exit_status_2(env: dict[str, str], named: str) -> None:
    out = serve(env)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith("presence: ") and named in line, line


def test_dev_mode_on_a_real_redis_starts_when_meant(redis_server: RedisServer, prefix: str) -> None:
    env = {**ENV, "PRESENCE_REDIS_URL": redis_server.url, "PRESENCE_KEY_PREFIX": prefix}
    refused = serve(env)
    assert refused.returncode == 2 and "PRESENCE_REDIS_URL" in refused.stderr
    server = ServerProcess({**env, "PRESENCE_DEV": "1"}, name="dev-on-redis")
    try:
        server.start()  # ready: Redis answers, scripts loaded
        assert "DEV MODE" in server.log()
        with urllib.request.urlopen(server.http_url + "/demo/token?user=alice", timeout=5) as r:
            assert r.status == 200
    finally:
        server.close()


def test_cluster_mode_against_a_node_that_is_not_a_cluster_stops_at_start_up(redis_server: RedisServer) -> None:
    out = serve({"PRESENCE_REDIS_URL": redis_server.url, "PRESENCE_REDIS_CLUSTER": "true", "PRESENCE_SECRET": SECRET})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    refusals = [line for line in out.stderr.splitlines() if line.startswith("presence: ")]
    assert refusals == [
        f"presence: PRESENCE_REDIS_CLUSTER=true, but the Redis at {redis_server.url!r} is not in cluster mode: "
        "point PRESENCE_REDIS_URL at a node of the cluster, or unset PRESENCE_REDIS_CLUSTER"
    ], out.stderr
    assert "started on" not in out.stderr  # it never served


def test_cluster_mode_with_redis_down_at_start_up_waits_for_it() -> None:
    """Unreachable is not a configuration error: the server starts, not ready, and waits."""
    port = free_port()
    server = ServerProcess({"PRESENCE_REDIS_URL": f"redis://127.0.0.1:{port}/0", "PRESENCE_REDIS_CLUSTER": "true",
                            "PRESENCE_SECRET": SECRET}, name="cluster-down")
    try:
        server.start(wait_ready=False)
        assert server.proc is not None and server.proc.poll() is None
        assert "Redis unavailable at start-up" in server.log()
    finally:
        server.close()
