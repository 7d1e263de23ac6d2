"""/metrics (Prometheus text, parsed with prometheus_client's own parser) follows what tabs and
leases do; log lines carry the connection and request ids in both formats."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
from conftest import Cluster
from procs import ServerProcess
from prometheus_client.parser import text_string_to_metric_families
from wsclient import Tab

from presence import logctx
from presence.cli import _JsonFormatter

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: ServerProcess) -> Samples:
    async with httpx.AsyncClient() as client:
        r = await client.get(server.http_url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_follow_tabs_and_leases(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    before = await scrape(a)
    assert value(before, "presence_connections") == 0 and value(before, "presence_ready") == 1
    assert any(name == "presence_server" for name, _ in before)
    assert value(before, "process_resident_memory_bytes") > 0

    alice = await Tab(a.ws_url, "alice", "m-doc").connect()
    bob = await Tab(a.ws_url, "bob", "m-doc").connect()
    tabs += [alice, bob]
    await alice.request("acquire")
    busy = await bob.request("acquire")
    assert busy["type"] == "busy"
    s = await scrape(a)
    assert value(s, "presence_connections") == 2 and value(s, "presence_workspaces") == 1
    assert value(s, "presence_leases_held") == 1
    assert value(s, "presence_lease_events_total", kind="acquired", lease="workspace") == 1
    assert value(s, "presence_acquire_seconds_count", op="acquire", result="granted") == 1
    assert value(s, "presence_acquire_seconds_count", op="acquire", result="busy") == 1
    assert value(s, "presence_messages_in_total", type="acquire") == 2
    assert value(s, "presence_messages_out_total", type="welcome") == 2
    assert value(s, "presence_redis_seconds_count", op="acquire") >= 2
    await alice.request("acquire", lock="title")  # a named lock: counted apart
    s = await scrape(a)
    assert value(s, "presence_lease_events_total", kind="acquired", lease="named") == 1
    assert value(s, "presence_lease_events_total", kind="acquired", lease="workspace") == 1
    assert value(s, "presence_leases_held") == 2

    await bob.request("takeover")
    await alice.expect("released", lambda m: m["reason"] == "taken_over")
    await bob.send({"type": "hello"})  # a bad frame, answered with error{bad_message}
    await bob.expect("error", lambda m: m["code"] == "bad_message")
    s = await scrape(a)
    assert value(s, "presence_lease_events_total", kind="taken_over", lease="workspace") == 1
    assert value(s, "presence_errors_total", code="bad_message") == 1
    assert value(s, "presence_leases_held") == 2  # bob's now (and alice's named lock), still on this process

    # Ticks and renewals happen on the heartbeat (300 ms in tests).
    deadline = time.monotonic() + 5
    while value(s, "presence_renew_seconds_count") < 1 or value(s, "presence_heartbeat_tick_seconds_count") < 1:
        assert time.monotonic() < deadline, "no heartbeat tick measured"
        await asyncio.sleep(0.1)
        s = await scrape(a)

    await bob.close()
    await alice.close()
    deadline = time.monotonic() + 5
    while (value(s, "presence_connections") != 0
           or value(s, "presence_lease_events_total", kind="expired", lease="workspace") < 1):
        assert time.monotonic() < deadline, f"connections {value(s, 'presence_connections')}, no expiry"
        await asyncio.sleep(0.1)
        s = await scrape(a)  # bob's lease ends after the grace period (600 ms)
    assert value(s, "presence_leases_held") == 0 and value(s, "presence_workspaces") == 0


async def test_each_process_counts_only_its_own_changes(servers: Cluster, tabs: list[Tab]) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    t = await Tab(b.ws_url, "carl", "m-split").connect()
    watcher = await Tab(a.ws_url, "wes", "m-split").connect()
    tabs += [t, watcher]
    await t.request("acquire")
    await watcher.expect("state", lambda m: m["holder"] is not None)
    sa, sb = await scrape(a), await scrape(b)
    assert value(sb, "presence_lease_events_total", kind="acquired", lease="workspace") == 1
    assert value(sa, "presence_lease_events_total", kind="acquired", lease="workspace") == 0  # it only heard of it
    assert value(sa, "presence_leases_held") == 0 and value(sb, "presence_leases_held") == 1


def test_log_records_carry_conn_and_request_ids() -> None:
    record = logging.LogRecord("presence.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    t1, t2 = logctx.conn_id.set("abc-7"), logctx.request_id.set("42")
    try:
        logctx.ContextFilter().filter(record)
    finally:
        logctx.conn_id.reset(t1)
        logctx.request_id.reset(t2)
    assert json.loads(_JsonFormatter().format(record))["conn"] == "abc-7"
    assert json.loads(_JsonFormatter().format(record))["request"] == "42"
    assert "presence.test [conn=abc-7 req=42]: hello world" in logging.Formatter(logctx.TEXT_FORMAT).format(record)
    bare = logging.LogRecord("presence.test", logging.INFO, __file__, 1, "plain", (), None)
    logctx.ContextFilter().filter(bare)
    assert "conn" not in json.loads(_JsonFormatter().format(bare))
    assert "presence.test: plain" in logging.Formatter(logctx.TEXT_FORMAT).format(bare)


async def test_server_json_logs_name_the_connection(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a", PRESENCE_LOG_JSON="true")
    t = await Tab(a.ws_url, "lou", "m-logs").connect()
    tabs.append(t)
    conn = t.welcome["conn"]  # type: ignore[index]
    await t.close()
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in a.log().splitlines() if line.startswith("{")]
        joined = [e for e in lines if "joined" in e["message"] and e.get("conn") == conn]
        left = [e for e in lines if " left " in e["message"] and e.get("conn") == conn]
        if joined and left:
            break
        assert time.monotonic() < deadline, lines[-5:]
        await asyncio.sleep(0.05)
