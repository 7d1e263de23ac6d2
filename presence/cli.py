"""presence: a WebSocket server that tells every browser tab who is in a workspace and who holds
its exclusive edit lease (leases on Redis, or on an embedded store for trying it out)."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import socket
import sys
from collections.abc import Sequence

from . import __version__, auth, logctx
from .settings import Settings, SettingsError, is_set
from .wire.messages import SERVICE_PREFIX


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record), "level": record.levelname, "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("worker", "conn", "request"):  # set by logctx.ContextFilter
            if value := getattr(record, key, ""):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _UvicornNames(logging.Filter):
    """uvicorn logs its ordinary start and stop lines under ``uvicorn.error``, which reads like an
    alarm: below WARNING they are shown as ``uvicorn``; warnings and errors keep the name."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and record.levelno < logging.WARNING:
            record.name = "uvicorn"
        return True


def setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_UvicornNames())
    handler.addFilter(logctx.ContextFilter())
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logctx.TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, redis_url=args.redis_url, lease_scope=args.scope,
            dev=True if args.dev else None, allow_dev_on_public=True if args.allow_dev_on_public else None,
            log_json=True if args.log_json else None, log_level=args.log_level,
        )
    except SettingsError as exc:
        return _refused(exc)
    if args.worker is None and args.workers is not None:
        if args.workers > 1 and settings.embedded:
            print(f"presence: --workers {args.workers} needs a Redis (set PRESENCE_REDIS_URL or "
                  "PRESENCE_REDIS_SENTINELS): the embedded store lives inside one process", file=sys.stderr)
            return 2
        if not settings.embedded:
            from .supervisor import supervise

            setup_logging(settings.log_level, settings.log_json)
            return supervise(settings, args.workers, _worker_flags(args))
    if args.worker is not None:
        logctx.worker = str(args.worker)
        sockets = [socket.socket(fileno=fd) for fd in args.fds]
    else:
        # Listen first: a port in use is one clear message and exit status 1, before anything starts.
        from .http.stack import bind_socket

        try:
            sockets = [bind_socket(settings.host, settings.port)]
        except OSError as exc:
            print(f"presence: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}. "
                  "Is another server running there? Choose another port with --port (or PORT).", file=sys.stderr)
            return 1
    setup_logging(settings.log_level, settings.log_json)
    return _run(settings, sockets, None if args.channel is None else socket.socket(fileno=args.channel))


def _run(settings: Settings, sockets: list[socket.socket], channel: socket.socket | None) -> int:
    from .http.app import create_app
    from .http.stack import HTTP_HEADROOM, RefusedAtStartup, uvicorn_config
    from .server import Server
    from .worker import run

    # Thousands of open tabs are hundreds of thousands of long-lived objects, and every full
    # collection walks them all: 0.5 s of stalled event loop at 5,000 tabs, every 15 s or so.
    # A full collection after 1,000 middle-generation ones instead of 10 comes every few minutes;
    # cyclic garbage among old objects waits that long (measured: docs/benchmarks.md).
    gc.set_threshold(700, 10, 1000)
    _raise_open_files(settings.max_connections, HTTP_HEADROOM, chosen=is_set("max_connections"),
                      dev_mode=settings.dev_mode)
    server = Server(settings)
    app = RefusedAtStartup(create_app(settings, server))
    config = uvicorn_config(
        app, settings.host, settings.port, settings.max_message_bytes, settings.max_connections,
        header_timeout_s=settings.hello_timeout_ms / 1000, send_buffer_bytes=settings.send_buffer_bytes,
    )
    try:
        run(config, server, sockets, channel)
    except SystemExit:  # how uvicorn ends a failed start-up
        if app.refusal is None:
            raise
    finally:
        for sock in sockets:
            sock.close()
    return 0 if app.refusal is None else _refused(app.refusal)


def _worker_flags(args: argparse.Namespace) -> list[str]:
    """The flags of this command line that each worker gets too (``--workers`` aside)."""
    flags: list[str] = []
    for name in ("host", "port", "redis_url", "scope", "log_level"):
        if (value := getattr(args, name)) is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    for name in ("dev", "allow_dev_on_public", "log_json"):
        if getattr(args, name):
            flags.append(f"--{name.replace('_', '-')}")
    return flags


