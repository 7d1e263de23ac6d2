"""Named locks in the lease scripts, one lock at a time: each is a lease of its own (grant, busy,
rejoin, compare-and-set release and renewal, takeover and its cooldown, queue, handoff, request,
expiry, fences), apart from the workspace's own lease and from each other, and a workspace holds
at most PRESENCE_MAX_LOCKS of them. On a real redis-server, the embedded fakeredis and the local
Redis Cluster (and on Valkey with PRESENCE_TEST_SERVER=valkey)."""

from __future__ import annotations

import asyncio
import json

import pytest
from script_support import expiry, info, kinds, published, subscribed, with_settings

from presence.gateway.leases import LeaseScripts


async def test_each_lock_is_a_lease_of_its_own(lease: LeaseScripts) -> None:
    c, k = lease.gateway.client, lease.keys.workspace("doc")
    own = await lease.acquire("doc", "alice", "Alice", "t1", "c1")
    title = await lease.acquire("doc", "bob", "Bob", "t2", "c2", lock="title")
    cell = await lease.acquire("doc", "carol", "Carol", "t3", "c3", lock="cell:B7")
    assert [o.status for o in (own, title, cell)] == ["granted"] * 3
    assert kinds(own.events) == [("acquired", "")]
    assert kinds(title.events) == [("acquired", "title")] and kinds(cell.events) == [("acquired", "cell:B7")]
    for lock, out in (("", own), ("title", title), ("cell:B7", cell)):
        assert await c.get(k.lock(lock).lease) == str(out.reply.fence), lock

    busy = await lease.acquire("doc", "alice", "Alice", "t1", "c1", lock="title")
    assert busy.status == "busy" and busy.reply.holder is not None and busy.reply.holder.user == "bob"
    again = await lease.acquire("doc", "bob", "Bob", "t9", "c9", lock="title")  # scope user: another tab
    assert again.status == "rejoined" and again.reply.fence == title.reply.fence

    # Compare-and-set per lock: another lock's fence releases nothing, the lock's own does.
    assert (await lease.release("doc", cell.reply.fence, lock="title")).status == "not_holder"
    assert (await lease.release("doc", title.reply.fence, lock="")).status == "not_holder"
    out = await lease.release("doc", title.reply.fence, origin="c2", lock="title")
    assert out.status == "relinquished" and kinds(out.events) == [("released", "title")]
    assert await c.exists(k.lock("title").lease) == 0
    assert await c.get(k.lease) == str(own.reply.fence)
    assert await c.get(k.lock("cell:B7").lease) == str(cell.reply.fence)

    renewed, _ = await lease.tick({("doc", ""): own.reply.fence, ("doc", "title"): title.reply.fence,
                                   ("doc", "cell:B7"): cell.reply.fence}, {})
    assert renewed == {("doc", ""): True, ("doc", "title"): False, ("doc", "cell:B7"): True}


async def test_events_name_the_named_lock_and_share_the_workspace_sequence(lease: LeaseScripts) -> None:
    if lease.gateway.cluster:
        pytest.skip("SPUBLISH on Cluster: tests/system/test_cluster.py checks the sharded channel")
    pubsub = await subscribed(lease, "doc")
    outs = [
        await lease.join("doc", "c1", info("alice")),
        await lease.acquire("doc", "alice", "Alice", "t", "c1", lock="title"),
        await lease.acquire("doc", "alice", "Alice", "t", "c1"),
        await lease.takeover("doc", "bob", "Bob", "t2", "c2", lock="title"),
    ]
    count = sum(len(o.events) for o in outs)
    events = [json.loads(e) for e in await published(pubsub, count)]
    assert [(e["kind"], e.get("lock")) for e in events] == [
        ("joined", None), ("acquired", "title"), ("acquired", None), ("taken_over", "title")
    ]
    seqs = [int(e["seq"]) for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + count))  # one sequence per workspace, every lock in it


