"""The lease Lua scripts, on a real redis-server and on the embedded fakeredis store."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from redis.crc import key_slot
from script_support import GRACE, TTL, expiry, info, published, subscribed

from presence.core.events import decode_event
from presence.core.records import TabInfo, encode_info
from presence.gateway.leases import LeaseScripts
from presence.settings import Settings


async def pttl(lease: LeaseScripts, ws: str) -> int:
    return int(await lease.gateway.client.pttl(lease.keys.workspace(ws).lease))


async def test_acquire_grants_then_busy_then_rejoin(lease: LeaseScripts) -> None:
    a = await lease.acquire("doc", "alice", "Alice", "t1", "c1")
    assert a.status == "granted"
    fence = a.reply.fence
    assert [e.kind for e in a.events] == ["acquired"]
    assert a.events[0].holder is not None and a.events[0].holder.fence == fence

    b = await lease.acquire("doc", "bob", "Bob", "t2", "c2")
    assert b.status == "busy"
    assert b.reply.holder.user == "alice"
    assert b.events == []

    # Scope user: another tab of the holder rejoins with the same fence and a fresh TTL.
    again = await lease.acquire("doc", "alice", "Alice", "t9", "c9")
    assert again.status == "rejoined"
    assert again.reply.fence == fence


async def test_tab_scope_second_tab_is_busy(lease: LeaseScripts) -> None:
    lease.settings = Settings(**{**_fields(lease.settings), "lease_scope": "tab"})
    a = await lease.acquire("doc", "alice", "Alice", "t1", "c1")
    b = await lease.acquire("doc", "alice", "Alice", "t2", "c2")
    assert a.status == "granted"
    assert b.status == "busy"
    assert b.reply.holder.tab == "t1"


def _fields(s: Settings) -> dict[str, object]:
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


async def test_renew_replaces_ttl_and_only_for_the_owner(lease: LeaseScripts) -> None:
    fence = (await lease.acquire("doc", "alice", "Alice", "t1", "c1")).reply.fence
    await lease.gateway.client.pexpire(lease.keys.workspace("doc").lease, 600)
    renewed, _ = await lease.tick({("doc", ""): fence}, {})
    assert renewed == {("doc", ""): True}
    ttl = await pttl(lease, "doc")
    assert 1000 < ttl <= TTL  # replaced by the TTL, not 600 + TTL

    renewed, _ = await lease.tick({("doc", ""): fence + 1}, {})
    assert renewed == {("doc", ""): False}
    assert await lease.gateway.client.get(lease.keys.workspace("doc").lease) == str(fence)


async def test_release_is_compare_and_set(lease: LeaseScripts) -> None:
    fence = (await lease.acquire("doc", "alice", "Alice", "t1", "c1")).reply.fence
    wrong = await lease.release("doc", fence - 1)
    assert wrong.status == "not_holder"
    assert await lease.gateway.client.exists(lease.keys.workspace("doc").lease) == 1
    ok = await lease.release("doc", fence, origin="c1")
    assert ok.status == "relinquished"
    assert [e.kind for e in ok.events] == ["released"]
    assert ok.events[0].holder is None and ok.events[0].lease
    assert await lease.gateway.client.exists(lease.keys.workspace("doc").lease) == 0


async def test_aba_expired_holder_cannot_touch_successor(lease: LeaseScripts) -> None:
    old = (await lease.acquire("doc", "alice", "Alice", "t1", "c1")).reply.fence
    await lease.gateway.client.pexpire(lease.keys.workspace("doc").lease, 1)
    await asyncio.sleep(0.05)
    new = await lease.acquire("doc", "bob", "Bob", "t2", "c2")
    assert new.status == "granted"
    assert new.reply.fence > old
    # The acquire announced the silent expiry of Alice's lease before granting Bob's.
    assert [e.kind for e in new.events] == ["expired", "acquired"]

    renewed, _ = await lease.tick({("doc", ""): old}, {})
    assert renewed == {("doc", ""): False}
    assert (await lease.release("doc", old)).status == "not_holder"
    assert await lease.gateway.client.get(lease.keys.workspace("doc").lease) == str(new.reply.fence)


async def test_takeover_bumps_fence_and_old_renew_fails(lease: LeaseScripts) -> None:
    old = (await lease.acquire("doc", "alice", "Alice", "t1", "c1")).reply.fence
    t = await lease.takeover("doc", "bob", "Bob", "t2", "c2")
    assert t.status == "taken_over"
    assert t.reply.fence > old
    assert t.reply.from_.id == "alice"
    ev = t.events[-1]
    assert ev.kind == "taken_over" and ev.reason == "taken_over"
    assert ev.from_ is not None and ev.from_.id == "alice"
    renewed, _ = await lease.tick({("doc", ""): old}, {})
    assert renewed == {("doc", ""): False}
    # Taking over your own lease is a rejoin, not a new grant.
    again = await lease.takeover("doc", "bob", "Bob", "t2", "c2")
    assert again.status == "rejoined" and again.reply.fence == t.reply.fence


async def test_fence_strictly_increases_even_after_flushall(lease: LeaseScripts) -> None:
    fences = []
    for user in ("a", "b", "c"):
        out = await lease.takeover("doc", user, user, "t", "c")
        fences.append(out.reply.fence)
    first = fences[0]
    assert first > 10**15  # seeded from Redis TIME in microseconds
    await lease.release("doc", fences[-1])
    fences.append((await lease.acquire("doc", "d", "d", "t", "c")).reply.fence)
    seq_before = int(await lease.gateway.client.get(lease.keys.workspace("doc").seq))
    await lease.gateway.client.flushall()
    after = await lease.acquire("doc", "e", "e", "t", "c")
    fences.append(after.reply.fence)
    assert fences == sorted(fences) and len(set(fences)) == len(fences)
    assert after.events[-1].seq > seq_before  # seq re-seeded above its old value too


async def test_a_fence_counter_that_went_back_still_yields_a_higher_fence(lease: LeaseScripts) -> None:
    """A replica promoted by a failover may have missed the last grants: its fence counter is
    behind (or gone). The fence rule, max(counter + 1, TIME in µs), still goes above."""
    k = lease.keys.workspace("doc")
    issued = []
    for user in ("a", "b", "c"):
        issued.append((await lease.takeover("doc", user, user, "t", "c")).reply.fence)
    # As the lagging replica has it: the counter of the first grant, the last two lost.
    await lease.gateway.client.set(k.fence, issued[0])
    after = (await lease.takeover("doc", "d", "d", "t", "c")).reply.fence
    assert after > max(issued)
    # Grants faster than the clock's microseconds still strictly increase (+1).
    await lease.gateway.client.set(k.fence, after + 10**9)
    burst = [(await lease.takeover("doc", u, u, "t", "c")).reply.fence for u in ("e", "f")]
    assert burst == [after + 10**9 + 1, after + 10**9 + 2]


async def test_counters_holder_and_queue_expire_after_the_key_idle_time(lease: LeaseScripts) -> None:
    """No key of a workspace outlives its use by more than PRESENCE_KEY_IDLE_DAYS: the counters,
    the holder record and the wait queue get that TTL, refreshed on use."""
    idle = lease.settings.key_idle_ms
    k = lease.keys.workspace("doc")
    c = lease.gateway.client
    await lease.join("doc", "c2", info("bob", "t2"))
    fence = (await lease.acquire("doc", "alice", "Alice", "t1", "c1")).reply.fence
    await lease.acquire("doc", "bob", "Bob", "t2", "c2", wait=True)
    for key in (k.fence, k.seq, k.holder, k.queue):
        assert 0 < int(await c.pttl(key)) <= idle, key
    # Renewals refresh the holder record's TTL: it must outlive the lease.
    await c.pexpire(k.holder, 5000)
    renewed, _ = await lease.tick({("doc", ""): fence}, {})
    assert renewed == {("doc", ""): True}
    assert int(await c.pttl(k.holder)) > idle - 5000
    # A touch keeps the queue of a workspace with live tabs.
    await c.pexpire(k.queue, 5000)
    await lease.tick({}, {"doc": ["c2"]})
    assert int(await c.pttl(k.queue)) > idle - 5000
    # Every key has a TTL.
    for key in k.by_name().values():
        if await c.exists(key):
            assert int(await c.pttl(key)) > 0, key


async def test_renewals_refresh_holder_records_once_a_quarter_of_the_key_idle_time(lease: LeaseScripts) -> None:
    """The holder record must outlive its lease, but a grant gave it the key idle time: the
    heartbeat's renewals give it that time again in one tick per quarter of it, not in every tick."""
    settings = dataclasses.replace(lease.settings, key_idle_days=2.4 * TTL / 86_400_000)  # a quarter: 0.9 s
    scripts = LeaseScripts(lease.gateway, settings, lease.keys)
    k, c = lease.keys.workspace("doc"), lease.gateway.client
    fence = (await scripts.acquire("doc", "alice", "Alice", "t1", "c1")).reply.fence
    assert (await scripts.tick({("doc", ""): fence}, {}))[0] == {("doc", ""): True}  # the first tick refreshes
    await c.pexpire(k.holder, 2500)
    assert (await scripts.tick({("doc", ""): fence}, {}))[0] == {("doc", ""): True}
    assert int(await c.pttl(k.lease)) > TTL - 500  # the lease was renewed...
    assert int(await c.pttl(k.holder)) <= 2500  # ...its holder record left as it was
    await asyncio.sleep(settings.key_idle_ms / 4000)  # the quarter passes: the next tick refreshes
    assert (await scripts.tick({("doc", ""): fence}, {}))[0] == {("doc", ""): True}
    assert int(await c.pttl(k.holder)) > 2500
    # A fence that no longer holds renews nothing, whichever kind of tick.
    assert (await scripts.tick({("doc", ""): fence + 1}, {}))[0] == {("doc", ""): False}


