"""Origin: which browser pages may open a WebSocket to this server."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..settings import Settings


def origin_allowed(settings: Settings, origin: str | None, host: str | None) -> bool:
    if origin is None:
        return True  # not a browser: browsers always send Origin on WebSocket upgrades
    origin = origin.rstrip("/")
    if settings.allowed_origins:
        return "*" in settings.allowed_origins or origin in settings.allowed_origins
    if settings.dev_mode:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()
