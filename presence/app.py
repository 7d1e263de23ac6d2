"""The ASGI application for a command line of your own (uvicorn, gunicorn), settings from the environment.

    uvicorn --factory presence.app:create_app --host 127.0.0.1 --port 8000 --ws websockets-sansio --ws-max-size 16384
    gunicorn -k uvicorn.workers.UvicornWorker -b 127.0.0.1:8000 'presence.app:create_app()'

``presence serve`` remains the simplest way to run the server (it sets up uvicorn as the server wants
it; docs/deployment.md says what a command line of your own should add). The settings are the same
``PRESENCE_*`` variables; settings that cannot work stop the process with a one-line message and exit
status 2, as ``presence serve`` does.
"""

from __future__ import annotations

import sys

from starlette.applications import Starlette

from .cli import setup_logging
from .http.app import create_app as _create_app
from .settings import Settings, SettingsError

__all__ = ["create_app"]


def create_app() -> Starlette:
    """The presence server as an ASGI app, its settings read from the environment."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"presence: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.dev_mode and not settings.allow_dev_on_public:
        # `presence serve` refuses dev mode on a public address; here the address is the command
        # line's, which the app never sees, so dev mode must be asked for.
        print("presence: refusing to run in dev mode (no PRESENCE_SECRET, PRESENCE_JWT_PUBLIC_KEY or "
              "PRESENCE_JWKS_URL) under a server command line of your own, which may listen on any address: "
              "set one of them, or PRESENCE_ALLOW_DEV_ON_PUBLIC=true if you really mean it", file=sys.stderr)
        raise SystemExit(2)
    setup_logging(settings.log_level, settings.log_json)
    return _create_app(settings)
