"""`presence.app:create_app()`, the ASGI factory for a server command line of one's own: started by
uvicorn as a real process with the command line docs/deployment.md gives, it serves tabs (hello, welcome,
a lease), refuses an oversized frame with 1009, logs its start-up lines and stops on SIGTERM
without a traceback; settings that cannot work, or dev mode not asked for, stop it with one line and status 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from paths import ROOT
from procs import free_port
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from presence import auth
from presence.bench.procs import HttpProc

SECRET = "s" * 40
ENV = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "HOME": tempfile.gettempdir()}


def uvicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", "presence.app:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--ws", "websockets-sansio", "--ws-max-size", "16384",
            "--ws-per-message-deflate", "false", "--timeout-graceful-shutdown", "5"]


def test_uvicorn_serves_the_factory_app(tmp_path: Path) -> None:
    port = free_port()
    proc = HttpProc("uvicorn", uvicorn(port), port, "/readyz", env={**ENV, "PRESENCE_SECRET": SECRET}, cwd=tmp_path)
    try:
        proc.start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as r:
            assert "paths" in json.loads(r.read())

        url = f"ws://127.0.0.1:{port}/ws"
        with connect(url) as ws:
            ws.send(json.dumps({"type": "hello", "token": auth.mint(SECRET, "alice", "Alice"), "workspace": "doc-1",
                                "tab": "t1"}))
            welcome = json.loads(ws.recv(timeout=5))
            assert welcome["type"] == "welcome" and welcome["user"] == {"id": "alice", "name": "Alice"}
            ws.send(json.dumps({"type": "acquire", "id": "1"}))
            answers = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
            acquired = next(m for m in answers if m["type"] == "acquired")
            assert acquired["id"] == "1" and acquired["fence"] > 0
            # --ws-max-size is what bounds a frame
            ws.send(json.dumps({"type": "status", "meta": {"pad": "x" * 20_000}}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        assert proc.terminate(30) in (0, -signal.SIGTERM)  # uvicorn ends with the signal's own status
        log = proc.log(None)
        assert "presence server" in log and "started on" in log, log  # the factory set up presence's logging
        assert "Traceback" not in log, log
    finally:
        proc.close()


@pytest.mark.parametrize(("env", "message"), [
    ({"PRESENCE_SECRET": SECRET, "PRESENCE_HEARTBEAT_MS": "abc"}, "PRESENCE_HEARTBEAT_MS must be a whole number"),
    ({}, "refusing to run in dev mode"),
], ids=["bad-setting", "dev-mode"])
def test_the_factory_refuses_what_cannot_work_with_one_line(env: dict[str, str], message: str) -> None:
    out = subprocess.run(uvicorn(free_port()), env={**ENV, **env}, capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_dev_mode_runs_when_asked_for() -> None:
    """PRESENCE_ALLOW_DEV_ON_PUBLIC=true says dev mode is meant: the app is made (no process needed)."""
    probe = "import presence.app as a; print(type(a.create_app()).__name__)"
    out = subprocess.run([sys.executable, "-c", probe], env={**ENV, "PRESENCE_ALLOW_DEV_ON_PUBLIC": "true"},
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Starlette"
