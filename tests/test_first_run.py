"""A first run that guides: what a new user sees from `presence --help` to the start page."""

from __future__ import annotations

import logging
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from procs import ROOT, ServerProcess, free_port, wait_until
from starlette.testclient import TestClient

from presence import cli
from presence.http.app import base_url, create_app
from presence.settings import Settings, is_set

ENV = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def presence(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "presence", *args], capture_output=True, text=True,
                          env={**ENV, **env}, cwd=ROOT, timeout=timeout)


def test_help_lists_every_command_with_a_line_each() -> None:
    out = presence("--help")
    assert out.returncode == 0
    for command in ("serve", "token", "bench"):
        assert re.search(rf"^\s+{command}\s+\S.+", out.stdout, re.M), (command, out.stdout)


def test_serve_help_explains_dev_mode_the_secret_and_the_admin_token() -> None:
    out = presence("serve", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "Dev mode: with no PRESENCE_SECRET" in text and "/demo" in text
    assert "PRESENCE_SECRET the HS256 key" in text
    assert "PRESENCE_ADMIN_TOKEN bearer token of /admin/api and the /dashboard page" in text


def test_a_port_in_use_is_one_clear_message_and_a_non_zero_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        out = presence("serve", "--port", str(port), timeout=30)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr
    assert "started" not in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


async def test_dev_mode_logs_the_urls_to_open_and_no_info_under_uvicorn_error() -> None:
    server = ServerProcess({"PRESENCE_REDIS_URL": None, "PRESENCE_SECRET": None, "PRESENCE_ADMIN_TOKEN": None},
                           name="first-run")
    try:
        await server.start_async()
        log = server.log()
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/demo", "/", "/dashboard", "/metrics"):
            assert f"open {base}{path}:" in log, log
        assert f"started on {base}" in log
        assert re.search(r"^\S+ \S+ INFO uvicorn\.error", log, re.M) is None, log
        assert "INFO uvicorn: Application startup complete" in log
        # the URLs it names answer
        async with httpx.AsyncClient(base_url=base) as http:
            start = await http.get("/")
            assert start.status_code == 200 and "text/html" in start.headers["content-type"]
            for link in ('href="/demo"', 'href="/dashboard"', 'href="/openapi.json"'):
                assert link in start.text
            assert "PRESENCE_ADMIN_TOKEN" in start.text  # the dashboard is off: the page says how to turn it on
            assert (await http.get("/demo")).status_code == 200
            off = await http.get("/dashboard")
            assert off.status_code == 404 and "The dashboard is off" in off.text
            assert "PRESENCE_ADMIN_TOKEN" in off.text
    finally:
        server.close()


def test_a_first_run_under_a_desktop_open_files_limit_raises_its_soft_limit_and_does_not_warn() -> None:
    """A hard limit of 4,096 open files (below the 21,100 the default PRESENCE_MAX_CONNECTIONS
    needs) whatever this machine's is: the first run must not open with a warning about it."""
    hard = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

    def desktop_limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    port = free_port()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "presence", "serve", "--port", str(port)],
                                env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=desktop_limits)
        try:
            def started() -> bool:
                assert proc.poll() is None, f"exited with {proc.returncode}"
                err.seek(0)
                return "Application startup complete" in err.read()
            wait_until(started, 60, "presence serve")
            limits = Path(f"/proc/{proc.pid}/limits").read_text()
            assert re.search(rf"^Max open files\s+{hard}\s+{hard}\s", limits, re.M), limits
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        err.seek(0)
        stderr = err.read()
    assert "Application startup complete" in stderr
    assert "open files" not in stderr and "ulimit" not in stderr, stderr


