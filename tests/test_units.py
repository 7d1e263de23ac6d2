"""Quick unit tests of the pure pieces: settings, replica sequencing, protocol decoding, auth."""

from __future__ import annotations

import time

import jwt
import msgspec
import pytest

from presence import auth
from presence.core.events import EVENT_TYPES, Event
from presence.core.records import HolderRecord, Snapshot
from presence.core.replica import Applied, Replica
from presence.errors import BadToken, WorkspaceForbidden
from presence.settings import DEV_SECRET, Settings, SettingsError
from presence.wire.messages import Acquire, Hello, Status, decode_client, valid_workspace


def test_settings_defaults_match_the_spec() -> None:
    s = Settings.from_env({})
    assert (s.heartbeat_ms, s.dead_after_ms, s.lease_ttl_ms, s.grace_ms, s.hello_timeout_ms) == (
        5000, 12000, 15000, 5000, 5000,
    )
    assert s.dev_mode and s.embedded and s.lease_scope == "user" and s.key_prefix == "presence"
    assert s.max_message_bytes == 16 * 1024 and s.rate_limit == 20 and s.rate_burst == 40


def test_settings_from_env_and_overrides() -> None:
    env = {
        "PRESENCE_REDIS_URL": "redis://h:1/0", "PRESENCE_HEARTBEAT_MS": "1000", "PRESENCE_LEASE_TTL_MS": "2500",
        "PRESENCE_DEAD_AFTER_MS": "3000", "PRESENCE_GRACE_MS": "100", "PRESENCE_LEASE_SCOPE": "tab",
        "PRESENCE_ALLOWED_ORIGINS": "https://a.example, https://b.example/", "PORT": "9000",
        "PRESENCE_SECRET": "x" * 32, "PRESENCE_REDIS_CLUSTER": "true", "PRESENCE_RATE_LIMIT": "5",
    }
    s = Settings.from_env(env, port=9100)
    assert s.redis_url == "redis://h:1/0" and s.redis_cluster and not s.dev_mode
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.port == 9100 and s.lease_scope == "tab" and s.rate_burst == 10


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PRESENCE_HEARTBEAT_MS": "5000", "PRESENCE_LEASE_TTL_MS": "10000"},
         "must exceed twice PRESENCE_HEARTBEAT_MS"),
        ({"PRESENCE_HEARTBEAT_MS": "soon"}, "PRESENCE_HEARTBEAT_MS must be a whole number"),
        ({"PRESENCE_LEASE_SCOPE": "team"}, "PRESENCE_LEASE_SCOPE must be 'tab' or 'user', got 'team'"),
        ({"PRESENCE_SECRET": "short"}, "PRESENCE_SECRET must be at least 32 characters"),
        ({"PRESENCE_REDIS_URL": "localhost:6379"}, "must be a redis://, rediss:// or unix:// URL"),
        ({"PRESENCE_REDIS_CLUSTER": "maybe"}, "PRESENCE_REDIS_CLUSTER must be true or false"),
        ({"PRESENCE_DEAD_AFTER_MS": "4000"}, "PRESENCE_DEAD_AFTER_MS (4000) must exceed"),
        ({"PRESENCE_GRACE_MS": "20000"}, "PRESENCE_GRACE_MS (20000) must be between"),
        ({"PRESENCE_HOST": "0.0.0.0"}, "refusing to run in dev mode"),
    ],
)
def test_settings_errors_say_what_to_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert fragment in str(err.value)


def test_dev_mode_on_public_address_needs_explicit_consent() -> None:
    assert Settings.from_env({"PRESENCE_HOST": "0.0.0.0"}, allow_dev_on_public=True).host == "0.0.0.0"
    assert Settings.from_env({"PRESENCE_HOST": "0.0.0.0", "PRESENCE_SECRET": "s" * 40}).host == "0.0.0.0"


def _event(seq: int, **kw: object) -> Event:
    return EVENT_TYPES[str(kw.pop("kind", "joined"))](seq=seq, **kw)


