"""HttpCall: one outgoing HTTP request whose whole exchange is bounded in time and size.

The server at the other end is not ours (an identity provider's key set) or may be cut off from
us (a backend job renewing its lease), so a per-socket timeout is not enough: a peer that sends
one byte every few seconds never trips it. Each call therefore has

- a deadline for the whole exchange (connect, headers, body): when it passes, the connection's
  socket is shut down under the reading thread, which then fails at once;
- a cap on the answer's body: a longer answer is refused, never read to its end.

urllib does the HTTP (certificate checks, redirects of a GET, ``HTTPS_PROXY``) in the calling
thread; the deadline is kept by a timer thread. An async caller runs :meth:`HttpCall.run` with
``asyncio.to_thread`` and calls :meth:`HttpCall.abort` when it is cancelled, so no worker thread
outlives its caller by more than a moment.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_BYTES = 1 << 20


class CallFailed(OSError):
    """The call got no complete answer (refused, cut, too slow, too large, not HTTP).

    An ``OSError``, as the network errors it stands for: code that caught those still does."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


Connect = Callable[..., http.client.HTTPConnection]


class _Tracked(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """urllib's handlers, recording each connection they open so :meth:`HttpCall.abort` can shut
    its socket down."""

    def __init__(self, track: Callable[[http.client.HTTPConnection], None]) -> None:
        urllib.request.HTTPHandler.__init__(self)
        urllib.request.HTTPSHandler.__init__(self)
        self._track = track

    def _tracking(self, kind: type[http.client.HTTPConnection]) -> Connect:
        def connect(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            conn = kind(host, **kwargs)
            self._track(conn)
            return conn
        return connect

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._tracking(http.client.HTTPConnection), req)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        context = getattr(self, "_context", None)
        return self.do_open(self._tracking(http.client.HTTPSConnection), req, context=context)


class HttpCall:
    """One request. ``run()`` (blocking) answers the status and body of any HTTP answer, or raises
    :class:`CallFailed`; ``abort()`` (from any thread) ends it at once."""

    def __init__(
        self, method: str, url: str, *, deadline_s: float, headers: dict[str, str] | None = None,
        body: bytes | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
        self.deadline_s = deadline_s
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self._aborted = False
        self._timed_out = False

    def run(self) -> Answer:
        timer = threading.Timer(self.deadline_s, self._time_out)
        timer.daemon = True
        timer.start()
        try:
            answer = self._exchange()
        except CallFailed:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._cut_off() or CallFailed(_describe(exc)) from None
        finally:
            timer.cancel()
        if cut_off := self._cut_off():  # a shut-down socket can also read as the end of a short answer
            raise cut_off
        return answer

    def abort(self) -> None:
        """Shut down the sockets of this call (idempotent; any thread). A connection being opened
        right now is not reached: call again until ``run`` returned."""
        with self._lock:
            self._aborted = True
            connections = list(self._connections)
        for conn in connections:
            sock = conn.sock
            if sock is not None:
                # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop its
                # TLS state under the reading thread's feet.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _cut_off(self) -> CallFailed | None:
        """Why the call was ended from outside, if it was."""
        if self._timed_out:
            return CallFailed(f"no complete answer within {self.deadline_s:g} s")
        if self._aborted:
            return CallFailed("aborted")
        return None

    def _time_out(self) -> None:
        self._timed_out = True
        self.abort()

    def _track(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if self._aborted:
                raise CallFailed("aborted")
            self._connections.append(conn)

    def _exchange(self) -> Answer:
        opener = urllib.request.build_opener(_Tracked(self._track))
        try:
            response: Any = opener.open(self.request, timeout=self.deadline_s)
        except urllib.error.HTTPError as err:  # an answer like any other: the caller judges it
            response = err
        with contextlib.closing(response):
            status = int(response.status)
            declared = response.headers.get("Content-Length") or ""
            if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
                raise CallFailed(f"the answer is larger than {self.max_bytes} bytes ({declared})")
            body = response.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise CallFailed(f"the answer is larger than {self.max_bytes} bytes")
        if declared.isascii() and declared.isdigit() and len(body) < int(declared):
            # http.client's read(n) returns what came before the connection closed, unflagged.
            raise CallFailed(f"the answer was cut short ({len(body)} of {declared} bytes)")
        return Answer(status, body)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason) or type(exc.reason).__name__
    return str(exc) or type(exc).__name__