def _open_files_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, limits: tuple[int, int],
                    **kwargs: bool) -> tuple[list[logging.LogRecord], list[tuple[int, int]]]:
    """What :func:`cli._raise_open_files` logs and sets for 20,000 connections under ``limits``."""
    now = list(limits)
    raised: list[tuple[int, int]] = []

    def setrlimit(kind: int, value: tuple[int, int]) -> None:
        assert kind == resource.RLIMIT_NOFILE and value[0] <= value[1] == now[1]
        raised.append(value)
        now[0] = value[0]

    monkeypatch.setattr(cli.resource, "getrlimit", lambda kind: tuple(now))
    monkeypatch.setattr(cli.resource, "setrlimit", setrlimit)
    with caplog.at_level(logging.DEBUG, logger="presence.cli"):
        cli._raise_open_files(20_000, 1000, **kwargs)
    return [r for r in caplog.records if r.name == "presence.cli"], raised


def test_an_explicit_max_connections_above_the_open_files_limit_still_warns(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    records, raised = _open_files_log(caplog, monkeypatch, (1024, 4096), chosen=True, dev_mode=True)
    assert raised == [(4096, 4096)]  # as far as the hard limit allows, before deciding to warn
    [record] = records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "limited to 4096" in message and "PRESENCE_MAX_CONNECTIONS=20000 needs (21100)" in message
    assert "ulimit -n 21100" in message and "(the default)" not in message


@pytest.mark.parametrize(("dev_mode", "level"), [(False, logging.INFO), (True, logging.DEBUG)])
def test_the_default_max_connections_above_the_open_files_limit_is_no_warning(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, dev_mode: bool, level: int) -> None:
    records, raised = _open_files_log(caplog, monkeypatch, (1024, 4096), chosen=False, dev_mode=dev_mode)
    assert raised == [(4096, 4096)]
    [record] = records
    assert record.levelno == level
    assert "(the default) needs (21100)" in record.getMessage() and "ulimit -n 21100" in record.getMessage()


def test_enough_open_files_is_silent_and_a_high_enough_soft_limit_is_left_alone(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _open_files_log(caplog, monkeypatch, (1024, 65536), chosen=True, dev_mode=False) == ([], [(21100, 65536)])
    caplog.clear()
    assert _open_files_log(caplog, monkeypatch, (30000, 65536), chosen=True, dev_mode=False) == ([], [])


def test_is_set_tells_a_chosen_value_from_the_default() -> None:
    assert is_set("max_connections", {"PRESENCE_MAX_CONNECTIONS": "20000"})
    assert not is_set("max_connections", {"PRESENCE_MAX_CONNECTIONS": ""})
    assert not is_set("max_connections", {})
    assert is_set("port", {"PORT": "9000"}) and is_set("port", {"PRESENCE_PORT": "9000"})


def test_start_page_and_demo_exist_only_in_dev_mode() -> None:
    prod = TestClient(create_app(Settings(secret="s" * 40)))
    for path in ("/", "/demo", "/demo/token?user=a", "/demo/docs/doc-1"):
        assert prod.get(path).status_code == 404, path


def test_the_dashboard_is_served_once_an_admin_token_is_set() -> None:
    client = TestClient(create_app(Settings(admin_token="t" * 32)))
    page = client.get("/dashboard")
    assert page.status_code == 200 and 'src="/static/dashboard.js"' in page.text
    assert "asks for it" in client.get("/").text


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000"), ("0.0.0.0", "http://127.0.0.1:8000"), ("::", "http://[::1]:8000"),
    ("localhost", "http://localhost:8000"), ("::1", "http://[::1]:8000"),
])
def test_logged_urls_are_reachable_from_this_machine(host: str, url: str) -> None:
    assert base_url(host, 8000) == url


def test_readme_run_section_works_on_a_stock_debian_python() -> None:
    readme = (ROOT / "README.md").read_text()
    run = readme.split("## Run", 1)[1].split("\n## ", 1)[0]
    assert "Python 3.11 or newer" in run and "PEP 668" in run
    assert "python3 -m venv .venv && . .venv/bin/activate" in run
    assert run.index("python3 -m venv") < run.index("pip install .")
    procfile = (ROOT / "Procfile").read_text().splitlines()
    assert "PRESENCE_SECRET" in procfile[0] and procfile[1].startswith("web: presence serve")