def _workers(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a number of processes (1 or more) or 'auto', not {text!r}")
    return count


def _refused(exc: SettingsError) -> int:
    """Settings the server cannot run with: one line per problem, exit status 2."""
    for problem in exc.problems:
        print(f"presence: {problem}", file=sys.stderr)
    return 2


def _raise_open_files(max_connections: int, headroom: int, *, chosen: bool, dev_mode: bool) -> None:
    """Every connection is a file descriptor: raise the soft limit as far as the hard one allows,
    and say so when even that is too low for ``max_connections`` plus ``headroom``.

    A warning only when the operator chose PRESENCE_MAX_CONNECTIONS: the default is sized for a
    production process, and the usual hard limit of a desktop is lower, so a first run would open
    with a warning about 20,000 tabs it will never see. Left at the default it is an INFO line, and
    in dev mode (trying it out) a DEBUG one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + headroom + 100  # Redis connections, log files, the listening socket
    if soft < want and soft != resource.RLIM_INFINITY:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    level = logging.WARNING if chosen else logging.DEBUG if dev_mode else logging.INFO
    logging.getLogger("presence.cli").log(
        level, "open files are limited to %d (ulimit -n), fewer than PRESENCE_MAX_CONNECTIONS=%d%s needs (%d): "
        "raise the limit (ulimit -n %d, systemd's LimitNOFILE) or lower PRESENCE_MAX_CONNECTIONS",
        soft, max_connections, "" if chosen else " (the default)", want, want,
    )


def _token(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _refused(exc)
    if not settings.can_mint:
        print("presence: tokens come from your identity provider (PRESENCE_JWT_PUBLIC_KEY or PRESENCE_JWKS_URL "
              "is set): only it holds the private key, so this server cannot mint them", file=sys.stderr)
        return 2
    if args.user.startswith(SERVICE_PREFIX):
        print(f"presence: user ids starting with {SERVICE_PREFIX!r} are reserved for backend jobs, which take "
              "leases over the HTTP API (POST /api/v1/workspaces/{id}/lease); the server refuses such tokens",
              file=sys.stderr)
        return 2
    if settings.dev_mode:
        print("presence: dev mode (no PRESENCE_SECRET): this token is signed with the public dev key",
              file=sys.stderr)
    for prefix in auth.loose_prefixes(args.ws):
        print(f"presence: warning: --ws {prefix!r} is a prefix that also matches ids like "
              f"{prefix[:-1] + '0/x'!r}; to allow the workspaces under {prefix[:-1]!r} only, write "
              f"{prefix[:-1] + '/*'!r}", file=sys.stderr)
    takeover = None if args.takeover is None else args.takeover == "yes"
    print(auth.mint(settings.signing_key, args.user, args.name, args.ttl, args.ws, takeover,
                    issuer=settings.token_issuer, audience=settings.token_audience,
                    lease=False if args.read_only else None))
    return 0


SERVE_HELP = """\
Run the server. Settings come from PRESENCE_* environment variables (docs/configuration.md); the
flags below override them. A bad setting stops it with one line saying what to fix, exit status 2.

Dev mode: with no PRESENCE_SECRET (and no PRESENCE_JWT_PUBLIC_KEY or PRESENCE_JWKS_URL), tokens
are signed with a public key anyone can use, the demo is served at /demo with demo tokens at
/demo/token, any Origin is accepted, and the server refuses a non-loopback address unless given
--allow-dev-on-public, and production settings (a Redis URL, Sentinels, API key, admin token or
allowed origins) unless given --dev. It logs the URLs to open. With no PRESENCE_REDIS_URL it runs
on an embedded in-process store: one process, nothing kept across restarts.
"""

SERVE_EPILOG = """\
environment:
  PRESENCE_SECRET       the HS256 key your app backend signs tokens with (32+ characters);
                        setting it (or a public key or key set) ends dev mode
  PRESENCE_ADMIN_TOKEN  bearer token of /admin/api and the /dashboard page; unset, both are off
  PRESENCE_REDIS_URL    redis://, rediss:// or unix:// URL; unset: the embedded store
  PRESENCE_API_KEY      key of /api/v1 (app backends reading leases and fences)

examples:
  presence serve                                    # dev mode: open http://127.0.0.1:8000/demo
  PRESENCE_SECRET=... PRESENCE_REDIS_URL=redis://localhost:6379/0 presence serve --host 0.0.0.0
  PRESENCE_SECRET=... PRESENCE_REDIS_URL=... presence serve --host 0.0.0.0 --workers auto
                                                    # one process per core; SIGHUP restarts them in turn
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="presence", description=__doc__,
        epilog="Run 'presence COMMAND --help' for a command's options. Docs: README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"presence {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the server (dev mode with no PRESENCE_SECRET: try it at /demo)",
        description=SERVE_HELP, epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; PRESENCE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000; PORT or PRESENCE_PORT)")
    serve.add_argument("--redis-url", help="Redis URL (overrides PRESENCE_REDIS_URL)")
    serve.add_argument("--scope", choices=["user", "tab"], help="lease scope (PRESENCE_LEASE_SCOPE)")
    serve.add_argument("--dev", action="store_true",
                       help="dev mode is meant, even with production settings such as a Redis URL (PRESENCE_DEV)")
    serve.add_argument("--allow-dev-on-public", action="store_true",
                       help="allow dev mode (no secret) on a non-loopback address")
    serve.add_argument("--log-json", action="store_true", help="JSON log lines (PRESENCE_LOG_JSON)")
    serve.add_argument("--log-level", help="debug, info, warning, error (PRESENCE_LOG_LEVEL)")
    serve.add_argument("--workers", type=_workers, metavar="N",
                       help="N server processes on one port under a supervisor ('auto': one per CPU core; "
                            "needs a Redis); without it, one process serves by itself")
    # How a supervisor starts its workers (not for people): the worker's number, the sockets it
    # serves on and its end of the supervisor's socket pair.
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--fds", type=lambda text: [int(fd) for fd in text.split(",")], help=argparse.SUPPRESS)
    serve.add_argument("--channel", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)

    token = sub.add_parser(
        "token", help="print a signed token for a user (PRESENCE_SECRET, or the dev key)",
        description="Print a token signed with PRESENCE_SECRET (or, in dev mode, the public dev key), "
                    "for trying the server out; apps mint their own in their backend (docs/guide.md).",
    )
    token.add_argument("--user", required=True, help="user id (the 'sub' claim)")
    token.add_argument("--name", help="display name (default: the user id)")
    token.add_argument("--ws", action="append",
                       help="allowed workspace id, or prefix ending in * such as team-1/* (repeatable)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--takeover", choices=["yes", "no"], help="may force-take leases (default yes)")
    token.add_argument("--read-only", action="store_true",
                       help="a read-only token (claim lease: false): sees presence, may hold no lease")
    token.set_defaults(func=_token)

    from .bench import add_parser as add_bench_parser  # argparse only; the bench loads on use

    add_bench_parser(sub)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
