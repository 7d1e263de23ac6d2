"""The real ``static/presence.js`` and demo page in headless Chromium, against real
``presence serve`` processes on a real redis-server. Two browser contexts are two users."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from browser_support import (
    SERVER_DOWN_NOISE,
    BrowserTab,
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    expect,
    expect_saved,
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
)
from conftest import Cluster
from procs import RedisServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

NewTab = Callable[[str, str], BrowserTab]


@pytest.fixture
def new_tab(new_page: Callable[[str], Page]) -> Callable[[str, str], BrowserTab]:
    """``new_tab(name, base_url)``: a :class:`BrowserTab` driving the real client of ``base_url``."""

    def make(name: str, base_url: str) -> BrowserTab:
        page = new_page(name)
        # the harness page (/healthz) has no <link rel=icon>: answer the browser's favicon request
        page.context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
        return BrowserTab(page, base_url)

    return make


def lease_key(prefix: str, workspace: str) -> str:
    return f"{prefix}:{{{workspace}}}:lease"


def test_acquire_then_busy_for_another_user(servers: Cluster, new_tab: NewTab, console: ConsoleLog) -> None:
    server = servers.server("a")
    alice, bob = new_tab("alice", server.http_url), new_tab("bob", server.http_url)
    assert alice.start("alice", "Alice", "doc-busy")["user"] == {"id": "alice", "name": "Alice"}
    bob.start("bob", "Bob", "doc-busy")
    # both see both in the viewer list
    for tab in (alice, bob):
        tab.wait("() => client.state.viewers.map((v) => v.user.id).sort().join() === 'alice,bob'")

    got = alice.call("acquire")
    assert got["acquired"] is True and isinstance(got["fence"], int)
    assert alice.js("() => [client.holding, client.canEdit, client.fence]") == [True, True, got["fence"]]
    assert alice.js("() => client.leaseRemainingMs") > 0

    bob.wait("(f) => client.state.holder && client.state.holder.fence === f", got["fence"])
    assert bob.js("() => client.state.holder.user") == {"id": "alice", "name": "Alice"}
    refused = bob.call("acquire")
    assert refused["acquired"] is False
    assert refused["holder"]["user"] == {"id": "alice", "name": "Alice"}
    assert bob.js("() => [client.holding, client.canEdit]") == [False, False]
    assert [e["detail"]["holder"]["user"]["id"] for e in bob.events("busy")] == ["alice"]

    # release: Bob hears it and may now acquire, with a higher fence
    assert alice.call("release") == {"released": True, "reason": "released"}
    assert alice.js("() => [client.holding, client.canEdit]") == [False, False]
    bob.wait("() => client.state.holder === null")
    second = bob.call("acquire")
    assert second["acquired"] is True and second["fence"] > got["fence"]
    alice.wait("() => client.state.holder && client.state.holder.user.id === 'bob'")
    assert console.errors() == []


def test_takeover_reaches_the_old_holder_as_released_taken_over(
    servers: Cluster, new_tab: NewTab, console: ConsoleLog
) -> None:
    server = servers.server("a")
    alice, bob = new_tab("alice", server.http_url), new_tab("bob", server.http_url)
    alice.start("alice", "Alice", "doc-takeover")
    bob.start("bob", "Bob", "doc-takeover")
    first = alice.call("acquire")
    assert first["acquired"] is True

    taken = bob.call("takeover")
    taken_at = bob.events("acquired")[-1]["at"]
    assert taken["acquired"] is True and taken["fence"] > first["fence"]
    assert bob.js("() => [client.holding, client.canEdit]") == [True, True]

    alice.wait("() => events.some((e) => e.type === 'released')")
    released = alice.events("released")
    assert [e["detail"]["reason"] for e in released] == ["taken_over"]
    assert released[0]["detail"]["by"] == {"id": "bob", "name": "Bob"}
    assert released[0]["at"] - taken_at < 1000, "the old holder must hear of the takeover within 1 s"
    assert alice.js("() => [client.holding, client.canEdit]") == [False, False]
    assert [e["detail"] for e in alice.events("canedit")] == [{"canEdit": True}, {"canEdit": False}]
    alice.wait("(f) => client.state.holder && client.state.holder.fence === f", taken["fence"])
    assert alice.js("() => client.state.holder.user.id") == "bob"
    # the old holder cannot simply carry on: its acquire is now busy
    assert alice.call("acquire")["acquired"] is False
    assert console.errors() == []


def test_server_killed_can_edit_turns_false_by_the_lease_deadline(
    servers: Cluster, redis_server: RedisServer, prefix: str, new_tab: NewTab, console: ConsoleLog
) -> None:
    # FAST timings: heartbeat 300 ms, lease TTL 1500 ms
    server = servers.server("a")
    alice = new_tab("alice", server.http_url)
    alice.start("alice", "Alice", "doc-deadline")
    assert alice.call("acquire")["acquired"] is True
    assert alice.js("() => client.canEdit") is True

    server.kill()  # SIGKILL: no close frame, no release, no more renewals
    killed_at = time.time() * 1000
    ttl_left = redis_server.client().pttl(lease_key(prefix, "doc-deadline"))
    assert ttl_left > 0, "the lease must still be alive in Redis right after the kill"
    expires_at = killed_at + ttl_left  # no later than the lease's real expiry in Redis
    now, remaining = alice.js("() => [Date.now(), client.leaseRemainingMs]")
    assert remaining > 0
    client_deadline = now + remaining
    assert client_deadline <= expires_at, (
        f"the client's deadline falls {client_deadline - expires_at:.0f} ms after the lease can expire in Redis"
    )

    alice.wait("() => !client.canEdit", timeout_s=5)
    flipped = [e for e in alice.events("canedit") if e["detail"] == {"canEdit": False}]
    assert len(flipped) == 1, "one canedit event, fired by the deadline timer"
    assert client_deadline - 50 <= flipped[0]["at"] <= client_deadline + 500, (flipped[0]["at"], client_deadline)
    # the client learned it from its own deadline, not from the server: it still believes it holds
    assert alice.js("() => [client.holding, client.connected, client.leaseRemainingMs]") == [True, False, 0]
    assert alice.events("released") == []
    assert console.errors(allow=SERVER_DOWN_NOISE) == []


def test_server_restart_client_reconnects_and_rejoins_its_lease(
    servers: Cluster, redis_server: RedisServer, prefix: str, new_tab: NewTab, console: ConsoleLog
) -> None:
    # a TTL long enough for the lease to outlive the restart plus the client's reconnect backoff
    server = servers.server(
        "a", PRESENCE_HEARTBEAT_MS="1000", PRESENCE_DEAD_AFTER_MS="3000", PRESENCE_LEASE_TTL_MS="12000",
        PRESENCE_GRACE_MS="2000",
    )
    alice, bob = new_tab("alice", server.http_url), new_tab("bob", server.http_url)
    alice.start("alice", "Alice", "doc-restart")
    bob.start("bob", "Bob", "doc-restart")
    fence = alice.call("acquire")["fence"]
    bob.wait("(f) => client.state.holder && client.state.holder.fence === f", fence)

    server.kill()
    alice.wait("() => !client.connected")
    bob.wait("() => !client.connected")
    down_at = alice.now_ms()
    server.start()  # same port, same Redis

    alice.wait("() => client.connected && client.canEdit", timeout_s=15)
    # A request of our own after the rejoin: the server answers a tab's messages in order, so the
    # answer to anything the client sent on reconnecting has arrived before this one.
    assert alice.call("acquire") == {"acquired": True, "fence": fence, "rejoined": True}
    rejoined = [e for e in alice.events("acquired") if e["at"] >= down_at]
    assert rejoined, "the client must be told it holds the lease again"
    assert all(e["detail"]["fence"] == fence for e in rejoined)
    assert any(e["detail"]["rejoined"] for e in rejoined)
    # One acquired for the rejoin (the server's, unasked), then the answer to our acquire: no other.
    assert [e["detail"].get("id") is None for e in rejoined] == [True, False], rejoined
    assert alice.js("() => [client.holding, client.fence]") == [True, fence]
    assert alice.events("released") == [], "the lease was never lost"
    assert int(redis_server.client().get(lease_key(prefix, "doc-restart")) or 0) == fence

    # the other user reconnected too and sees the same holder, still with the same fence
    bob.wait("(f) => client.connected && client.state.holder && client.state.holder.fence === f", fence,
             timeout_s=15)
    assert bob.js("() => client.state.holder.user.id") == "alice"
    assert bob.call("acquire")["acquired"] is False
    assert console.errors(allow=SERVER_DOWN_NOISE) == []


def test_reload_keeps_the_tab_id_and_the_lease(servers: Cluster, new_tab: NewTab, console: ConsoleLog) -> None:
    server = servers.server("a", PRESENCE_GRACE_MS="1500")
    alice, bob = new_tab("alice", server.http_url), new_tab("bob", server.http_url)
    tab_id = alice.start("alice", "Alice", "doc-reload")["tab"]
    bob.start("bob", "Bob", "doc-reload")
    fence = alice.call("acquire")["fence"]
    bob.wait("(f) => client.state.holder && client.state.holder.fence === f", fence)

    # a reload fires pagehide (a clean close: the server keeps the lease for the grace period)
    assert alice.start("alice", "Alice", "doc-reload")["tab"] == tab_id
    alice.wait("() => client.holding && client.canEdit")
    acquired = alice.events("acquired")
    assert [(e["detail"]["fence"], e["detail"]["rejoined"]) for e in acquired] == [(fence, True)]
    # Bob never saw the lease change hands
    changes = bob.js("() => events.filter((e) => e.type === 'state' && e.detail.change)"
                     ".map((e) => e.detail.change.kind)")
    assert "released" not in changes and "expired" not in changes
    assert bob.js("() => client.state.holder.fence") == fence
    assert console.errors() == []


def test_closing_the_page_leaves_cleanly_so_the_lease_ends_after_grace_not_ttl(
    servers: Cluster, new_tab: NewTab, console: ConsoleLog
) -> None:
    server = servers.server("a", PRESENCE_LEASE_TTL_MS="8000", PRESENCE_HEARTBEAT_MS="1000",
                            PRESENCE_DEAD_AFTER_MS="3000", PRESENCE_GRACE_MS="500")
    alice, bob = new_tab("alice", server.http_url), new_tab("bob", server.http_url)
    alice.start("alice", "Alice", "doc-close")
    bob.start("bob", "Bob", "doc-close")
    fence = alice.call("acquire")["fence"]
    bob.wait("(f) => client.state.holder && client.state.holder.fence === f", fence)

    closed_at = bob.now_ms()
    alice.page.close()  # pagehide: the socket is closed cleanly (1000), not dropped
    bob.wait("() => client.state.holder === null", timeout_s=6)
    freed = next(e for e in bob.events("state") if e["at"] >= closed_at and e["detail"]["holder"] is None)
    # grace is 500 ms, the TTL 8 s: only a clean close frees it this early
    assert freed["at"] - closed_at < 3000, f"lease ended {freed['at'] - closed_at:.0f} ms after the page closed"
    assert freed["at"] - closed_at >= 400, "the lease is kept for the grace period"
    bob.wait("() => client.state.viewers.map((v) => v.user.id).join() === 'bob'")
    assert bob.call("acquire")["acquired"] is True
    assert console.errors() == []

def open_demo(page: Page, base_url: str, user: str, name: str, workspace: str) -> None:
    page.goto(f"{base_url}/demo?user={user}&name={name}&workspace={workspace}")
    # A locator, not wait_for_function: the page's Content-Security-Policy forbids the eval it needs.
    expect(page.locator("#status")).to_have_attribute("data-status", "open")


def test_demo_page_takeover_story_without_console_errors(
    servers: Cluster, new_page: Callable[[str], Page], console: ConsoleLog
) -> None:
    server = servers.server("a", PRESENCE_LEASE_TTL_MS="6000", PRESENCE_HEARTBEAT_MS="1000",
                            PRESENCE_DEAD_AFTER_MS="3000")
    alice, bob = new_page("alice"), new_page("bob")
    open_demo(alice, server.http_url, "alice", "Alice", "doc-demo")
    open_demo(bob, server.http_url, "bob", "Bob", "doc-demo")
    for page in (alice, bob):
        expect(page.locator("#viewers li")).to_have_count(2)
    expect(alice.locator("#status")).to_have_text("Connected as Alice")
    expect(alice.locator("#viewers")).to_contain_text("Alice (you)")
    expect(alice.locator("#banner")).to_be_hidden()
    expect(alice.locator("#editor")).to_be_disabled()

    # Alice edits
    alice.get_by_role("button", name="Edit", exact=True).click()
    expect(alice.locator("#editor")).to_be_enabled()
    expect(alice.locator("#holder")).to_contain_text("You are editing")
    expect(alice.locator("#countdown")).to_contain_text("Lease")
    alice.locator("#editor").fill("Minutes of the Monday meeting, by Alice.")
    expect_saved(alice, "doc-demo", "Minutes of the Monday meeting, by Alice.")

    # Bob sees who is editing, with the three choices, and cannot type
    expect(bob.locator("#banner")).to_be_visible()
    expect(bob.locator("#banner")).to_contain_text(re.compile(r"Alice is editing since \d{1,2}:\d{2}"))
    for label in ("Take over", "Wait for it", "Open read-only"):
        expect(bob.get_by_role("button", name=label)).to_be_visible()
    expect(bob.locator("#editor")).to_be_disabled()
    expect(bob.locator("#viewers li").filter(has_text="Alice")).to_contain_text("editing")

    # Bob takes over: he may edit now, Alice is told who took over and that her text was saved
    bob.get_by_role("button", name="Take over").click()
    expect(bob.locator("#editor")).to_be_enabled()
    expect(bob.locator("#banner")).to_be_hidden()
    expect(alice.locator("#notice-text")).to_have_text(
        re.compile(r"^Bob took over at \d{1,2}:\d{2}.*, nothing was lost\.$")
    )
    expect(alice.locator("#banner")).to_contain_text("Bob is editing since")
    expect(alice.locator("#editor")).to_be_disabled()
    expect(alice.get_by_role("button", name="Dismiss")).to_be_visible()
    expect(alice.get_by_role("button", name="Take over")).to_be_visible()
    expect(alice.locator("#editor")).to_have_value("Minutes of the Monday meeting, by Alice.")  # the server's copy
    expect(bob.locator("#editor")).to_have_value("Minutes of the Monday meeting, by Alice.")

    # Alice dismisses the notice and chooses to read only: the banner shrinks to a note
    alice.get_by_role("button", name="Dismiss").click()
    expect(alice.locator("#notice")).to_be_hidden()
    expect(alice.locator("#banner")).to_contain_text("Bob is editing since")
    alice.get_by_role("button", name="Open read-only").click()
    expect(alice.locator("#banner")).to_contain_text("Read-only: Bob is editing since")
    expect(alice.get_by_role("button", name="Take over")).to_be_hidden()
    # Bob is done: Alice may edit again
    bob.get_by_role("button", name="Done editing").click()
    expect(alice.locator("#banner")).to_be_hidden()
    expect(alice.locator("#holder")).to_have_text("Nobody is editing.")
    assert console.errors() == []


def test_two_browsers_follow_each_other_by_updates(servers: Cluster, new_tab: NewTab, console: ConsoleLog) -> None:
    """After its welcome, a page hears changes as `update` frames, and the state it rebuilds from
    them is the one a page opened afterwards is given whole."""
    server = servers.server("a")
    alice, bob = new_tab("alice", server.http_url), new_tab("bob", server.http_url)
    frames: list[str] = []
    alice.page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    alice.start("alice", "Alice", "doc-updates")
    bob.start("bob", "Bob", "doc-updates")
    alice.wait("() => client.state.viewers.length === 2")
    bob.js("() => client.status({active: false})")
    alice.wait("() => client.state.viewers.some((v) => v.user.id === 'bob' && !v.active)")
    fence = bob.call("acquire")["fence"]
    alice.wait("(f) => client.state.holder && client.state.holder.fence === f", fence)
    types = [json.loads(f)["type"] for f in frames]
    assert types.count("update") >= 3 and types.count("state") == 0, types  # join, status, acquire
    assert all(json.loads(f)["base"] < json.loads(f)["seq"] for f in frames if '"update"' in f)

    carol = new_tab("carol", server.http_url)
    carol.start("carol", "Carol", "doc-updates")
    snapshot = carol.js("() => client.state")
    alice.wait("(s) => client.state.seq === s", snapshot["seq"])
    mine = alice.js("() => client.state")
    assert {k: v for k, v in mine.items() if k != "change"} == {k: v for k, v in snapshot.items() if k != "change"}
    assert console.errors() == []
