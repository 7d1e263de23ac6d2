"""A first run that guides: what a new user sees from `presence --help` to the start page."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import httpx
import pytest
from procs import ROOT, ServerProcess, free_port
from starlette.testclient import TestClient

from presence.http.app import base_url, create_app
from presence.settings import Settings

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
    server = ServerProcess({"PRESENCE_REDIS_URL": "", "PRESENCE_SECRET": "", "PRESENCE_ADMIN_TOKEN": ""},
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
