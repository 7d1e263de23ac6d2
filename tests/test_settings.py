"""Settings parsed from the environment: every field converted by msgspec against its bounds,
every refusal one line that names the variable, the rules between fields, and dev mode never
switched on by accident. Pure: no Redis, no processes, no network."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator

import pytest
from msgspec import inspect as mi
from starlette.applications import Starlette

from presence.http.stack import RefusedAtStartup
from presence.settings import Settings, SettingsError, is_set
from presence.settings_fields import FieldSpec, specs

SECRET = "s" * 40
SPECS = specs(Settings)
NUMBERS = [s for s in SPECS.values() if isinstance(s.kind, mi.IntType | mi.FloatType)]
FLOATS = [s for s in NUMBERS if isinstance(s.kind, mi.FloatType)]


def refusal(env: dict[str, str], **overrides: object) -> list[str]:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env, **overrides)
    return err.value.problems


def test_every_field_says_what_it_means_and_every_number_is_bounded_on_both_sides() -> None:
    for spec in SPECS.values():
        assert spec.description, f"{spec.name} has no description (the docs table shows it)"
        assert spec.variable == "PRESENCE_" + spec.name.upper()
    for spec in NUMBERS:
        kind = spec.kind
        assert isinstance(kind, mi.IntType | mi.FloatType)
        assert kind.ge is not None or kind.gt is not None, f"{spec.variable} has no lower bound"
        assert kind.le is not None or kind.lt is not None, f"{spec.variable} has no upper bound"


def test_the_defaults_are_within_their_own_bounds() -> None:
    assert Settings().validate() == Settings.from_env({})


@pytest.mark.parametrize("spec", FLOATS, ids=lambda s: s.variable)
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN", "1e300"])
def test_no_float_setting_takes_nan_infinity_or_absurd_sizes(spec: FieldSpec, bad: str) -> None:
    assert refusal({spec.variable: bad}) == [f"{spec.variable} must be {spec.rule()}, got {bad!r}"]


@pytest.mark.parametrize("spec", NUMBERS, ids=lambda s: s.variable)
def test_every_number_refuses_a_value_past_its_upper_bound(spec: FieldSpec) -> None:
    assert isinstance(spec.kind, mi.IntType | mi.FloatType)
    high = spec.kind.le if spec.kind.le is not None else spec.kind.lt
    assert high is not None
    (line,) = refusal({spec.variable: str(int(high) * 10 + 1)})
    assert line.startswith(f"{spec.variable} must be ")


@pytest.mark.parametrize(("env", "line"), [
    ({"PRESENCE_KEY_IDLE_DAYS": "1e300"},
     "PRESENCE_KEY_IDLE_DAYS must be a number above 0 and at most 3,650, got '1e300'"),
    ({"PRESENCE_AUDIT_MAX_LEN": "1e20"},
     "PRESENCE_AUDIT_MAX_LEN must be a whole number from 100 to 10,000,000, got '1e20'"),
    ({"PRESENCE_LEASE_TTL_MS": "1e16"},
     "PRESENCE_LEASE_TTL_MS must be a whole number from 1 to 3,600,000, got '1e16'"),
    ({"PRESENCE_LEASE_TTL_MS": "10000000000000000"},
     "PRESENCE_LEASE_TTL_MS must be a whole number from 1 to 3,600,000, got '10000000000000000'"),
    ({"PRESENCE_RATE_LIMIT": "0"}, "PRESENCE_RATE_LIMIT must be a number above 0 and at most 1,000,000, got '0'"),
    ({"PRESENCE_PORT": "²"}, "PRESENCE_PORT must be a whole number from 1 to 65,535, got '²'"),
    ({"PRESENCE_LOG_LEVEL": "verbose"},
     "PRESENCE_LOG_LEVEL must be debug, info, warning, error or critical, got 'verbose'"),
    ({"PRESENCE_LEASE_SCOPE": "team"}, "PRESENCE_LEASE_SCOPE must be 'tab' or 'user', got 'team'"),
    ({"PRESENCE_HANDOFF_TAKEOVER": "maybe"}, "PRESENCE_HANDOFF_TAKEOVER must be true or false, got 'maybe'"),
    ({"PRESENCE_KEY_PREFIX": "a b"},
     "PRESENCE_KEY_PREFIX must be 1-100 characters without spaces or braces, got 'a b'"),
    ({"PORT": "99999"}, "PRESENCE_PORT must be a whole number from 1 to 65,535, got '99999'"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_takes(env: dict[str, str], line: str) -> None:
    assert refusal(env) == [line]


def test_every_bad_value_is_reported_at_once_and_each_on_its_own_line() -> None:
    problems = refusal({"PRESENCE_HEARTBEAT_MS": "soon", "PRESENCE_RATE_LIMIT": "nan", "PRESENCE_LOG_LEVEL": "x"})
    assert [p.split()[0] for p in problems] == ["PRESENCE_HEARTBEAT_MS", "PRESENCE_RATE_LIMIT", "PRESENCE_LOG_LEVEL"]
    assert all("\n" not in p for p in problems)
    assert str(SettingsError(["a\nb", "c"])) == "a b\nc"


def test_values_read_as_written_with_spaces_around_numbers_and_booleans_in_words() -> None:
    s = Settings.from_env({
        "PRESENCE_HEARTBEAT_MS": " 1000 ", "PRESENCE_LEASE_TTL_MS": "2500", "PRESENCE_DEAD_AFTER_MS": "3000",
        "PRESENCE_GRACE_MS": "100", "PRESENCE_KEY_IDLE_DAYS": "0.5", "PRESENCE_HANDOFF_TAKEOVER": "Off",
        "PRESENCE_LOG_JSON": "yes", "PRESENCE_LOG_LEVEL": "WARNING", "PRESENCE_SECRET": SECRET,
        "PRESENCE_ALLOWED_ORIGINS": "https://a.example/, ,https://b.example", "PRESENCE_USER_RATE_LIMIT": "7.5",
    })
    assert (s.heartbeat_ms, s.key_idle_days, s.handoff_takeover, s.log_json, s.log_level) == (
        1000, 0.5, False, True, "WARNING")
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert (s.user_rate_limit, s.user_rate_burst, s.rate_burst) == (7.5, 15, 40)


def test_flags_override_the_environment_and_are_checked_the_same_way() -> None:
    assert Settings.from_env({"PRESENCE_PORT": "9000", "PORT": "9001"}).port == 9000
    assert Settings.from_env({"PORT": "9001"}, port=9100, log_level=None).port == 9100
    assert refusal({}, log_level="loud") == ["PRESENCE_LOG_LEVEL must be debug, info, warning, error or critical, "
                                             "got 'loud'"]
    assert refusal({}, port=0)[0].startswith("PRESENCE_PORT must be a whole number from 1 to 65,535")


def test_settings_built_in_code_are_checked_against_the_same_bounds() -> None:
    with pytest.raises(SettingsError, match="PRESENCE_LEASE_TTL_MS must be a whole number from 1 to 3,600,000"):
        Settings(lease_ttl_ms=10**16).validate()
    with pytest.raises(SettingsError, match="PRESENCE_KEY_IDLE_DAYS must be a number above 0"):
        Settings(key_idle_days=math.nan).validate()
    with pytest.raises(SettingsError, match="PRESENCE_SECRET is set but empty"):
        Settings(secret="").validate()
    assert dataclasses.replace(Settings(), heartbeat_ms=1000).validate().heartbeat_ms == 1000


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PRESENCE_API_KEY", "PRESENCE_ADMIN_TOKEN"])
@pytest.mark.parametrize("key", [" " * 16, " " * 40, "\t" * 20, "a key with spaces in it", "ключ" * 8])
def test_blank_or_spaced_operator_keys_are_refused_without_echoing_them(name: str, key: str) -> None:
    (line,) = refusal({name: key, "PRESENCE_SECRET": SECRET})
    assert line.startswith(f"{name} must be at least 16 characters of printable ASCII without spaces")
    assert key not in line and "generate one with" in line


@pytest.mark.parametrize("variable", ["PRESENCE_SECRET", "PRESENCE_JWT_PUBLIC_KEY", "PRESENCE_JWKS_URL"])
def test_a_token_key_set_but_empty_is_an_error_not_dev_mode(variable: str) -> None:
    assert refusal({variable: ""}) == [
        f"{variable} is set but empty (an unset template variable?): give it its value, or remove it from the "
        "environment"
    ]
    assert is_set(variable.removeprefix("PRESENCE_").lower(), {variable: ""})


def test_other_empty_variables_count_as_unset() -> None:
    s = Settings.from_env({"PRESENCE_REDIS_URL": "", "PRESENCE_API_KEY": "", "PRESENCE_HEARTBEAT_MS": ""})
    assert s.embedded and s.api_key is None and s.heartbeat_ms == 5000 and s.dev_mode
    assert not is_set("max_connections", {"PRESENCE_MAX_CONNECTIONS": ""})
    assert is_set("port", {"PORT": "80"}) and is_set("max_connections", {"PRESENCE_MAX_CONNECTIONS": "5"})


def test_a_blank_secret_is_refused_and_never_echoed() -> None:
    (line,) = refusal({"PRESENCE_SECRET": " " * 40})
    assert line.startswith("PRESENCE_SECRET must be at least 32 characters, not blank") and "got" not in line


# -- dev mode -----------------------------------------------------------------------------------

PRODUCTION = {
    "PRESENCE_REDIS_URL": "redis://redis.internal:6379/0", "PRESENCE_REDIS_SENTINELS": "10.0.0.5:26379",
    "PRESENCE_API_KEY": "k" * 32, "PRESENCE_ADMIN_TOKEN": "a" * 32, "PRESENCE_ALLOWED_ORIGINS": "https://a.example",
}


@pytest.mark.parametrize("variable", list(PRODUCTION))
def test_dev_mode_with_a_production_setting_refuses_to_start_unless_meant(variable: str) -> None:
    env = {variable: PRODUCTION[variable]}
    (line,) = refusal(env)
    assert line.startswith("dev mode (no PRESENCE_SECRET, PRESENCE_JWT_PUBLIC_KEY or PRESENCE_JWKS_URL")
    assert f"with production settings ({variable})" in line
    assert "set PRESENCE_SECRET to 32+ random characters" in line and "PRESENCE_DEV=1" in line
    assert Settings.from_env({**env, "PRESENCE_DEV": "1"}).dev_mode
    assert Settings.from_env(env, dev=True).dev_mode  # presence serve --dev
    assert not Settings.from_env({**env, "PRESENCE_SECRET": SECRET}).dev_mode


def test_the_refusal_names_every_production_setting_present_and_the_dev_flag_changes_nothing_else() -> None:
    (line,) = refusal(PRODUCTION)
    assert "(PRESENCE_REDIS_URL, PRESENCE_REDIS_SENTINELS, PRESENCE_API_KEY, PRESENCE_ADMIN_TOKEN, " \
           "PRESENCE_ALLOWED_ORIGINS)" in line
    assert refusal({"PRESENCE_REDIS_URL": "redis://h/0"}, redis_url=None)  # an unset flag is no override
    with_secret = Settings.from_env({"PRESENCE_SECRET": SECRET, "PRESENCE_DEV": "1"})
    assert not with_secret.dev_mode and with_secret.signing_key == SECRET
    assert refusal({"PRESENCE_HOST": "0.0.0.0", "PRESENCE_DEV": "1"})[0].startswith("refusing to run in dev mode")


# -- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "fragment"), [
    ("redis://h:99999/0", "is not a URL redis-py can use (Port out of range 0-65535)"),
    ("redis://h:abc/0", "is not a URL redis-py can use (Port could not be cast to integer value as 'abc')"),
    ("redis://h/0?socket_timeout=abc", "(Invalid value for 'socket_timeout' in connection URL)"),
    ("redis://h/0?db=x", "(Invalid value for 'db' in connection URL)"),
    ("redis://h/abc", "must name its database by number (redis://host:6379/0), got 'redis://h/abc'"),
    ("redis://h/²", "must name its database by number"),
    ("redis://h/0?socket_timout=1", "has an option redis-py does not know ('socket_timout')"),
    ("redis://h/0?ssl_ca_certs=/etc/ca.pem", "has an option redis-py does not know ('ssl_ca_certs')"),
    ("redis://h/0?protocol=9", "(protocol must be either 2 or 3)"),
    ("http://h:6379", "must be a redis://, rediss:// or unix:// URL"),
])
def test_a_redis_url_is_read_as_redis_py_reads_it(url: str, fragment: str) -> None:
    (line,) = refusal({"PRESENCE_REDIS_URL": url, "PRESENCE_DEV": "1"})
    assert line.startswith("PRESENCE_REDIS_URL ") and fragment in line


def test_a_refused_redis_url_never_shows_its_password() -> None:
    (line,) = refusal({"PRESENCE_REDIS_URL": "redis://:hunter2@h:99999/0", "PRESENCE_DEV": "1"})
    assert "hunter2" not in line and "redis://:***@h:99999/0" in line


@pytest.mark.parametrize("url", [
    "redis://redis.internal:6379/0", "redis://h", "redis://h/", "REDIS://h:1/15", "redis://user:p%40ss@h:6379/2",
    "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required", "unix:///run/redis.sock?db=3",
    "redis://h/0?socket_timeout=2.5&health_check_interval=5",
])
def test_good_redis_urls_are_accepted(url: str) -> None:
    assert Settings.from_env({"PRESENCE_REDIS_URL": url, "PRESENCE_DEV": "1"}).redis_url == url


def test_a_cluster_url_is_read_as_the_cluster_client_reads_it() -> None:
    assert Settings.from_env({"PRESENCE_REDIS_URL": "redis://h:7000/0", "PRESENCE_REDIS_CLUSTER": "true",
                              "PRESENCE_DEV": "1"}).redis_cluster
    (line,) = refusal({"PRESENCE_REDIS_URL": "redis://h:7000/3", "PRESENCE_REDIS_CLUSTER": "true", "PRESENCE_DEV": "1"})
    assert "Argument 'db' must be 0 or None in cluster mode" in line


@pytest.mark.parametrize(("url", "fragment"), [
    ("https://idp.example:abc/jwks", "PRESENCE_JWKS_URL must have a port from 1 to 65535 (or none)"),
    ("https://idp.example:99999/jwks", "PRESENCE_JWKS_URL must have a port from 1 to 65535 (or none)"),
    ("http://idp.example/jwks", "PRESENCE_JWKS_URL must be an https:// URL"),
])
def test_a_jwks_url_is_refused_at_start_not_at_the_first_fetch(url: str, fragment: str) -> None:
    (line,) = refusal({"PRESENCE_JWKS_URL": url})
    assert line.startswith(fragment)
    assert Settings.from_env({"PRESENCE_JWKS_URL": "https://idp.example:8443/jwks"}).jwks_url


@pytest.mark.parametrize(("entry", "ok"), [
    ("10.0.0.5:26379", True), ("[::1]:26380", True), ("s1:1", True), ("sentinel-1", False), ("a:99999", False),
    ("a:0", False), ("a:²", False), (":26379", False),
])
def test_sentinel_addresses(entry: str, ok: bool) -> None:
    env = {"PRESENCE_REDIS_SENTINELS": entry, "PRESENCE_DEV": "1"}
    if ok:
        assert len(Settings.from_env(env).sentinel_addresses()) == 1
    else:
        (line,) = refusal(env)
        assert line.startswith("PRESENCE_REDIS_SENTINELS must be a comma list of host:port")


# -- a refusal found while starting -------------------------------------------------------------


def _starting(error: BaseException) -> RefusedAtStartup:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise error
        yield

    return RefusedAtStartup(Starlette(lifespan=lifespan))


async def _start(app: RefusedAtStartup) -> tuple[list[dict[str, object]], BaseException | None]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    try:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)  # type: ignore[arg-type]
    except BaseException as exc:
        return sent, exc
    return sent, None


async def test_settings_refused_while_starting_end_the_start_up_without_a_traceback() -> None:
    app = _starting(SettingsError(["PRESENCE_REDIS_CLUSTER=true, but ..."]))
    sent, raised = await _start(app)
    assert sent == [{"type": "lifespan.startup.failed", "message": ""}] and raised is None
    assert app.refusal is not None and app.refusal.problems == ["PRESENCE_REDIS_CLUSTER=true, but ..."]


async def test_any_other_failure_while_starting_reaches_uvicorn_as_before() -> None:
    app = _starting(RuntimeError("boom"))
    sent, raised = await _start(app)
    assert isinstance(raised, RuntimeError) and app.refusal is None
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"] and "boom" in str(sent[0]["message"])
