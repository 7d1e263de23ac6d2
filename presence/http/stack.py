"""Stack: the uvicorn server ``presence serve`` runs on (``presence bench`` runs its baselines on
the same, so the comparison is fair)."""

from __future__ import annotations

from typing import Any


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