async def test_takeover_and_its_cooldown_are_per_lock(lease: LeaseScripts) -> None:
    lease = with_settings(lease, takeover_cooldown_ms=60_000)
    title = (await lease.acquire("doc", "alice", "Alice", "t1", "c1", lock="title")).reply.fence
    body = (await lease.acquire("doc", "alice", "Alice", "t1", "c1", lock="body")).reply.fence
    taken = await lease.takeover("doc", "bob", "Bob", "t2", "c2", lock="title")
    assert taken.status == "taken_over" and taken.reply.fence > title and taken.reply.from_.id == "alice"
    assert kinds(taken.events) == [("taken_over", "title")]
    renewed, _ = await lease.tick({("doc", "title"): title, ("doc", "body"): body}, {})
    assert renewed == {("doc", "title"): False, ("doc", "body"): True}  # the old holder's renewal fails
    back = await lease.takeover("doc", "alice", "Alice", "t1", "c1", lock="title")
    assert back.status == "cooldown" and back.events == []
    # The cooldown is title's: body and the workspace's own lease are taken over or granted as ever.
    assert (await lease.takeover("doc", "carol", "Carol", "t3", "c3", lock="body")).status == "taken_over"
    assert (await lease.takeover("doc", "dave", "Dave", "t4", "c4")).status == "granted"
    assert (await lease.takeover("doc", "bob", "Bob", "t2", "c2", lock="title")).status == "rejoined"