async def test_rejoin_keeps_fence(lease: LeaseScripts) -> None:
    fence = (await lease.acquire("doc", "alice", "Alice", "t1", "c1")).reply.fence
    j = await lease.join("doc", "c2", info("alice", "t1"))
    assert j.reply.rejoined and j.reply.fence == fence
    assert j.reply.snapshot.holder is not None and j.reply.snapshot.holder.fence == fence
    other = await lease.join("doc", "c3", info("bob", "t3"))
    assert not other.reply.rejoined and other.reply.fence is None


async def test_clean_leave_shortens_to_grace_unclean_does_not(lease: LeaseScripts) -> None:
    await lease.join("doc", "c1", info("alice", "t1"))
    await lease.acquire("doc", "alice", "Alice", "t1", "c1")
    out = await lease.leave("doc", "c1", clean=False)
    assert out.status == "left"
    assert await pttl(lease, "doc") > GRACE

    await lease.join("doc", "c2", info("alice", "t1"))
    await lease.join("doc", "c3", info("alice", "t2"))
    await lease.leave("doc", "c2", clean=True)
    assert await pttl(lease, "doc") > GRACE  # the user still has tab c3 open
    out = await lease.leave("doc", "c3", clean=True)
    assert 0 < await pttl(lease, "doc") <= GRACE
    assert out.events[-1].ttl_ms is not None and out.events[-1].ttl_ms <= GRACE

    # A reload within grace: the same user joins again and the TTL is back to full.
    j = await lease.join("doc", "c4", info("alice", "t1"))
    assert j.reply.rejoined
    assert await pttl(lease, "doc") > GRACE


