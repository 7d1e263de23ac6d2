"""Log context: the connection and request a log line belongs to, added to every record.

``conn_id`` is set once per WebSocket connection (each runs in its own task, so it stays with
that connection and the tasks it starts); ``request_id`` is set per client request (the echoed
``id``) or per admin HTTP request. :class:`ContextFilter` copies both onto each record as
``conn`` and ``request`` and prepares ``ctx``, a ready-made suffix for text formats.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

conn_id: ContextVar[str] = ContextVar("conn_id", default="")
request_id: ContextVar[str] = ContextVar("request_id", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ctx)s: %(message)s"


class ContextFilter(logging.Filter):
    """Adds ``conn``, ``request`` and ``ctx`` (`` [conn=.. req=..]`` or empty) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        conn, request = conn_id.get(), request_id.get()
        record.conn = conn
        record.request = request
        parts = [p for p in (f"conn={conn}" if conn else "", f"req={request}" if request else "") if p]
        record.ctx = f" [{' '.join(parts)}]" if parts else ""
        return True
