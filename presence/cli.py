"""Command line: ``presence serve`` and ``presence token``."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from collections.abc import Sequence

from . import __version__, auth, logctx
from .settings import Settings, SettingsError


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record), "level": record.levelname, "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("conn", "request"):  # set by logctx.ContextFilter
            if value := getattr(record, key, ""):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(logctx.ContextFilter())
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(logctx.TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .http.app import create_app
    from .http.stack import uvicorn_config

    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, redis_url=args.redis_url, lease_scope=args.scope,
            allow_dev_on_public=True if args.allow_dev_on_public else None,
            log_json=True if args.log_json else None, log_level=args.log_level,
        )
    except SettingsError as exc:
        print(f"presence: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json)
    # Thousands of open tabs are hundreds of thousands of long-lived objects, and every full
    # collection walks them all: 0.5 s of stalled event loop at 5,000 tabs, every 15 s or so.
    # A full collection after 1,000 middle-generation ones instead of 10 comes every few minutes;
    # cyclic garbage among old objects waits that long (measured: BENCHMARKS.md).
    gc.set_threshold(700, 10, 1000)
    config = uvicorn_config(create_app(settings), settings.host, settings.port, settings.max_message_bytes)
    uvicorn.Server(config).run()
    return 0


def _token(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"presence: {exc}", file=sys.stderr)
        return 2
    if not settings.can_mint:
        print("presence: tokens come from your identity provider (PRESENCE_JWT_PUBLIC_KEY or PRESENCE_JWKS_URL "
              "is set): only it holds the private key, so this server cannot mint them", file=sys.stderr)
        return 2
    if settings.dev_mode:
        print("presence: dev mode (no PRESENCE_SECRET): this token is signed with the public dev key",
              file=sys.stderr)
    takeover = None if args.takeover is None else args.takeover == "yes"
    print(auth.mint(settings.signing_key, args.user, args.name, args.ttl, args.ws, takeover))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="presence", description=__doc__)
    parser.add_argument("--version", action="version", version=f"presence {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (settings from PRESENCE_* variables)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; PRESENCE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000; PORT or PRESENCE_PORT)")
    serve.add_argument("--redis-url", help="Redis URL (overrides PRESENCE_REDIS_URL)")
    serve.add_argument("--scope", choices=["user", "tab"], help="lease scope (PRESENCE_LEASE_SCOPE)")
    serve.add_argument("--allow-dev-on-public", action="store_true",
                       help="allow dev mode (no secret) on a non-loopback address")
    serve.add_argument("--log-json", action="store_true", help="JSON log lines (PRESENCE_LOG_JSON)")
    serve.add_argument("--log-level", help="debug, info, warning, error (PRESENCE_LOG_LEVEL)")
    serve.set_defaults(func=_serve)

    token = sub.add_parser("token", help="print a signed token (PRESENCE_SECRET, or the dev key)")
    token.add_argument("--user", required=True, help="user id (the 'sub' claim)")
    token.add_argument("--name", help="display name (default: the user id)")
    token.add_argument("--ws", action="append", help="allowed workspace id or prefix* (repeatable)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--takeover", choices=["yes", "no"], help="may force-take leases (default yes)")
    token.set_defaults(func=_token)

    from .bench import add_parser as add_bench_parser  # argparse only; the bench loads on use

    add_bench_parser(sub)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
