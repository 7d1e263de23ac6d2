"""Named locks in the scripts that act on every lock of a workspace: join (a reload within grace
keeps every lock with its fence), leave (grace for each), the pruning of dead tabs (out of every
queue and request, announced per lock), snapshot (every named lock), the batched renewals, and
the keys a lock leaves behind. On a real redis-server, the embedded fakeredis and the local Redis
Cluster (and on Valkey with PRESENCE_TEST_SERVER=valkey)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter

from redis.crc import key_slot
from script_support import GRACE, TTL, info, kinds, with_settings

from presence.gateway.leases import RENEW_CHUNK, LeaseScripts


async def pttl(lease: LeaseScripts, lock: str, ws: str = "doc") -> int:
    return int(await lease.gateway.client.pttl(lease.keys.workspace(ws).lock(lock).lease))


async def hold(lease: LeaseScripts, user: str, tab: str, conn: str, *locks: str) -> dict[str, int]:
    fences = {}
    for lock in locks:
        out = await lease.acquire("doc", user, user.title(), tab, conn, lock=lock)
        assert out.status == "granted", (lock, out)
        fences[lock] = out.reply.fence
    return fences


async def test_a_reload_within_grace_keeps_every_lock_with_its_fence(lease: LeaseScripts) -> None:
    await lease.join("doc", "c1", info("alice", "t1"))
    fences = await hold(lease, "alice", "t1", "c1", "", "title", "cell:B7")
    await hold(lease, "bob", "t2", "c2", "body")

    out = await lease.leave("doc", "c1", clean=True)
    (left,) = out.events
    assert left.kind == "left" and left.ttl_ms is not None and 0 < left.ttl_ms <= GRACE
    assert left.ttls is not None and set(left.ttls) == {"title", "cell:B7"}  # not bob's body
    assert all(0 < ttl <= GRACE for ttl in left.ttls.values())
    for lock in ("", "title", "cell:B7"):
        assert 0 < await pttl(lease, lock) <= GRACE, lock
    assert await pttl(lease, "body") > GRACE

    j = await lease.join("doc", "c3", info("alice", "t1"))
    assert j.reply.rejoined and j.reply.fence == fences[""]
    assert j.reply.locks == {"title": fences["title"], "cell:B7": fences["cell:B7"]}
    for lock in ("", "title", "cell:B7"):
        assert await pttl(lease, lock) > GRACE, lock  # the TTL replaced: back to full
    snap = j.reply.snapshot
    assert snap is not None and snap.locks is not None and set(snap.locks) == {"title", "cell:B7", "body"}
    assert snap.lock("title").holder is not None and snap.lock("title").holder.fence == fences["title"]
    assert snap.lock("body").holder is not None and snap.lock("body").holder.user == "bob"

    other = await lease.join("doc", "c4", info("carol", "t4"))
    assert not other.reply.rejoined and other.reply.locks is None


async def test_in_tab_scope_only_the_same_tab_rejoins(lease: LeaseScripts) -> None:
    lease = with_settings(lease, lease_scope="tab")
    fences = await hold(lease, "alice", "t1", "c1", "title")
    assert (await lease.join("doc", "c2", info("alice", "t2"))).reply.locks is None
    assert (await lease.join("doc", "c3", info("alice", "t1"))).reply.locks == fences


async def test_join_announces_the_named_locks_that_expired_unannounced(lease: LeaseScripts) -> None:
    await lease.join("doc", "c-bob", info("bob", "bob-tab"))
    await hold(lease, "alice", "t1", "c1", "title", "body")
    await lease.acquire("doc", "bob", "Bob", "bob-tab", "c-bob", wait=True, lock="title")
    for lock in ("title", "body"):
        await lease.gateway.client.pexpire(lease.keys.workspace("doc").lock(lock).lease, 1)
    await asyncio.sleep(0.05)
    j = await lease.join("doc", "c2", info("alice", "t1"))
    assert kinds(j.events) == [("expired", "body"), ("expired", "title"), ("acquired", "title"), ("joined", "")]
    assert j.reply.locks is None  # nothing of alice's left to rejoin
    assert await lease.gateway.client.smembers(lease.keys.workspace("doc").locks) == {"title"}


async def test_leave_shortens_only_the_last_tabs_locks_and_only_when_clean(lease: LeaseScripts) -> None:
    await lease.join("doc", "c1", info("alice", "t1"))
    await lease.join("doc", "c2", info("alice", "t2"))
    await hold(lease, "alice", "t1", "c1", "title")
    out = await lease.leave("doc", "c1", clean=True)
    assert out.events[0].ttls is None and await pttl(lease, "title") > GRACE  # tab c2 is still open
    out = await lease.leave("doc", "c2", clean=False)
    assert out.events[0].ttls is None and await pttl(lease, "title") > GRACE  # a crash: no grace
    await lease.join("doc", "c3", info("alice", "t3"))
    out = await lease.leave("doc", "c3", clean=True)
    assert out.events[0].ttls is not None and 0 < await pttl(lease, "title") <= GRACE


async def test_leave_without_grace_releases_every_lock_at_once(lease: LeaseScripts) -> None:
    lease = with_settings(lease, grace_ms=0)
    await lease.join("doc", "c1", info("alice", "t1"))
    await lease.join("doc", "c2", info("bob", "t2"))
    await hold(lease, "alice", "t1", "c1", "", "title")
    await lease.acquire("doc", "bob", "Bob", "t2", "c2", wait=True, lock="title")
    out = await lease.leave("doc", "c1", clean=True)
    assert out.reply.ttl_ms == 0
    assert kinds(out.events) == [("left", ""), ("released", ""), ("released", "title"), ("acquired", "title")]
    assert out.events[0].ttl_ms is None and out.events[0].ttls is None
    assert out.events[-1].holder is not None and out.events[-1].holder.user == "bob"


async def test_a_dead_tab_leaves_every_named_queue_and_request(lease: LeaseScripts) -> None:
    k, c = lease.keys.workspace("doc"), lease.gateway.client
    for user in ("alice", "bob", "carol", "dave"):
        await lease.join("doc", f"c-{user}", info(user, f"{user}-tab"))
    await hold(lease, "alice", "alice-tab", "c-alice", "", "title", "body", "cell:A1")
    for user, lock in (("bob", "title"), ("carol", "title"), ("bob", ""), ("dave", "cell:A1")):
        await lease.acquire("doc", user, user.title(), f"{user}-tab", f"c-{user}", wait=True, lock=lock)
    assert (await lease.request("doc", "bob", "Bob", "bob-tab", "c-bob", "", lock="body")).status == "asked"

    # Bob's server stopped refreshing his entry long ago: the next touch prunes him everywhere.
    await c.zadd(k.tabs, {"c-bob": 1})
    _, touched = await lease.tick({}, {"doc": ["c-alice"]})
    events = touched["doc"].events
    assert kinds(events) == [("left", ""), ("request_ended", "body"), ("dequeued", "title")]
    assert events[0].rm == {"c-bob": 1} and events[0].queue is None  # the workspace's own line
    assert events[1].request is None and events[1].target == ""  # nobody is told 'declined'
    assert events[2].queue == {"c-carol": 1}
    assert await c.lrange(k.lock("title").queue, 0, -1) == ["c-carol"]
    assert await c.exists(k.lock("body").request) == 0
    assert await c.lrange(k.lock("cell:A1").queue, 0, -1) == ["c-dave"]  # untouched: no event

    # A leaving tab, and one found dead by a snapshot, leave the lines the same way.
    out = await lease.leave("doc", "c-carol", clean=True)
    assert kinds(out.events) == [("left", ""), ("dequeued", "title")] and out.events[1].queue is None
    await c.zadd(k.tabs, {"c-dave": 1})
    snap = await lease.snapshot("doc")
    assert kinds(snap.events) == [("left", ""), ("dequeued", "cell:A1")]
    assert snap.reply.lock("cell:A1").queue is None and snap.reply.lock("title").queue is None


async def test_snapshot_lists_every_named_lock_after_settling_it(lease: LeaseScripts) -> None:
    k, c = lease.keys.workspace("doc"), lease.gateway.client
    for user in ("bob", "carol"):
        await lease.join("doc", f"c-{user}", info(user, f"{user}-tab"))
    fences = await hold(lease, "alice", "t1", "c1", "title", "gone")
    await lease.acquire("doc", "bob", "Bob", "bob-tab", "c-bob", wait=True, lock="title")
    await lease.request("doc", "carol", "Carol", "carol-tab", "c-carol", "hi", lock="title")
    await lease.release("doc", fences["gone"], lock="gone")
    snap = (await lease.snapshot("doc")).reply
    assert snap.holder is None and snap.locks is not None and set(snap.locks) == {"title"}
    title = snap.lock("title")
    assert title.holder is not None and title.holder.fence == fences["title"] and 0 < title.ttl_ms <= TTL
    assert title.queue == {"c-bob": 1} and title.request is not None and title.request.conn == "c-carol"

    await c.pexpire(k.lock("title").lease, 1)
    await asyncio.sleep(0.05)
    out = await lease.snapshot("doc")
    assert kinds(out.events) == [("expired", "title"), ("acquired", "title")]
    title = out.reply.lock("title")
    assert title.holder is not None and title.holder.user == "carol"  # the requester first
    assert title.queue == {"c-bob": 1} and title.request is None


async def test_renewals_of_named_locks_stay_batched(lease: LeaseScripts) -> None:
    lease = with_settings(lease, lease_ttl_ms=60_000)  # 612 grants take a while
    leases: dict[tuple[str, str], int] = {}
    locks = ["", *(f"l{i}" for i in range(50))]
    for w in range(12):
        outs = await asyncio.gather(*(lease.acquire(f"w{w}", "alice", "Alice", "t", "c", lock=lk) for lk in locks))
        for lock, out in zip(locks, outs, strict=True):
            leases[(f"w{w}", lock)] = out.reply.fence
    # One call per RENEW_CHUNK leases of one slot, whatever their locks (on plain Redis: any slot).
    slots = Counter(key_slot(f"{{{ws}}}".encode()) if lease.gateway.cluster else 0 for ws, _ in leases)
    expected = sum(math.ceil(n / RENEW_CHUNK) for n in slots.values())
    assert expected == (len(slots) if lease.gateway.cluster else 2)
    assert len(lease.renew_calls(leases)) == len(lease.renew_calls(leases, holders=False)) == expected
    taken = await lease.takeover("w3", "bob", "Bob", "t", "c", lock="l7")
    renewed, _ = await lease.tick(leases, {})
    assert renewed == {key: key != ("w3", "l7") for key in leases}
    kept = await lease.keep(leases, 30_000)
    assert kept == set(leases) - {("w3", "l7")}
    assert 25_000 < await pttl(lease, "l8", "w3") <= 30_000
    assert await pttl(lease, "l7", "w3") > 30_000  # bob's: untouched
    assert taken.status == "taken_over"


async def test_renewals_refresh_what_lives_with_a_named_lock(lease: LeaseScripts) -> None:
    """A held lock's holder record, queue and the workspace's locks set must outlive it: the
    renewals that refresh holder records give them the key idle time again too."""
    k, c = lease.keys.workspace("doc"), lease.gateway.client
    idle = lease.settings.key_idle_ms
    fence = (await hold(lease, "alice", "t1", "c1", "title"))["title"]
    await lease.acquire("doc", "bob", "Bob", "t2", "c2", wait=True, lock="title")
    lk = k.lock("title")
    for key in (lk.holder, lk.queue, k.locks):
        await c.pexpire(key, 5000)
    fresh = with_settings(lease)  # its first tick refreshes them
    assert (await fresh.tick({("doc", "title"): fence}, {}))[0] == {("doc", "title"): True}
    for key in (lk.holder, lk.queue, k.locks):
        assert int(await c.pttl(key)) > idle - 5000, key


async def test_a_named_lock_leaves_no_key_beyond_the_key_idle_time(lease: LeaseScripts) -> None:
    k, c = lease.keys.workspace("doc"), lease.gateway.client
    idle = lease.settings.key_idle_ms
    for user in ("bob", "carol"):
        await lease.join("doc", f"c-{user}", info(user, f"{user}-tab"))
    fence = (await hold(lease, "alice", "t1", "c1", "title"))["title"]
    await lease.acquire("doc", "bob", "Bob", "bob-tab", "c-bob", wait=True, lock="title")
    await lease.request("doc", "carol", "Carol", "carol-tab", "c-carol", "", lock="title")
    lk = k.lock("title")
    # The keys Redis has are the ones Python names (the scripts built some from lock_base).
    present = {key async for key in c.scan_iter(match=f"{lease.keys.prefix}:*")}
    assert present == {k.seq, k.tabs, k.info, k.locks, *dataclasses.astuple(lk)}
    assert 0 < int(await c.pttl(lk.lease)) <= TTL
    for key in (lk.holder, lk.fence, lk.queue, k.locks):
        assert 0 < int(await c.pttl(key)) <= idle, key
    assert 0 < int(await c.pttl(lk.request)) <= lease.settings.handoff_timeout_ms + 60_000

    # The lock ends: handed to carol (the requester), bob leaves the line, carol releases it.
    out = await lease.release("doc", fence, lock="title")
    assert out.reply.next is not None and out.reply.next.id == "carol"
    await lease.release("doc", 0, origin="c-bob", lock="title")  # a waiter leaves the line
    carol = int(await c.get(lk.lease))
    await lease.release("doc", carol, lock="title")
    # Only the fence counter is left (the fence rule needs it no longer than the key idle time),
    # and the locks set does not list the lock any more.
    assert [key for key in dataclasses.astuple(lk) if await c.exists(key)] == [lk.fence]
    assert await c.smembers(k.locks) == set()
