"""Settings: one typed object built from ``PRESENCE_*`` environment variables and CLI flags.

Every value is validated once, at start-up, and a bad value stops the server with a message
that names the variable and says what to fix. Nothing else in the package reads the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from typing import Literal

from .pem import BadKey, load_public_key

DEV_SECRET = "presence-dev-mode-insecure-public-key"
"""The fixed signing key of dev mode. Public on purpose: dev tokens must never be trusted."""

Scope = Literal["user", "tab"]

MIN_KEY_LENGTH = 16
"""The shortest ``PRESENCE_ADMIN_TOKEN`` or ``PRESENCE_API_KEY`` the server starts with."""

MIN_SEND_BUFFER = 64 * 1024
"""The smallest ``PRESENCE_SEND_BUFFER_BYTES``: what the server's socket buffers before it waits anyway."""

MAX_TOKEN_LEEWAY_MS = 60_000


class SettingsError(ValueError):
    """A setting is missing or invalid; the message says which one and how to fix it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None
    redis_cluster: bool = False
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 1000
    key_idle_days: float = 7.0
    secret: str | None = None
    jwt_public_key: str | None = None  # PEM text or a file's path: an identity provider's key
    jwks_url: str | None = None  # an identity provider's JSON Web Key Set
    jwks_refresh_ms: int = 10000  # an unknown key id re-reads the key set at most this often
    admin_token: str | None = None
    api_key: str | None = None
    token_issuer: str | None = None
    token_audience: str | None = None
    allowed_origins: tuple[str, ...] = ()
    heartbeat_ms: int = 5000
    dead_after_ms: int = 12000
    lease_ttl_ms: int = 15000
    grace_ms: int = 5000
    hello_timeout_ms: int = 5000
    token_leeway_ms: int = 5000
    lease_scope: Scope = "user"
    key_prefix: str = "presence"
    max_message_bytes: int = 16 * 1024
    rate_limit: float = 20.0
    rate_burst: int = 40
    max_tabs_per_user: int = 100
    user_rate_limit: float = 50.0
    user_rate_burst: int = 100
    max_connections: int = 20_000
    send_queue_size: int = 256
    send_buffer_bytes: int = 1024 * 1024
    handoff_timeout_ms: int = 30000
    handoff_takeover: bool = True
    takeover_cooldown_ms: int = 0
    idle_release_ms: int = 0
    update_window_ms: int = 50
    audit_max_len: int = 10_000
    host: str = "127.0.0.1"
    port: int = 8000
    allow_dev_on_public: bool = False
    log_json: bool = False
    log_level: str = "info"

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
        return int(self.key_idle_days * 86_400_000)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``PRESENCE_REDIS_SENTINELS`` as (host, port) pairs (validated: see :meth:`validate`)."""
        return [_host_port(s) for s in self.redis_sentinels]

    @property
    def safety_margin_ms(self) -> int:
        """How long before the Redis TTL the local lease deadline falls.

        It absorbs clock drift between this process and Redis, and the delay between Redis
        executing a renewal and this process hearing about it.
        """
        return max(100, min(2000, self.lease_ttl_ms // 10))

    @property
    def presence_ttl_ms(self) -> int:
        """Redis-side lifetime of a tab's presence entry between two heartbeats."""
        return self.lease_ttl_ms

    def validate(self) -> Settings:
        """Check cross-field rules; return self so it chains."""
        problems: list[str] = []
        if self.secret is not None and len(self.secret) < 32:
            problems.append(
                "PRESENCE_SECRET must be at least 32 characters (HS256 keys shorter than the hash are weak); "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        for name, key in (("PRESENCE_ADMIN_TOKEN", self.admin_token), ("PRESENCE_API_KEY", self.api_key)):
            if key is not None and len(key) < MIN_KEY_LENGTH:
                problems.append(
                    f"{name} must be at least {MIN_KEY_LENGTH} characters (a short key can be guessed); "
                    "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        sources = [name for name, value in (
            ("PRESENCE_SECRET", self.secret), ("PRESENCE_JWT_PUBLIC_KEY", self.jwt_public_key),
            ("PRESENCE_JWKS_URL", self.jwks_url),
        ) if value is not None]
        if len(sources) > 1:
            problems.append(
                f"set only one way to verify tokens, not {' and '.join(sources)}: PRESENCE_SECRET (HS256 tokens your "
                "backend signs), PRESENCE_JWT_PUBLIC_KEY or PRESENCE_JWKS_URL (tokens of an identity provider)"
            )
        if self.jwks_url is not None and not _secure_url(self.jwks_url):
            problems.append(
                f"PRESENCE_JWKS_URL must be an https:// URL (http:// only on a loopback address), got {self.jwks_url!r}"
            )
        if self.jwks_refresh_ms < 0:
            problems.append("PRESENCE_JWKS_REFRESH_MS must be 0 or positive (milliseconds)")
        if self.jwt_public_key is not None:
            try:
                load_public_key(self.jwt_public_key)
            except BadKey as exc:
                problems.append(str(exc))
        if self.heartbeat_ms < 50:
            problems.append("PRESENCE_HEARTBEAT_MS must be at least 50 (milliseconds)")
        if self.lease_ttl_ms <= 2 * self.heartbeat_ms:
            problems.append(
                f"PRESENCE_LEASE_TTL_MS ({self.lease_ttl_ms}) must exceed twice PRESENCE_HEARTBEAT_MS "
                f"({self.heartbeat_ms}), so a lease survives one missed renewal; "
                f"raise it to at least {2 * self.heartbeat_ms + 1}"
            )
        if self.dead_after_ms <= self.heartbeat_ms:
            problems.append(
                f"PRESENCE_DEAD_AFTER_MS ({self.dead_after_ms}) must exceed PRESENCE_HEARTBEAT_MS "
                f"({self.heartbeat_ms}), or every tab is declared dead before it can answer a ping"
            )
        if self.grace_ms < 0 or self.grace_ms > self.lease_ttl_ms:
            problems.append(
                f"PRESENCE_GRACE_MS ({self.grace_ms}) must be between 0 and PRESENCE_LEASE_TTL_MS "
                f"({self.lease_ttl_ms})"
            )
        if self.hello_timeout_ms <= 0:
            problems.append("PRESENCE_HELLO_TIMEOUT_MS must be positive")
        if self.lease_scope not in ("user", "tab"):
            problems.append(f"PRESENCE_LEASE_SCOPE must be 'user' or 'tab', not {self.lease_scope!r}")
        if not self.key_prefix or any(c in self.key_prefix for c in "{} \t\r\n"):
            problems.append("PRESENCE_KEY_PREFIX must be non-empty, without spaces or braces")
        if self.max_message_bytes < 1024:
            problems.append("PRESENCE_MAX_MESSAGE_BYTES must be at least 1024")
        if self.rate_limit <= 0 or self.rate_burst < 1:
            problems.append("PRESENCE_RATE_LIMIT must be positive (messages per second, burst twice that)")
        if self.user_rate_limit <= 0 or self.user_rate_burst < 1:
            problems.append(
                "PRESENCE_USER_RATE_LIMIT must be positive (messages per second for all of one user's tabs on "
                "a process together, burst twice that)"
            )
        if self.send_queue_size < 1:
            problems.append("PRESENCE_SEND_QUEUE_SIZE must be at least 1 (messages waiting for a slow client)")
        if self.send_buffer_bytes < MIN_SEND_BUFFER:
            problems.append(
                f"PRESENCE_SEND_BUFFER_BYTES ({self.send_buffer_bytes}) must be at least {MIN_SEND_BUFFER} (64 KiB): "
                "the bytes waiting for one client that does not read, beyond which it is closed; the default is "
                "1048576 (1 MiB)"
            )
        if not 0 <= self.token_leeway_ms <= MAX_TOKEN_LEEWAY_MS:
            problems.append(
                f"PRESENCE_TOKEN_LEEWAY_MS ({self.token_leeway_ms}) must be between 0 and {MAX_TOKEN_LEEWAY_MS} "
                "(milliseconds a connection outlives its token's exp); the default is 5000"
            )
        if self.max_connections < 1:
            problems.append("PRESENCE_MAX_CONNECTIONS must be at least 1 (open WebSockets per process)")
        if self.audit_max_len < 100:
            problems.append("PRESENCE_AUDIT_MAX_LEN must be at least 100 (audit stream entries kept)")
        if self.handoff_timeout_ms < 1000:
            problems.append("PRESENCE_HANDOFF_TIMEOUT_MS must be at least 1000 (the holder needs time to answer)")
        if self.takeover_cooldown_ms < 0:
            problems.append("PRESENCE_TAKEOVER_COOLDOWN_MS must be 0 (off) or positive")
        if not 0 <= self.update_window_ms <= 50:
            problems.append(
                f"PRESENCE_UPDATE_WINDOW_MS ({self.update_window_ms}) must be between 0 (merge the changes of one "
                "event-loop turn) and 50 (milliseconds): a longer window delays what every tab sees"
            )
        if self.idle_release_ms < 0:
            problems.append("PRESENCE_IDLE_RELEASE_MS must be 0 (off) or positive")
        if self.max_tabs_per_user < 1:
            problems.append("PRESENCE_MAX_TABS_PER_USER must be at least 1")
        if self.redis_cluster and self.redis_url is None:
            problems.append("PRESENCE_REDIS_CLUSTER=true needs PRESENCE_REDIS_URL (a node of the cluster)")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(
                f"PRESENCE_REDIS_URL must start with redis://, rediss:// or unix://, got {self.redis_url!r}"
            )
        problems += self._redis_ha_problems()
        if not 0 < self.port < 65536:
            problems.append(f"port must be between 1 and 65535, got {self.port}")
        if self.dev_mode and not self.allow_dev_on_public and not _is_loopback(self.host):
            problems.append(
                f"refusing to run in dev mode (no PRESENCE_SECRET, PRESENCE_JWT_PUBLIC_KEY or PRESENCE_JWKS_URL) on "
                f"non-loopback address {self.host!r}: "
                "set PRESENCE_SECRET to a long random string, bind to 127.0.0.1, or pass "
                "--allow-dev-on-public (PRESENCE_ALLOW_DEV_ON_PUBLIC=true) if you really mean it"
            )
        if problems:
            raise SettingsError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return self

    def _redis_ha_problems(self) -> list[str]:
        """Sentinel, WAIT and key lifetime settings."""
        problems: list[str] = []
        for entry in self.redis_sentinels:
            try:
                _host_port(entry)
            except ValueError:
                problems.append(
                    f"PRESENCE_REDIS_SENTINELS must be a comma list of host:port (e.g. "
                    f"'10.0.0.5:26379,10.0.0.6:26379'), got {entry!r}"
                )
        if self.redis_sentinels:
            if self.redis_cluster:
                problems.append("PRESENCE_REDIS_SENTINELS and PRESENCE_REDIS_CLUSTER=true exclude each other: "
                                "a Redis Cluster fails over by itself, without Sentinels")
            if self.redis_url is not None and self.redis_url.startswith("unix://"):
                problems.append("PRESENCE_REDIS_SENTINELS needs PRESENCE_REDIS_URL to be redis:// or rediss:// "
                                "(it gives the password, database and TLS options; Sentinels name the host)")
            if not self.redis_sentinel_master or any(c.isspace() for c in self.redis_sentinel_master):
                problems.append("PRESENCE_REDIS_SENTINEL_MASTER must be the name the Sentinels monitor, "
                                "without spaces (default mymaster)")
        if self.redis_wait_replicas < 0:
            problems.append("PRESENCE_REDIS_WAIT_REPLICAS must be 0 (off) or the number of replicas to wait for")
        if self.redis_wait_replicas > 0 and self.embedded:
            problems.append("PRESENCE_REDIS_WAIT_REPLICAS needs a real Redis with replicas "
                            "(set PRESENCE_REDIS_URL or PRESENCE_REDIS_SENTINELS)")
        limit = min(self.lease_ttl_ms // 2, self.redis_timeout_ms - 100)
        if self.redis_wait_replicas > 0 and not 0 < self.redis_wait_timeout_ms <= limit:
            problems.append(
                f"PRESENCE_REDIS_WAIT_TIMEOUT_MS ({self.redis_wait_timeout_ms}) must be between 1 and {limit}: "
                "under half of PRESENCE_LEASE_TTL_MS, and 100 ms under the Redis command timeout (one "
                "heartbeat, between 500 and 5000 ms), which a grant's WAIT must not run into"
            )
        if not self.key_idle_ms > 2 * self.lease_ttl_ms:
            problems.append(
                f"PRESENCE_KEY_IDLE_DAYS ({self.key_idle_days}) must be longer than twice PRESENCE_LEASE_TTL_MS "
                f"({self.lease_ttl_ms} ms), so no key of a workspace in use expires; the default is 7"
            )
        return problems

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from the environment, then apply explicit overrides (CLI flags)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        parse_errors: list[str] = []
        for field in dataclasses.fields(cls):
            raw = env.get(_ENV_NAMES.get(field.name, "PRESENCE_" + field.name.upper()))
            if raw is None or raw == "":
                continue
            try:
                values[field.name] = _parse(field.name, raw)
            except ValueError as exc:
                parse_errors.append(str(exc))
        if "PORT" in env and "port" not in values and env["PORT"]:
            try:
                values["port"] = _parse("port", env["PORT"])
            except ValueError as exc:
                parse_errors.append(str(exc))
        if parse_errors:
            raise SettingsError("invalid configuration:\n  - " + "\n  - ".join(parse_errors))
        values.update({k: v for k, v in overrides.items() if v is not None})
        for rate, burst in (("rate_limit", "rate_burst"), ("user_rate_limit", "user_rate_burst")):
            if rate in values and burst not in values:
                values[burst] = max(1, int(2 * float(values[rate])))  # type: ignore[arg-type]
        return cls(**values).validate()  # type: ignore[arg-type]


_ENV_NAMES = {"port": "PRESENCE_PORT", "host": "PRESENCE_HOST"}

_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(Settings)}


def is_set(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether the operator set the variable of setting ``name``, rather than left it to its
    default (an empty value counts as unset, as in :meth:`Settings.from_env`)."""
    env = os.environ if env is None else env
    if name == "port" and env.get("PORT"):
        return True
    return bool(env.get(_ENV_NAMES.get(name, "PRESENCE_" + name.upper())))


def _parse(name: str, raw: str) -> object:
    """Parse one variable by the type of its field."""
    env_name = _ENV_NAMES.get(name, "PRESENCE_" + name.upper())
    kind = _FIELD_TYPES[name]
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{env_name} must be a whole number, got {raw!r}") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{env_name} must be a number, got {raw!r}") from None
    if kind == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{env_name} must be true or false, got {raw!r}")
    if kind.startswith("tuple"):
        return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    return raw


def _secure_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname is not None and _is_loopback(parts.hostname)


def _host_port(entry: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as a pair; ValueError when it is neither."""
    host, sep, port = entry.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(entry)
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