async def test_grace_ends_and_expiry_is_announced_once(lease: LeaseScripts) -> None:
    await lease.join("doc", "c1", info("alice", "t1"))
    await lease.acquire("doc", "alice", "Alice", "t1", "c1")
    await lease.leave("doc", "c1", clean=True)
    ttl, events = expiry(await lease.check_expiry("doc"))
    assert ttl is not None and ttl <= GRACE
    await asyncio.sleep((ttl + 50) / 1000)
    ttl, events = expiry(await lease.check_expiry("doc"))
    assert ttl is None
    assert [e.kind for e in events] == ["expired"]
    assert events[0].user is not None and events[0].user.id == "alice"
    ttl, events = expiry(await lease.check_expiry("doc"))
    assert ttl is None and events == []


async def test_sequence_is_gap_free_and_published(lease: LeaseScripts) -> None:
    if lease.gateway.cluster:
        pytest.skip("SPUBLISH on Cluster: tests/system/test_cluster.py checks the sharded channel")
    pubsub = await subscribed(lease, "doc")
    outs = [
        await lease.join("doc", "c1", info("alice")),
    ]
    seqs = [e.seq for e in outs[0].events]
    for coro in (
        lease.acquire("doc", "alice", "Alice", "t", "c1"),
        lease.takeover("doc", "bob", "Bob", "t2", "c2"),
        lease.status("doc", "c1", TabInfo("alice", "Alice", "t", False, {"x": 1}, "test")),
        lease.leave("doc", "c1", clean=True),
    ):
        seqs += [e.seq for e in (await coro).events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert [decode_event(e).seq for e in await published(pubsub, len(seqs))] == seqs


async def test_concurrent_acquires_grant_exactly_one(lease: LeaseScripts) -> None:
    results = await asyncio.gather(
        *(lease.acquire("race", f"u{i}", f"U{i}", "t", f"c{i}") for i in range(50))
    )
    assert sorted(r.status for r in results).count("granted") == 1
    assert all(r.status in ("granted", "busy") for r in results)


async def test_touch_refreshes_prunes_and_reports_missing(lease: LeaseScripts) -> None:
    await lease.join("doc", "c1", info("alice"))
    await lease.join("doc", "c2", info("bob"))
    tabs = lease.keys.workspace("doc").tabs
    await lease.gateway.client.zadd(tabs, {"c2": 1})  # c2's server stopped refreshing long ago
    _, touched = await lease.tick({}, {"doc": ["c1", "gone"]})
    t = touched["doc"]
    assert list(touched) == ["doc"] and t.reply.missing == ["gone"]
    assert [e.kind for e in t.events] == ["left"]
    assert t.events[0].rm == {"c2": 1}
    assert await lease.gateway.client.zrange(tabs, 0, -1) == ["c1"]


async def test_a_snapshot_lists_the_live_tabs_that_have_an_entry(lease: LeaseScripts) -> None:
    """A snapshot's tabs are the live tabs with a presence entry, each with its entry: neither a
    live tab without one nor an entry without a live tab; in a workspace of a few hundred tabs, so
    the entries are read as Redis keeps both a small and a large hash."""
    for i in range(300):
        await lease.join("doc", f"c{i}", info(f"u{i}"))
    client = lease.gateway.client
    k = lease.keys.workspace("doc")
    now = await lease.gateway.redis_time_ms()
    await client.zadd(k.tabs, {"no-entry": now + 3_600_000, "c9": 1})  # c9 died long ago: pruned
    await client.hset(k.info, "no-tab", encode_info(info("ghost")))
    tabs = (await lease.read("doc")).tabs
    assert tabs is not None and set(tabs) == {f"c{i}" for i in range(300)} - {"c9"}
    assert all(tabs[f"c{i}"] == encode_info(info(f"u{i}")) for i in (0, 150, 299))


def _same_slot(workspace: str) -> str:
    """Another workspace in the slot of ``workspace``: the two share one touch call on Cluster too."""
    slot = key_slot(f"{{{workspace}}}".encode())
    names = (f"{workspace}{i}" for i in range(1_000_000))
    return next(w for w in names if key_slot(f"{{{w}}}".encode()) == slot)


async def test_touch_keeps_each_workspace_of_one_call_apart(lease: LeaseScripts) -> None:
    """One touch call over two workspaces prunes, refreshes and announces each under its own keys:
    its own tabs, queue, sequence and reply entry."""
    a, b = "doc", _same_slot("doc")
    await lease.join(a, "c1", info("alice"))
    await lease.join(a, "c2", info("bob"))
    await lease.join(b, "c3", info("carol"))
    await lease.join(b, "c4", info("dave"))
    await lease.join(b, "c5", info("erin"))
    await lease.acquire(b, "carol", "Carol", "t", "c3")
    assert (await lease.acquire(b, "dave", "Dave", "t", "c4", wait=True)).status == "waiting"
    assert (await lease.acquire(b, "erin", "Erin", "t", "c5", wait=True)).status == "waiting"
    client = lease.gateway.client
    now = await lease.gateway.redis_time_ms()
    for ws, live, dead in ((a, "c1", "c2"), (b, "c3", "c4")):
        # The live tab's expiry is far off, so a refresh shows as a rewrite; the dead one's passed.
        await client.zadd(lease.keys.workspace(ws).tabs, {live: now + 3_600_000, dead: 1})
    tabs = {a: ["c1", "gone"], b: ["c3"]}
    assert len(lease.touch_calls(tabs)) == 1

    _, touched = await lease.tick({}, tabs)

    by_ws = touched
    assert by_ws[a].reply.missing == ["gone"] and by_ws[b].reply.missing == []
    for ws, dead, queue in ((a, "c2", None), (b, "c4", {"c5": 1})):
        (ev,) = by_ws[ws].events
        assert ev.kind == "left" and ev.rm == {dead: 1} and ev.queue == queue
        assert ev.seq == int(await client.get(lease.keys.workspace(ws).seq))
    after = await lease.gateway.redis_time_ms()
    ttl = lease.settings.presence_ttl_ms
    for ws, touched_conn, others in ((a, "c1", set()), (b, "c3", {"c5"})):
        entries = dict(await client.zrange(lease.keys.workspace(ws).tabs, 0, -1, withscores=True))
        assert set(entries) == {touched_conn} | others
        assert now + ttl <= entries[touched_conn] <= after + ttl
    assert await client.lrange(lease.keys.workspace(b).queue, 0, -1) == ["c5"]


async def test_batched_renewal_is_a_constant_number_of_calls(lease: LeaseScripts) -> None:
    lease.settings = Settings(**{**_fields(lease.settings), "lease_ttl_ms": 60_000})  # 1200 grants take a while
    leases = {}
    for i in range(1200):
        leases[f"w{i}"] = (await lease.acquire(f"w{i}", "alice", "Alice", "t", "c")).reply.fence
    calls = lease.renew_calls({(ws, ""): fence for ws, fence in leases.items()})
    if not lease.gateway.cluster:  # on Cluster: one call per slot, one pipeline per node
        assert len(calls) == 3  # 1200 leases in chunks of 500, one pipeline
    renewed, _ = await lease.tick({(ws, ""): fence for ws, fence in leases.items()}, {})
    assert all(renewed.values()) and len(renewed) == 1200


async def test_store_reloads_scripts_after_script_flush(lease: LeaseScripts) -> None:
    if "Fake" in type(lease.gateway.client).__name__:
        pytest.skip("SCRIPT FLUSH semantics are a real-Redis concern")
    await lease.gateway.client.script_flush()
    out = await lease.acquire("doc", "alice", "Alice", "t", "c")
    assert out.status == "granted"
    await lease.gateway.client.script_flush()
    renewed, _ = await lease.tick({("doc", ""): out.reply.fence}, {})
    assert renewed == {("doc", ""): True}


async def test_keep_gives_held_leases_the_restart_grace_only_while_their_fence_holds(lease: LeaseScripts) -> None:
    fences = {ws: (await lease.acquire(ws, "alice", "Alice", "t", "c")).reply.fence for ws in ("k1", "k2", "k3")}
    taken = await lease.takeover("k3", "bob", "Bob", "tb", "cb")  # alice's fence of k3 holds nothing now
    assert taken.status == "taken_over"
    kept = await lease.keep({**{(ws, ""): f for ws, f in fences.items()}, ("never", ""): 12345}, 60_000)
    assert kept == {("k1", ""), ("k2", "")}
    for ws in ("k1", "k2"):
        assert 55_000 < await pttl(lease, ws) <= 60_000
    assert await pttl(lease, "k3") <= TTL  # bob's lease, untouched
    assert await pttl(lease, "never") == -2  # nothing was created


async def test_an_orphaned_lease_is_someone_unknowns_taken_over_or_asked_never_a_script_error(
    lease: LeaseScripts,
) -> None:
    """A lease key whose holder record is gone (evicted, or expired first): acquire answers busy,
    takeover replaces the unknown holder, request asks nobody (its deadline then decides)."""
    for lock in ("", "title"):
        ws = f"orphan-{lock or 'own'}"
        fence = (await lease.acquire(ws, "alice", "Alice", "t", "c1", lock=lock)).reply.fence
        k = lease.keys.workspace(ws)
        await lease.gateway.client.delete(k.lock(lock).holder if lock else k.holder)
        assert (await lease.acquire(ws, "bob", "Bob", "t", "c2", lock=lock)).status == "busy"
        asked = await lease.request(ws, "bob", "Bob", "t", "c2", "please", lock=lock)
        assert asked.status == "asked" and asked.reply.holder.user == ""  # type: ignore[union-attr]
        taken = await lease.takeover(ws, "carol", "Carol", "t", "c3", lock=lock)
        assert taken.status == "taken_over" and taken.reply.fence > fence  # type: ignore[union-attr]
        (event,) = [e for e in taken.events if e.kind == "taken_over"]
        assert event.lock == lock and event.prev is not None and event.prev.user == ""
