"""Named locks and list views against real server processes: what tabs see, the limits, bad
lock ids, and the process-wide bound of watched workspaces."""

from __future__ import annotations

from conftest import Cluster
from procs import RedisServer
from watchclient import Watcher
from wsclient import Tab, open_tab


async def test_two_tabs_hold_two_locks_of_one_workspace_and_everyone_sees_both(
    servers: Cluster, tabs: list[Tab]
) -> None:
    a, b = await servers.server_async("a"), await servers.server_async("b")
    alice = await open_tab(tabs, a, "alice", "form-1")
    bob = await open_tab(tabs, b, "bob", "form-1")
    got = await alice.request("acquire", lock="title")
    assert got["type"] == "acquired" and got["lock"] == "title"
    mine = await bob.request("acquire", lock="notes")
    assert mine["type"] == "acquired" and mine["lock"] == "notes" and mine["fence"] != got["fence"]
    busy = await bob.request("acquire", lock="title")
    assert busy["type"] == "busy" and busy["lock"] == "title" and busy["holder"]["user"]["id"] == "alice"
    # The workspace's own lease is a third, independent one.
    assert (await bob.request("acquire"))["type"] == "acquired"
    await alice.expect("update", lambda m: set((alice.view or {}).get("locks", {})) == {"title", "notes"})
    # Pings carry the time left of each named lock a tab holds.
    ping = await alice.expect("ping", lambda m: "title" in (m.get("ttls") or {}))
    assert 0 < ping["ttls"]["title"] <= 15000
    # A new tab's snapshot names both.
    carol = await open_tab(tabs, a, "carol", "form-1")
    assert carol.welcome is not None
    locks = carol.welcome["state"]["locks"]
    assert locks["title"]["user"]["id"] == "alice" and locks["notes"]["user"]["id"] == "bob"
    released = await alice.request("release", lock="title")
    assert released["type"] == "released" and released["lock"] == "title"
    await carol.expect("update", lambda m: (m.get("locks") or {}).get("title", "held") is None)


async def test_lock_limits_and_bad_lock_ids_change_nothing(
    servers: Cluster, tabs: list[Tab], redis_server: RedisServer, prefix: str
) -> None:
    a = await servers.server_async("a", PRESENCE_MAX_LOCKS="3")
    alice = await open_tab(tabs, a, "alice", "limits-1")
    bob = await open_tab(tabs, a, "bob", "limits-1")
    for lock in ("a", "b", "c"):
        assert (await alice.request("acquire", lock=lock))["type"] == "acquired"
    refused = await bob.request("acquire", lock="d")  # the workspace holds PRESENCE_MAX_LOCKS
    assert refused["type"] == "error" and refused["code"] == "too_many_locks"
    for bad in ("", "x" * 65, "no spaces", "é", "a/b"):
        if bad == "":
            continue  # "" is the workspace's own lease, not a bad id
        mark = len(bob.messages)
        await bob.send({"type": "acquire", "id": 9, "lock": bad})
        err = await bob.expect("error", after=mark)
        assert err["code"] == "bad_message", bad
    r = redis_server.client()
    assert not r.exists(f"{prefix}:{{limits-1}}:lock:d:lease")
    assert sorted(r.smembers(f"{prefix}:{{limits-1}}:locks")) == ["a", "b", "c"]
    assert bob.closed_code is None and alice.closed_code is None


async def test_a_tab_holds_at_most_twenty_named_locks(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    alice = await open_tab(tabs, a, "alice", "limits-2")
    for i in range(20):
        assert (await alice.request("acquire", lock=f"cell:{i}"))["type"] == "acquired"
    refused = await alice.request("acquire", lock="cell:20")
    assert refused["type"] == "error" and refused["code"] == "too_many_locks"
    assert (await alice.request("acquire", lock="cell:3"))["rejoined"] is True  # one it holds: fine
    assert (await alice.request("release", lock="cell:0"))["type"] == "released"
    assert (await alice.request("acquire", lock="cell:20"))["type"] == "acquired"


async def test_a_reload_within_the_grace_keeps_every_lock_with_its_fence(servers: Cluster, tabs: list[Tab]) -> None:
    a = await servers.server_async("a")
    alice = await open_tab(tabs, a, "alice", "reload-1", tab="alice-tab")
    fences = {lock: (await alice.request("acquire", lock=lock))["fence"] for lock in ("", "title", "cell:B7")}
    await alice.close()  # a clean close: the grace keeps the leases for a moment
    again = await open_tab(tabs, a, "alice", "reload-1", tab="alice-tab")
    rejoined = {m.get("lock", ""): m["fence"] for m in [
        await again.expect("acquired", lambda m, lock=lock: m.get("lock", "") == lock) for lock in fences
    ]}
    assert rejoined == fences


async def test_the_process_watches_at_most_max_watched_pairs(servers: Cluster) -> None:
    a = await servers.server_async("a", PRESENCE_MAX_WATCHED="5")
    first, second = Watcher(a.ws_url, "wendy"), Watcher(a.ws_url, "walt")
    try:
        await first.connect([f"w-{i}" for i in range(4)], id="f1")
        assert (await first.expect("leases"))["id"] == "f1"
        await second.connect(["w-9", "w-10"], id="s1")
        refused = await second.expect("error", lambda m: m.get("id") == "s1")
        assert refused["code"] == "too_many_watched"
        # The refused set is not watched; once the first watches fewer, there is room again.
        await first.watch(["w-0"], "f2")
        assert set((await second.watch(["w-9", "w-10"], "s2"))["leases"]) == {"w-9", "w-10"}
    finally:
        await first.close()
        await second.close()
