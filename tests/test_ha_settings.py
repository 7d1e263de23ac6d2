"""The high-availability settings: Sentinels, WAIT replicas, key idle time; validated at start-up
with messages that say what to fix."""

from __future__ import annotations

import pytest

from presence.gateway.gateway import Gateway
from presence.gateway.sentinel import SentinelClient
from presence.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.redis_sentinels == () and s.redis_sentinel_master == "mymaster"
    assert s.redis_wait_replicas == 0 and s.key_idle_days == 7 and s.key_idle_ms == 7 * 86_400_000


def test_sentinels_from_env() -> None:
    s = Settings.from_env({"PRESENCE_REDIS_SENTINELS": "10.0.0.5:26379, [::1]:26380", "PRESENCE_DEV": "1",
                           "PRESENCE_REDIS_SENTINEL_MASTER": "presence", "PRESENCE_KEY_IDLE_DAYS": "0.5"})
    assert s.sentinel_addresses() == [("10.0.0.5", 26379), ("::1", 26380)]
    assert s.redis_sentinel_master == "presence" and not s.embedded
    assert s.key_idle_ms == 43_200_000


@pytest.mark.parametrize(("env", "fragment"), [
    ({"PRESENCE_REDIS_SENTINELS": "sentinel-1"}, "comma list of host:port"),
    ({"PRESENCE_REDIS_SENTINELS": "a:99999"}, "comma list of host:port"),
    ({"PRESENCE_REDIS_SENTINELS": "a:1", "PRESENCE_REDIS_CLUSTER": "true", "PRESENCE_REDIS_URL": "redis://x"},
     "exclude each other"),
    ({"PRESENCE_REDIS_SENTINELS": "a:1", "PRESENCE_REDIS_URL": "unix:///tmp/r.sock"}, "redis:// or rediss://"),
    ({"PRESENCE_REDIS_WAIT_REPLICAS": "1"}, "needs a real Redis with replicas"),
    ({"PRESENCE_REDIS_WAIT_REPLICAS": "-1"}, "PRESENCE_REDIS_WAIT_REPLICAS must be a whole number from 0"),
    ({"PRESENCE_REDIS_WAIT_REPLICAS": "1", "PRESENCE_REDIS_URL": "redis://x", "PRESENCE_HEARTBEAT_MS": "300",
      "PRESENCE_LEASE_TTL_MS": "1500", "PRESENCE_DEAD_AFTER_MS": "900", "PRESENCE_GRACE_MS": "600"},
     "PRESENCE_REDIS_WAIT_TIMEOUT_MS (1000) must be between 1 and 400"),
    ({"PRESENCE_KEY_IDLE_DAYS": "0.0001"}, "PRESENCE_KEY_IDLE_DAYS (0.0001) must be longer than twice"),
    ({"PRESENCE_KEY_IDLE_DAYS": "a week"}, "PRESENCE_KEY_IDLE_DAYS must be a number"),
])
def test_errors_say_what_to_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert fragment in str(err.value)


async def test_the_sentinel_client_takes_password_database_and_tls_from_the_url() -> None:
    s = Settings.from_env({"PRESENCE_REDIS_SENTINELS": "127.0.0.1:1", "PRESENCE_DEV": "1",
                           "PRESENCE_REDIS_URL": "rediss://:pw@ignored:9/3?ssl_ca_certs=/etc/ca.pem"})
    gateway = Gateway(s)
    try:
        sentinel = gateway._sentinel
        assert isinstance(sentinel, SentinelClient)
        kw = sentinel.pool.connection_kwargs
        assert kw["password"] == "pw" and kw["db"] == 3 and kw["ssl_ca_certs"] == "/etc/ca.pem"
        assert "host" not in kw and sentinel.pool.connection_class.__name__ == "SentinelManagedSSLConnection"
        assert sentinel.sentinel.sentinel_kwargs["ssl"] is True  # TLS to the Sentinels too
        assert "password" not in sentinel.sentinel.sentinel_kwargs
    finally:
        await gateway.close()
