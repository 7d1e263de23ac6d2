"""Stack: the uvicorn server ``presence serve`` runs on (``presence bench`` runs its baselines on
the same, so the comparison is fair)."""

from __future__ import annotations

import socket
from typing import Any


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (uvicorn listens on it). Raises ``OSError`` (address in
    use, not an address of this machine, no permission) before anything else has started."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, host: str, port: int, max_message_bytes: int) -> Any:
    """The server stack of ``presence serve`` (``presence bench`` runs its baselines on the same)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=max_message_bytes,
        ws_per_message_deflate=False,  # memory per tab matters more than bytes on the wire
        ws_ping_interval=None,  # the application heartbeat does this job
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=5,
        proxy_headers=True,
    )
