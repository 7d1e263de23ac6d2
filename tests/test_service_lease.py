"""``ServiceLease`` when its renewals fail in any way (issue 22, item 6): a real ``presence
serve`` and Redis, reached through an HTTP stub of the test's own that forwards the job's calls
and then cuts, hangs or refuses the renewals. However they fail, ``check()`` raises
:class:`LeaseLost` once the lease may have expired, never after the server shows it free."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import Cluster
from procs import ServerProcess

from presence.fencing import LeaseLost, ServiceLease

API_KEY = "service-lease-api-key-0123456789"
TTL_MS = 1500
MARGIN_S = 0.15  # ServiceLease's default for this TTL: a tenth of it


class ApiStub:
    """Forwards every call to ``target``; while ``failing`` holds a mode, renewals (PUT) are
    ``cut`` (forwarded, the answer cut short: http.client.IncompleteRead territory), ``garbled``
    (forwarded, answered 200 with a body that is not JSON), ``hung`` (not forwarded, never
    answered) or ``refused`` (the stub stops listening)."""

    def __init__(self, target: ServerProcess) -> None:
        self.target = ("127.0.0.1", target.port)
        self.failing: str | None = None
        self.renewals = 0
        self.release = threading.Event()  # ends hung calls
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> tuple[int, bytes]:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(*owner.target, timeout=10)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
                    answer = conn.getresponse()
                    return answer.status, answer.read()
                finally:
                    conn.close()

            def _answer(self, status: int, body: bytes, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def do_PUT(self) -> None:
                owner.renewals += 1
                mode = owner.failing
                if mode == "hung":
                    owner.release.wait(30)
                    return
                status, body = self._forward()
                if mode == "cut":
                    self._answer(status, body[: len(body) // 2], length=len(body))
                elif mode == "garbled":
                    self._answer(200, b"<html>proxy error</html>")
                else:
                    self._answer(status, body)

            def do_POST(self) -> None:
                self._answer(*self._forward())

            do_DELETE = do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop_listening(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def close(self) -> None:
        self.release.set()
        if self.failing != "refused":
            self.stop_listening()


@pytest.fixture
def server(servers: Cluster) -> ServerProcess:
    return servers.server("a", PRESENCE_API_KEY=API_KEY)


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[ApiStub]:
    s = ApiStub(server)
    yield s
    s.close()


def held_by(server: ServerProcess, workspace: str, fence: int) -> bool:
    """Whether the server itself (not through the stub) shows ``fence`` holding the lease."""
    r = httpx.get(f"{server.http_url}/api/v1/workspaces/{workspace}/lease",
                  headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    return bool(r.json()["fence"] == fence)


@pytest.mark.parametrize("mode", ["cut", "garbled", "hung", "refused"])
def test_check_raises_once_the_lease_may_have_expired_however_renewals_fail(
    server: ServerProcess, stub: ApiStub, mode: str
) -> None:
    workspace = f"import-{mode}"
    before = time.monotonic()
    # LeaseLost on exit too.
    with pytest.raises(LeaseLost, match="it expired"), ServiceLease(
        stub.url, API_KEY, workspace, "import", ttl_ms=TTL_MS
    ) as lease:
        entered = time.monotonic()
        assert held_by(server, workspace, lease.fence)
        stub.failing = mode
        if mode == "refused":
            stub.stop_listening()
        lost_at = free_at = None
        while (lost_at is None or free_at is None) and time.monotonic() - entered < 15:
            try:
                lease.check()
            except LeaseLost:
                lost_at = lost_at or time.monotonic()
            if free_at is None and not held_by(server, workspace, lease.fence):
                free_at = time.monotonic()
                assert lost_at is not None, "check() passed after the server showed the lease free"
            time.sleep(0.02)
        assert lost_at is not None and free_at is not None
        # Lost at the local deadline (from the grant, the last renewal that got through): not
        # before, and not a renewal interval or a socket timeout after (a generous bound, for
        # a busy machine; the server's own expiry above is the hard one).
        assert before + TTL_MS / 1000 - MARGIN_S - 0.05 <= lost_at <= entered + TTL_MS / 1000, lost_at - entered
        assert isinstance(lease.last_error, Exception)  # the renewals were tried, and failed
        exiting = time.monotonic()
    assert time.monotonic() - exiting < 2  # a hung renewal does not hold up the exit


def test_renewals_that_get_through_again_keep_the_lease(server: ServerProcess, stub: ApiStub) -> None:
    """A renewal that fails now and then (under a whole TTL) costs nothing: the next one that
    gets through moves the deadline on."""
    with ServiceLease(stub.url, API_KEY, "import-flaky", "import", ttl_ms=TTL_MS) as lease:
        for mode in ("cut", None, "garbled", None, "cut", None):  # never two failures in a row
            stub.failing = mode
            renewals = stub.renewals
            while stub.renewals == renewals:  # one renewal in this mode
                lease.check()
                time.sleep(0.02)
        stub.failing = None
        time.sleep(2 * TTL_MS / 1000)  # two TTLs on renewals alone
        lease.check()
        assert held_by(server, "import-flaky", lease.fence)
    assert not held_by(server, "import-flaky", lease.fence)  # released on exit
