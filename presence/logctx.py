"""Log context: the worker, connection and request a log line belongs to, added to every record.

``worker`` is set once per process (under ``presence serve --workers``); ``conn_id`` is set once
per WebSocket connection (each runs in its own task, so it stays with that connection and the
tasks it starts); ``request_id`` is set per client request (the echoed ``id``) or per admin HTTP
request. :class:`ContextFilter` copies them onto each record as ``worker``, ``conn`` and
``request`` and prepares ``ctx``, a ready-made suffix for text formats.

Text logs are one line per record, and a reader (or a log shipper) trusts that: a user id, a
request id or a URL path with a newline in it must not start a forged line. :class:`TextFormatter`
escapes control characters (and Unicode line separators) in the message and the context; only a
traceback keeps its own lines. JSON logs escape by construction.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

conn_id: ContextVar[str] = ContextVar("conn_id", default="")
request_id: ContextVar[str] = ContextVar("request_id", default="")
worker = ""
"""This process's worker number under ``presence serve --workers`` (empty otherwise): set once at
start-up, on every record as ``worker``, so interleaved lines of several workers tell apart."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ctx)s: %(message)s"

# C0 and C1 controls, DEL, and the characters some viewers take for line breaks.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """``text`` on one line: each control character written as a ``\\xNN`` or ``\\uNNNN`` escape."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class ContextFilter(logging.Filter):
    """Adds ``worker``, ``conn``, ``request`` and ``ctx`` (`` [worker=.. conn=.. req=..]`` or empty)
    to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        conn, request = conn_id.get(), request_id.get()
        record.worker = worker
        record.conn = conn
        record.request = request
        named = (("worker", worker), ("conn", conn), ("req", request))
        parts = [f"{key}={value}" for key, value in named if value]
        record.ctx = f" [{' '.join(parts)}]" if parts else ""
        return True


class TextFormatter(logging.Formatter):
    """The text format, one line per record whatever the logged values hold (tracebacks aside)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        record.ctx = escape(getattr(record, "ctx", ""))
        return super().formatMessage(record)
