"""Settings rules: the checks a field's type and bounds cannot say (rules between fields, URLs
as redis-py reads them, keys as the verifier loads them), each problem one line that names the
variables and says what to fix."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Any, Protocol

from .pem import BadKey, load_public_key
from .settings_fields import without_password


class Settings(Protocol):
    """What the rules read of :class:`presence.settings.Settings` (declared here, so the rules
    depend on nothing above them: the settings module calls them)."""

    @property
    def secret(self) -> str | None: ...
    @property
    def jwt_public_key(self) -> str | None: ...
    @property
    def jwks_url(self) -> str | None: ...
    @property
    def admin_token(self) -> str | None: ...
    @property
    def api_key(self) -> str | None: ...
    @property
    def allowed_origins(self) -> tuple[str, ...]: ...
    @property
    def heartbeat_ms(self) -> int: ...
    @property
    def dead_after_ms(self) -> int: ...
    @property
    def lease_ttl_ms(self) -> int: ...
    @property
    def grace_ms(self) -> int: ...
    @property
    def key_idle_days(self) -> float: ...
    @property
    def key_idle_ms(self) -> int: ...
    @property
    def redis_url(self) -> str | None: ...
    @property
    def redis_cluster(self) -> bool: ...
    @property
    def redis_sentinels(self) -> tuple[str, ...]: ...
    @property
    def redis_wait_replicas(self) -> int: ...
    @property
    def redis_wait_timeout_ms(self) -> int: ...
    @property
    def redis_timeout_ms(self) -> int: ...
    @property
    def embedded(self) -> bool: ...
    @property
    def dev(self) -> bool: ...
    @property
    def dev_mode(self) -> bool: ...
    @property
    def allow_dev_on_public(self) -> bool: ...
    @property
    def host(self) -> str: ...

_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_TOKEN_KEYS = ("PRESENCE_SECRET", "PRESENCE_JWT_PUBLIC_KEY", "PRESENCE_JWKS_URL")


def problems(s: Settings) -> list[str]:
    """Every rule ``s`` breaks, one line each; empty when ``s`` is consistent."""
    return [*_token_problems(s), *_timing_problems(s), *_redis_problems(s), *_mode_problems(s)]


def _token_problems(s: Settings) -> list[str]:
    out: list[str] = []
    sources = [name for name, value in zip(_TOKEN_KEYS, (s.secret, s.jwt_public_key, s.jwks_url), strict=True)
               if value is not None]
    if len(sources) > 1:
        out.append(
            f"set only one way to verify tokens, not {' and '.join(sources)}: PRESENCE_SECRET (HS256 tokens your "
            "backend signs), PRESENCE_JWT_PUBLIC_KEY or PRESENCE_JWKS_URL (tokens of an identity provider)"
        )
    if s.jwks_url is not None:
        out += _jwks_url_problems(s.jwks_url)
    if s.jwt_public_key is not None:
        try:
            load_public_key(s.jwt_public_key)
        except BadKey as exc:
            out.append(str(exc))
    return out


def _jwks_url_problems(url: str) -> list[str]:
    try:
        _ = urllib.parse.urlsplit(url).port  # parsed on access
    except ValueError:
        return [f"PRESENCE_JWKS_URL must have a port from 1 to 65535 (or none), got {url!r}"]
    if not _secure_url(url):
        return [f"PRESENCE_JWKS_URL must be an https:// URL (http:// only on a loopback address), got {url!r}"]
    return []


def _timing_problems(s: Settings) -> list[str]:
    out: list[str] = []
    if s.lease_ttl_ms <= 2 * s.heartbeat_ms:
        out.append(
            f"PRESENCE_LEASE_TTL_MS ({s.lease_ttl_ms}) must exceed twice PRESENCE_HEARTBEAT_MS ({s.heartbeat_ms}), "
            f"so a lease survives one missed renewal; raise it to at least {2 * s.heartbeat_ms + 1}"
        )
    if s.dead_after_ms <= s.heartbeat_ms:
        out.append(
            f"PRESENCE_DEAD_AFTER_MS ({s.dead_after_ms}) must exceed PRESENCE_HEARTBEAT_MS ({s.heartbeat_ms}), "
            "or every tab is declared dead before it can answer a ping"
        )
    if s.grace_ms > s.lease_ttl_ms:
        out.append(f"PRESENCE_GRACE_MS ({s.grace_ms}) must be between 0 and PRESENCE_LEASE_TTL_MS ({s.lease_ttl_ms})")
    if s.key_idle_ms <= 2 * s.lease_ttl_ms:
        out.append(
            f"PRESENCE_KEY_IDLE_DAYS ({s.key_idle_days}) must be longer than twice PRESENCE_LEASE_TTL_MS "
            f"({s.lease_ttl_ms} ms), so no key of a workspace in use expires; the default is 7"
        )
    return out


def _redis_problems(s: Settings) -> list[str]:
    out: list[str] = []
    if s.redis_cluster and s.redis_url is None:
        out.append("PRESENCE_REDIS_CLUSTER=true needs PRESENCE_REDIS_URL (a node of the cluster)")
    if s.redis_url is not None and (problem := redis_url_problem(s.redis_url, s.redis_cluster)):
        out.append(problem)
    for entry in s.redis_sentinels:
        try:
            host_port(entry)
        except ValueError:
            out.append(
                f"PRESENCE_REDIS_SENTINELS must be a comma list of host:port (e.g. "
                f"'10.0.0.5:26379,10.0.0.6:26379'), got {entry!r}"
            )
    if s.redis_sentinels:
        if s.redis_cluster:
            out.append("PRESENCE_REDIS_SENTINELS and PRESENCE_REDIS_CLUSTER=true exclude each other: "
                       "a Redis Cluster fails over by itself, without Sentinels")
        if s.redis_url is not None and s.redis_url.lower().startswith("unix://"):
            out.append("PRESENCE_REDIS_SENTINELS needs PRESENCE_REDIS_URL to be redis:// or rediss:// "
                       "(it gives the password, database and TLS options; Sentinels name the host)")
    if s.redis_wait_replicas > 0 and s.embedded:
        out.append("PRESENCE_REDIS_WAIT_REPLICAS needs a real Redis with replicas "
                   "(set PRESENCE_REDIS_URL or PRESENCE_REDIS_SENTINELS)")
    limit = min(s.lease_ttl_ms // 2, s.redis_timeout_ms - 100)
    if s.redis_wait_replicas > 0 and not 0 < s.redis_wait_timeout_ms <= limit:
        out.append(
            f"PRESENCE_REDIS_WAIT_TIMEOUT_MS ({s.redis_wait_timeout_ms}) must be between 1 and {limit}: "
            "under half of PRESENCE_LEASE_TTL_MS, and 100 ms under the Redis command timeout (one "
            "heartbeat, between 500 and 5000 ms), which a grant's WAIT must not run into"
        )
    return out


def redis_url_problem(url: str, cluster: bool) -> str | None:
    """Why redis-py would refuse ``url`` (or quietly read it otherwise than written), found by
    building the client the gateway builds, which parses every option but does not connect."""
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import ConnectionPool
    from redis.exceptions import RedisClusterException, RedisError

    shown = without_password(url)
    parts = urllib.parse.urlsplit(url)
    database = parts.path.strip("/")
    if parts.scheme.lower() != "unix" and database and not re.fullmatch(r"[0-9]+", database):
        # redis-py reads a path it cannot parse as database 0
        return f"PRESENCE_REDIS_URL must name its database by number (redis://host:6379/0), got {shown!r}"
    try:
        # Through Any: redis-py types these calls in some versions and not in others.
        client: Any = RedisCluster if cluster else ConnectionPool
        built = client.from_url(url)
        if not cluster:
            built.make_connection()
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
        what = f"an option redis-py does not know ({unknown[1]!r})" if unknown else str(exc)
        return f"PRESENCE_REDIS_URL has {what}, got {shown!r}"
    except (ValueError, RedisError, RedisClusterException) as exc:
        reason = " ".join(str(exc).split()).rstrip(".")
        return f"PRESENCE_REDIS_URL is not a URL redis-py can use ({reason}), got {shown!r}"
    return None


def _mode_problems(s: Settings) -> list[str]:
    if not s.dev_mode:
        return []
    out: list[str] = []
    production = [name for name, value in (
        ("PRESENCE_REDIS_URL", s.redis_url), ("PRESENCE_REDIS_SENTINELS", s.redis_sentinels),
        ("PRESENCE_API_KEY", s.api_key), ("PRESENCE_ADMIN_TOKEN", s.admin_token),
        ("PRESENCE_ALLOWED_ORIGINS", s.allowed_origins),
    ) if value]
    if production and not s.dev:
        out.append(
            f"dev mode (no {', '.join(_TOKEN_KEYS[:2])} or {_TOKEN_KEYS[2]}: tokens signed with a public key anyone "
            f"can use) with production settings ({', '.join(production)}): set PRESENCE_SECRET to 32+ random "
            f"characters ({_GENERATE}) or your identity provider's key, or set PRESENCE_DEV=1 if dev mode is meant"
        )
    if not s.allow_dev_on_public and not _is_loopback(s.host):
        out.append(
            f"refusing to run in dev mode (no {', '.join(_TOKEN_KEYS[:2])} or {_TOKEN_KEYS[2]}) on non-loopback "
            f"address {s.host!r}: set PRESENCE_SECRET to a long random string, bind to 127.0.0.1, or pass "
            "--allow-dev-on-public (PRESENCE_ALLOW_DEV_ON_PUBLIC=true) if you really mean it"
        )
    return out


def host_port(entry: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as a pair; ValueError when it is neither."""
    host, sep, port = entry.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        raise ValueError(entry)
    return host, int(port)


def _secure_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname is not None and _is_loopback(parts.hostname)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

