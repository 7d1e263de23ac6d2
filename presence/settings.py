"""Settings: one typed object built from ``PRESENCE_*`` environment variables and CLI flags.

Each field says once what it is: its type and bounds (``msgspec.Meta`` constraints, which
``msgspec.convert`` checks; every number has both bounds), its one-line meaning
(``description``) and, in ``extra``: ``default`` (how the default reads in the docs), ``rule``
(what a valid value is, in words, where the constraints do not say it), ``hint`` (how to fix a
refused value), ``secret`` (a refused value is not echoed), ``url`` (echoed without its
password), ``blank: "refused"`` (set but empty is an error, not unset) and ``env`` (the
variables, when not just ``PRESENCE_`` and the field's name in capitals). The settings table of
the docs is generated from these fields (:mod:`presence.settings_table`).

Every value is validated once, at start-up, and a bad value stops the server with one line per
problem, naming the variable and saying what to fix (:mod:`presence.settings_rules` holds the
rules that relate several fields). Nothing else in the package reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Annotated, Literal

from msgspec import Meta

from . import settings_rules
from .settings_fields import SettingsError, convert_all, env_value, field_names

__all__ = ["DEV_SECRET", "MIN_KEY_LENGTH", "Scope", "Settings", "SettingsError", "is_set"]

DEV_SECRET = "presence-dev-mode-insecure-public-key"
"""The fixed signing key of dev mode. Public on purpose: dev tokens must never be trusted."""

Scope = Literal["user", "tab"]

MIN_KEY_LENGTH = 16
"""The shortest ``PRESENCE_ADMIN_TOKEN`` or ``PRESENCE_API_KEY`` the server starts with."""

_GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_DAY_MS = 86_400_000

# Keys travel in an HTTP header, where spaces around them are dropped and only ASCII is safe.
OperatorKey = Annotated[str, Meta(min_length=MIN_KEY_LENGTH, pattern=r"^[!-~]+$", extra={
    "rule": f"at least {MIN_KEY_LENGTH} characters of printable ASCII without spaces",
    "hint": f"a short or blank key can be guessed; {_GENERATE}", "secret": True,
})]
HostPort = Annotated[str, Meta(pattern=r"^\S+:[0-9]+$", extra={"rule": "host:port"})]


def _ms(low: int, high: int, meaning: str, **extra: object) -> Meta:
    """Milliseconds between ``low`` and ``high``."""
    return Meta(ge=low, le=high, description=meaning, extra=extra)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    redis_url: Annotated[
        Annotated[str, Meta(pattern=r"^(?i:redis|rediss|unix)://", extra={
            "rule": "a redis://, rediss:// or unix:// URL", "url": True,
        })] | None,
        Meta(description="the Redis server; `rediss://` for TLS (`--redis-url`)",
             extra={"default": "unset: embedded fakeredis"}),
    ] = None
    redis_cluster: Annotated[bool, Meta(description="`true` for Redis Cluster (the URL names any node)")] = False
    redis_sentinels: Annotated[tuple[HostPort, ...], Meta(
        description="comma list of Redis Sentinels, `host:port,host:port`; the password, database and TLS "
                    "options come from `PRESENCE_REDIS_URL` when set"
    )] = ()
    redis_sentinel_master: Annotated[str, Meta(pattern=r"^\S+$", description="the name the Sentinels monitor",
                                               extra={"rule": "a name without spaces"})] = "mymaster"
    redis_wait_replicas: Annotated[int, Meta(ge=0, le=100, extra={"default": "0 (off)"}, description=(
        "n > 0: a grant, takeover or handoff is confirmed to the tab only once n replicas have it (`WAIT`; "
        "on Cluster, the replicas of the workspace's primary)"
    ))] = 0
    redis_wait_timeout_ms: Annotated[int, _ms(
        0, 60_000, "how long a grant waits for those replicas; then it is withdrawn and the tab answered "
        "`unavailable` (at most half the lease TTL, and 100 ms under the Redis command timeout of one heartbeat, "
        "0.5-5 s)"
    )] = 1000
    key_idle_days: Annotated[float, Meta(gt=0, le=3650, description=(
        "a workspace's fence and sequence counters, holder record and wait queue expire this long after their "
        "last use (a fraction is fine: `0.5`); must exceed twice the lease TTL"
    ))] = 7.0
    secret: Annotated[
        Annotated[str, Meta(min_length=32, pattern=r"\S", extra={
            "rule": "at least 32 characters, not blank",
            "hint": f"HS256 keys shorter than the hash are weak; {_GENERATE}",
            "secret": True, "blank": "refused",
        })] | None,
        Meta(description="HS256 key for tokens your backend signs", extra={"default": "unset: dev mode"}),
    ] = None
    jwt_public_key: Annotated[str | None, Meta(extra={
        "secret": True, "blank": "refused", "rule": "a PEM public key or certificate, or a file's path",
    }, description=(
        "instead: an identity provider's public key (PEM text, a certificate, or a file's path) for RS256, "
        "ES256/384/512 or EdDSA tokens, by the key's type"
    ))] = None
    jwks_url: Annotated[str | None, Meta(extra={"blank": "refused", "rule": "an https:// URL"}, description=(
        "instead: an identity provider's JSON Web Key Set (`https://`; `http://` on loopback only), fetched at "
        "start-up, then in the background"
    ))] = None
    jwks_cache_s: Annotated[float, Meta(ge=1, le=86_400, description=(
        "the key set is fetched again, in the background, this often (seconds)"
    ))] = 300.0
    jwks_refresh_ms: Annotated[int, _ms(
        0, _DAY_MS, "a token naming a key id the set lacks (a key rotation) has the set re-read in the background, "
        "at most this often"
    )] = 10000
    admin_token: Annotated[OperatorKey | None, Meta(
        description="bearer token for `/admin/api` and `/dashboard` (unset: the admin API answers 404)"
    )] = None
    api_key: Annotated[OperatorKey | None, Meta(description="key for `/api/v1/...` (app backends)")] = None
    token_issuer: Annotated[str | None, Meta(
        description="when set, every token must carry this `iss` (4401 otherwise)"
    )] = None
    token_audience: Annotated[str | None, Meta(description=(
        "when set, every token's `aud` must name it (4401 otherwise); when unset, a token that names any "
        "audience is refused"
    ))] = None
    allowed_origins: Annotated[tuple[str, ...], Meta(extra={"rule": "a comma list of origins"}, description=(
        "comma list of browser origins; unset: same origin only (any in dev mode); requests without `Origin` "
        "are non-browser clients and allowed"
    ))] = ()
    heartbeat_ms: Annotated[int, _ms(
        50, 300_000, "ping every tab this often; renewals batched on the same tick"
    )] = 5000
    dead_after_ms: Annotated[int, _ms(
        1, 3_600_000, "no pong for this long: the tab is closed (4408); must exceed the heartbeat"
    )] = 12000
    lease_ttl_ms: Annotated[int, _ms(1, 3_600_000, "Redis TTL of a lease; must exceed twice the heartbeat")] = 15000
    grace_ms: Annotated[int, _ms(
        0, 3_600_000, "lease kept after the holder's last tab closed cleanly (at most the lease TTL)"
    )] = 5000
    restart_grace_ms: Annotated[int, _ms(
        0, 86_400_000, "a process stopping on SIGTERM keeps the leases of the tabs it closes this long (never less "
        "than the lease TTL, never more than half the key idle time), so their reconnect storm finds them",
        default="30000",
    )] = 30000
    hello_timeout_ms: Annotated[int, _ms(
        1, 600_000, "no valid `hello` in time: closed (4408); also the time a new connection has to send its "
        "whole request headers (any HTTP request; then the connection is dropped)"
    )] = 5000
    token_leeway_ms: Annotated[int, _ms(
        0, 60_000, "a token counts this long past its `exp`; then its connection is closed (4401) unless it "
        "sent `refresh` with a new token"
    )] = 5000
    lease_scope: Annotated[Scope, Meta(description=(
        "`user`: all of a user's tabs share the lease; `tab`: one tab holds it (`--scope`)"
    ))] = "user"
    key_prefix: Annotated[str, Meta(
        min_length=1, max_length=100, pattern=r"^[^{}\s]+$", description="prefix of every Redis key and channel",
        extra={"rule": "1-100 characters without spaces or braces"},
    )] = "presence"
    max_message_bytes: Annotated[int, Meta(ge=1024, le=16 * 1024 * 1024, description="larger frames: close 1009")] = (
        16 * 1024
    )
    rate_limit: Annotated[float, Meta(gt=0, le=1_000_000, description=(
        "messages per second per connection (burst twice that)"
    ))] = 20.0
    rate_burst: Annotated[int, Meta(ge=1, le=10_000_000, extra={"default": "twice the rate limit"}, description=(
        "messages a connection may send at once before the rate limit applies"
    ))] = 40
    max_tabs_per_user: Annotated[int, Meta(ge=1, le=1_000_000, description=(
        "per user and server process; more: close 4429"
    ))] = 100
    user_rate_limit: Annotated[float, Meta(gt=0, le=1_000_000, description=(
        "requests per second of all of one user's tabs on one server process together (burst twice that; "
        "pongs do not count); beyond it: `rate_limited`, sustained: 4429"
    ))] = 50.0
    user_rate_burst: Annotated[int, Meta(
        ge=1, le=10_000_000, extra={"default": "twice the user rate limit"},
        description="requests one user's tabs on a process may send at once before the user rate limit applies",
    )] = 100
    max_connections: Annotated[int, Meta(ge=1, le=1_000_000, description=(
        "open WebSockets per server process (tabs, handshakes, dashboards); more: accepted and closed 1013 at once"
    ))] = 20_000
    send_queue_size: Annotated[int, Meta(ge=1, le=1_000_000, description=(
        "messages waiting to be sent to one connection; a connection that falls this far behind is closed 1013"
    ))] = 256
    send_buffer_bytes: Annotated[int, Meta(ge=64 * 1024, le=1024 * 1024 * 1024, description=(
        "bytes waiting for one connection that does not read (the server's frames, and its answers to "
        "WebSocket pings below the application); more: closed 1013, or dropped when not even the close can "
        "get through"
    ))] = 1024 * 1024
    max_watched: Annotated[int, Meta(ge=1, le=10_000_000, description=(
        "(watcher, workspace) pairs one server process follows at once, all list pages together; more: the "
        "`watch` is answered `too_many_watched`"
    ))] = 100_000
    meta_interval_ms: Annotated[int, _ms(
        0, 1000, "a tab's presence (`status`: active and meta) is written at most this often; the latest wins, "
        "written in a stream just before an `update` goes out; the interval counts from when a write was due, "
        "so a write the event loop delayed brings the next one closer by as much (0: every one at once)"
    )] = 50
    max_locks: Annotated[int, Meta(ge=1, le=10_000, description=(
        "named locks held at once in one workspace; more: `too_many_locks`"
    ))] = 100
    handoff_timeout_ms: Annotated[int, _ms(
        1000, 3_600_000, "how long a holder has to answer a polite `request`"
    )] = 30000
    handoff_takeover: Annotated[bool, Meta(description=(
        "an unanswered request becomes a takeover (if the requester's token allows takeovers)"
    ))] = True
    takeover_cooldown_ms: Annotated[int, _ms(
        0, _DAY_MS, "after a takeover, further takeovers of that workspace are refused this long "
        "(`takeover_cooldown`); no other path forces the lease away meanwhile: an unanswered `request` ends "
        '`declined{reason: "cooldown"}` instead of taking over', default="0 (off)",
    )] = 0
    idle_release_ms: Annotated[int, _ms(
        0, _DAY_MS, "a holder whose tabs all report `status{active: false}` this long loses the lease (reason "
        "`idle`)", default="0 (off)",
    )] = 0
    update_window_ms: Annotated[int, _ms(
        0, 50, "a change after a quiet moment reaches every tab at once; those within this window of an "
        "`update` are merged into the next one, sent at a multiple of the window in wall-clock time, the "
        "same instants on every process (0: those of one event-loop turn)"
    )] = 50
    audit_max_len: Annotated[int, Meta(ge=100, le=10_000_000, description=(
        "entries kept in each audit stream in Redis (`XADD MAXLEN ~`)"
    ))] = 10_000
    host: Annotated[str, Meta(min_length=1, description="bind address (`--host`)")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535, description="bind port (`--port`)", extra={
        "env": ("PRESENCE_PORT", "PORT"),
    })] = 8000
    worker_ports: Annotated[int, Meta(ge=0, le=65535, extra={"default": "0: the port + 1"}, description=(
        "`serve --workers`: worker k also serves on this port + k - 1 (its own `/metrics` to scrape)"
    ))] = 0
    dev: Annotated[bool, Meta(description=(
        "dev mode is meant: allows dev mode (no token key set) alongside a Redis URL, Sentinels, keys or origins "
        "(`--dev`)"
    ))] = False
    allow_dev_on_public: Annotated[bool, Meta(description=(
        "allows dev mode on a non-loopback address (`--allow-dev-on-public`)"
    ))] = False
    log_json: Annotated[bool, Meta(description="JSON log lines (`--log-json`)")] = False
    log_level: Annotated[str, Meta(pattern=r"^(?i:debug|info|warning|error|critical)$", description=(
        "the least severe log lines shown (`--log-level`)"
    ), extra={"rule": "debug, info, warning, error or critical"})] = "info"

    @property
    def dev_mode(self) -> bool:
        """No way to verify real tokens is configured: tokens are signed with the public dev key."""
        return self.secret is None and self.jwt_public_key is None and self.jwks_url is None

    @property
    def signing_key(self) -> str:
        """The HS256 key this server can mint tokens with (``presence token``, dev mode)."""
        return self.secret if self.secret is not None else DEV_SECRET

    @property
    def can_mint(self) -> bool:
        """False when tokens come from an identity provider: only it holds the private key."""
        return self.jwt_public_key is None and self.jwks_url is None

    @property
    def embedded(self) -> bool:
        """True when running on the in-process fakeredis (no ``PRESENCE_REDIS_URL``, no Sentinels)."""
        return self.redis_url is None and not self.redis_sentinels

    @property
    def redis_timeout_ms(self) -> int:
        """Socket timeout of Redis commands: one heartbeat, between 0.5 and 5 seconds."""
        return max(500, min(5000, self.heartbeat_ms))

    @property
    def key_idle_ms(self) -> int:
        """How long a workspace's counters, holder record and queue outlive their last use."""
        return int(self.key_idle_days * _DAY_MS)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``PRESENCE_REDIS_SENTINELS`` as (host, port) pairs (validated: see :meth:`validate`)."""
        return [settings_rules.host_port(s) for s in self.redis_sentinels]

    @property
    def safety_margin_ms(self) -> int:
        """How long before the Redis TTL the local lease deadline falls.

        It absorbs clock drift between this process and Redis, and the delay between Redis
        executing a renewal and this process hearing about it.
        """
        return max(100, min(2000, self.lease_ttl_ms // 10))

    @property
    def restart_keep_ms(self) -> int:
        """How long a stopping process keeps its tabs' leases: the restart grace, never less than
        the lease TTL nor more than half the key idle time (so the holder record outlives the
        lease); 0: restart grace off, leases live out their TTL."""
        if not self.restart_grace_ms:
            return 0
        return min(max(self.restart_grace_ms, self.lease_ttl_ms), self.key_idle_ms // 2)

    @property
    def presence_ttl_ms(self) -> int:
        """Redis-side lifetime of a tab's presence entry between two heartbeats."""
        return self.lease_ttl_ms

    def validate(self) -> Settings:
        """Check every field against its type and bounds, then the rules between fields; return
        self so it chains. Raises :class:`SettingsError` with one line per problem."""
        _, problems = convert_all(Settings, {name: getattr(self, name) for name in field_names(Settings)}, strict=True)
        if not problems:
            problems = settings_rules.problems(self)
        if problems:
            raise SettingsError(problems)
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from the environment, then apply explicit overrides (CLI flags: None
        means not given)."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for name in field_names(cls):
            value = env_value(cls, name, env)
            if value is not None:
                raw[name] = value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        values, problems = convert_all(cls, raw, strict=False)
        if problems:
            raise SettingsError(problems)
        for rate, burst in (("rate_limit", "rate_burst"), ("user_rate_limit", "user_rate_burst")):
            if rate in values and burst not in values:
                values[burst] = max(1, int(2 * float(values[rate])))  # type: ignore[arg-type]
        return cls(**values).validate()  # type: ignore[arg-type]


def is_set(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether the operator set the variable of setting ``name``, rather than left it to its
    default (an empty value counts as unset, as in :meth:`Settings.from_env`)."""
    return env_value(Settings, name, os.environ if env is None else env) is not None