async def test_queue_and_handoff_per_lock(lease: LeaseScripts) -> None:
    for user in ("alice", "bob", "carol"):
        await lease.join("doc", f"c-{user}", info(user, f"{user}-tab"))
    title = (await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice", lock="title")).reply.fence
    await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice")
    waiting = await lease.acquire("doc", "bob", "Bob", "bob-tab", "c-bob", wait=True, lock="title")
    assert waiting.status == "waiting" and waiting.reply.position == 1
    assert kinds(waiting.events) == [("queued", "title")] and waiting.events[0].queue == {"c-bob": 1}
    assert (await lease.acquire("doc", "carol", "Carol", "carol-tab", "c-carol", wait=True)).status == "waiting"

    out = await lease.release("doc", title, origin="c-alice", lock="title")
    assert out.reply.next is not None and out.reply.next.id == "bob"
    assert kinds(out.events) == [("released", "title"), ("acquired", "title")]
    granted = out.events[-1]
    assert granted.handoff == "c-bob" and granted.holder is not None and granted.holder.fence > title
    assert granted.queue is None
    k, c = lease.keys.workspace("doc"), lease.gateway.client
    assert await c.lrange(k.queue, 0, -1) == ["c-carol"]  # the workspace's own line is untouched

    # An expiry hands a named lock on too, found by that lock's expiry check.
    await lease.acquire("doc", "bob", "Bob", "bob-tab", "c-bob", lock="body")
    await lease.acquire("doc", "carol", "Carol", "carol-tab", "c-carol", wait=True, lock="body")
    await c.pexpire(k.lock("body").lease, 1)
    await asyncio.sleep(0.05)
    ttl, events = expiry(await lease.check_expiry("doc", "title"))
    assert ttl is not None and events == []  # title is alive: nothing to announce
    ttl, events = expiry(await lease.check_expiry("doc", "body"))
    assert ttl is not None and kinds(events) == [("expired", "body"), ("acquired", "body")]
    assert events[1].holder is not None and events[1].holder.user == "carol"


async def test_request_decline_and_timeout_per_lock(lease: LeaseScripts) -> None:
    lease = with_settings(lease, handoff_timeout_ms=300)
    for user in ("bob", "carol"):
        await lease.join("doc", f"c-{user}", info(user, f"{user}-tab"))
    title = (await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice", lock="title")).reply.fence
    own = (await lease.acquire("doc", "alice", "Alice", "alice-tab", "c-alice")).reply.fence
    asked = await lease.request("doc", "bob", "Bob", "bob-tab", "c-bob", "may I?", lock="title")
    assert asked.status == "asked" and kinds(asked.events) == [("requested", "title")]
    assert asked.events[0].request is not None and asked.events[0].request.conn == "c-bob"
    # The workspace's own fence answers nothing on title; title's fence declines it.
    assert (await lease.handoff("doc", "decline", own, lock="title")).status == "no_request"
    assert (await lease.handoff("doc", "decline", title, lock="")).status == "no_request"
    declined = await lease.handoff("doc", "decline", title, lock="title")
    assert declined.status == "ended" and kinds(declined.events) == [("request_ended", "title")]

    await lease.request("doc", "bob", "Bob", "bob-tab", "c-bob", "please", lock="title")
    out = await lease.release("doc", title, origin="c-alice", lock="title")
    assert kinds(out.events) == [("released", "title"), ("acquired", "title")]
    assert out.events[-1].handoff == "c-bob" and out.events[-1].request is None

    # Unanswered, a request becomes a takeover of that lock alone.
    await lease.request("doc", "carol", "Carol", "carol-tab", "c-carol", "", lock="title")
    await asyncio.sleep(0.4)
    taken = await lease.handoff("doc", "timeout", "c-carol", may_take_over=True, lock="title")
    assert taken.status == "taken_over" and kinds(taken.events) == [("taken_over", "title")]
    assert await lease.gateway.client.get(lease.keys.workspace("doc").lease) == str(own)


async def test_a_new_named_lock_beyond_max_locks_is_too_many(lease: LeaseScripts) -> None:
    lease = with_settings(lease, max_locks=3)
    c, k = lease.gateway.client, lease.keys.workspace("doc")
    for lock in ("a", "b", "c"):
        assert (await lease.acquire("doc", "alice", "Alice", "t1", "c1", lock=lock)).status == "granted"
    await lease.join("doc", "c2", info("bob", "t2"))
    seq = await c.get(k.seq)
    refused = [
        await lease.acquire("doc", "bob", "Bob", "t2", "c2", lock="d"),
        await lease.acquire("doc", "bob", "Bob", "t2", "c2", wait=True, lock="d"),
        await lease.takeover("doc", "bob", "Bob", "t2", "c2", lock="d"),
        await lease.request("doc", "bob", "Bob", "t2", "c2", "", lock="d"),
    ]
    for out in refused:
        assert out.status == "too_many" and out.reply.limit == 3 and out.events == []
    # Nothing changed: no key of d, no event, d not listed.
    assert [key for key in k.by_name("d").values() if key.startswith(k.lock_base) and await c.exists(key)] == []
    assert await c.get(k.seq) == seq and await c.smembers(k.locks) == {"a", "b", "c"}

    # What is not a new named lock goes on: a rejoin, a line for a held lock, the workspace's own
    # lease, another workspace's locks.
    assert (await lease.acquire("doc", "alice", "Alice", "t1", "c1", lock="a")).status == "rejoined"
    assert (await lease.acquire("doc", "bob", "Bob", "t2", "c2", wait=True, lock="a")).status == "waiting"
    assert (await lease.acquire("doc", "bob", "Bob", "t2", "c2")).status == "granted"
    assert (await lease.acquire("other", "bob", "Bob", "t2", "c2", lock="d")).status == "granted"

    # A lock that ended frees its place; so does one that expired unannounced (announced on the way).
    c_fence = int(await c.get(k.lock("c").lease))
    await lease.release("doc", c_fence, lock="c")
    assert (await lease.acquire("doc", "bob", "Bob", "t2", "c2", lock="d")).status == "granted"
    assert (await lease.acquire("doc", "bob", "Bob", "t2", "c2", lock="e")).status == "too_many"
    await c.pexpire(k.lock("b").lease, 1)
    await asyncio.sleep(0.05)
    out = await lease.acquire("doc", "bob", "Bob", "t2", "c2", lock="e")
    assert out.status == "granted" and kinds(out.events) == [("expired", "b"), ("acquired", "e")]


async def test_fences_per_lock_never_go_back(lease: LeaseScripts) -> None:
    """Each lock has its own fence counter under the fence rule, max(counter + 1, TIME in µs): one
    set back (a failover to a lagging replica) or lost (FLUSHALL: data loss) still goes above."""
    k, c = lease.keys.workspace("doc"), lease.gateway.client
    issued = [(await lease.takeover("doc", u, u, "t", "c", lock="title")).reply.fence for u in ("a", "b", "c")]
    own = (await lease.acquire("doc", "a", "a", "t", "c")).reply.fence
    assert issued == sorted(issued) and issued[0] > 10**15  # seeded from Redis TIME in µs
    assert await c.get(k.lock("title").fence) == str(issued[-1]) and await c.get(k.fence) == str(own)
    await c.set(k.lock("title").fence, issued[0])
    issued.append((await lease.takeover("doc", "d", "d", "t", "c", lock="title")).reply.fence)
    assert issued[-1] > max(issued[:-1])
    await c.flushall()
    after = await lease.acquire("doc", "g", "g", "t", "c", lock="title")
    assert after.status == "granted" and after.reply.fence > max(issued)
    await c.set(k.lock("title").fence, after.reply.fence + 10**9)  # faster than the clock's µs: still +1
    burst = [(await lease.takeover("doc", u, u, "t", "c", lock="title")).reply.fence for u in ("e", "f")]
    assert burst == [after.reply.fence + 10**9 + 1, after.reply.fence + 10**9 + 2]