def test_replica_applies_in_order_ignores_duplicates_and_reports_gaps() -> None:
    r = Replica("doc")
    assert r.apply(_event(5)) is Applied.GAP  # never read: must re-read first
    assert r.reset(Snapshot(seq=5, holder=None, ttl_ms=-2, tabs={"c1": '["a","A","t",true,null,"s"]'}))
    assert r.apply(_event(5)) is Applied.STALE
    h = HolderRecord(fence=7, user="a", name="A", tab="t", since=1)
    assert r.apply(_event(6, kind="acquired", holder=h)) is Applied.APPLIED
    assert r.holder == h and r.tabs_of(h.user) == 1
    assert r.apply(_event(8)) is Applied.GAP
    assert r.seq == 6
    assert not r.reset(Snapshot(seq=6, holder=None, ttl_ms=-2))  # same seq, not forced
    assert r.reset(Snapshot(seq=6, holder=None, ttl_ms=-2), force=True)
    assert r.holder is None and r.tabs == {}


def test_replica_viewers_are_one_entry_per_user() -> None:
    r = Replica("doc")
    r.reset(Snapshot(seq=1, holder=None, ttl_ms=-2, tabs={
        "c1": '["a","Ann","t1",false,null,"s"]', "c2": '["a","Ann","t2",true,null,"s"]',
        "c3": '["b","Bob","t3",false,null,"s"]', "c4": "not json",
        "c5": '["b","Bob","t3",false,null,"dead-server"]',  # t3 reconnected; old entry not pruned yet
    }))
    viewers = {v.user.id: (v.tabs, v.active) for v in r.viewers()}
    assert viewers == {"a": (2, True), "b": (1, False)}


def test_protocol_decodes_the_tagged_union_and_names_bad_fields() -> None:
    assert decode_client('{"type":"acquire","id":"7","wait":true}') == Acquire(id="7", wait=True)
    assert isinstance(decode_client('{"type":"hello","token":"t","workspace":"w","tab":"x"}'), Hello)
    assert decode_client('{"type":"status","active":false}') == Status(active=False)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.token"):
        decode_client('{"type":"hello","token":5,"workspace":"w","tab":"x"}')
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'nope'"):
        decode_client('{"type":"nope"}')
    with pytest.raises(msgspec.DecodeError):
        decode_client("{not json")


def test_workspace_ids() -> None:
    assert valid_workspace("team/doc-1:v2@main~x.y_z")
    assert valid_workspace("a" * 200)
    for bad in ("", "a" * 201, "doc 1", "doc{1}", "doc*", "doc\n"):
        assert not valid_workspace(bad)


def test_auth_accepts_valid_tokens_and_refuses_the_rest() -> None:
    key = "k" * 32
    ident = auth.verify(auth.mint(key, "alice", "Alice", workspaces=["doc-1", "team/*"], takeover=False), key)
    assert ident.user.id == "alice" and ident.user.name == "Alice" and not ident.may_take_over
    ident.check_workspace("doc-1")
    ident.check_workspace("team/plan")
    with pytest.raises(WorkspaceForbidden):
        ident.check_workspace("doc-2")
    with pytest.raises(BadToken, match="expired"):
        auth.verify(jwt.encode({"sub": "a", "exp": int(time.time()) - 60}, key, algorithm="HS256"), key)
    with pytest.raises(BadToken):
        auth.verify(auth.mint(DEV_SECRET, "alice"), key)  # wrong key
    with pytest.raises(BadToken):
        auth.verify(jwt.encode({"sub": "a"}, key, algorithm="HS256"), key)  # no exp
    unsigned = jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(BadToken):
        auth.verify(unsigned, key)


def test_same_secret_requires_a_configured_key() -> None:
    assert auth.same_secret("abc", "abc")
    assert not auth.same_secret("abc", "abd")
    assert not auth.same_secret("", "")
    assert not auth.same_secret("x", None)
