"""The demo page's wait queue and polite handoff (issue 7) in headless Chromium: each user is a
browser context of their own, against real ``presence serve`` processes on a real redis-server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from browser_support import (
    TIME,
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    expect,
    expect_saved,
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
    open_demo,
)
from conftest import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

NewPage = Callable[[str], "Page"]


def start_editing(page: Page, workspace: str, text: str) -> None:
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#editor")).to_be_enabled()
    page.locator("#editor").fill(text)
    expect_saved(page, workspace, text)


def saved_fence(page: Page, workspace: str) -> int:
    """The fence of the document's last save, as the page's server keeps it (dev mode's stand-in
    for an app backend, in that process's memory)."""
    return int(page.evaluate("async (ws) => (await (await fetch(`/demo/docs/${ws}`)).json()).fence", workspace))


def ask(page: Page, holder: str, message: str = "") -> None:
    """Bob's "Ask Alice for it": open the form, type an optional message, send."""
    page.get_by_role("button", name=f"Ask {holder} for it").click()
    box = page.get_by_label(f"Message for {holder} (optional)")
    expect(box).to_be_focused()
    box.fill(message)
    page.get_by_role("button", name="Send request").click()


def test_queue_notify_me_when_free_then_its_yours(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    a, b = servers.server("a"), servers.server("b")  # the queue works across server processes
    alice = open_demo(new_page("alice"), a.http_url, "alice", "Alice", "doc-queue")
    bob = open_demo(new_page("bob"), b.http_url, "bob", "Bob", "doc-queue")
    carol = open_demo(new_page("carol"), a.http_url, "carol", "Carol", "doc-queue")
    start_editing(alice, "doc-queue", "Agenda, by Alice.")
    first = saved_fence(alice, "doc-queue")

    # Bob, then Carol: "Wait for it / Notify me when it's free"
    expect(bob.locator("#banner-text")).to_contain_text("Alice is editing since")
    expect(bob.get_by_role("button", name="Wait for it")).to_have_accessible_description("Notify me when it's free")
    bob.get_by_role("button", name="Wait for it").click()
    expect(bob.locator("#queue-position")).to_contain_text("You are #1 in line.")
    expect(bob.locator("#wait")).to_be_disabled()
    expect(carol.locator("#queue")).to_have_text("Bob is waiting for it.")
    carol.get_by_role("button", name="Wait for it").click()
    expect(carol.locator("#queue-position")).to_contain_text("You are #2 in line.")
    # everybody sees the line, in order
    expect(alice.locator("#queue")).to_have_text("Bob and Carol are waiting for it.")
    expect(bob.locator("#queue")).to_have_text("You and Carol are waiting for it.")
    expect(alice.locator("#viewers li").filter(has_text="Carol")).to_contain_text("waiting #2")
    expect(bob.locator("#editor")).to_be_disabled()

    # Alice is done: the lease goes straight to Bob, Carol moves up
    alice.get_by_role("button", name="Done editing").click()
    expect(bob.locator("#editor")).to_be_enabled()
    expect(bob.locator("#notice-text")).to_have_text("It's yours now: Alice is done and you were first in line.")
    expect(bob.locator("#holder")).to_have_text("You are editing.")
    expect(bob.locator("#inuse")).to_be_hidden()
    bob.locator("#editor").fill("Agenda, by Alice. Minutes, by Bob.")
    expect_saved(bob, "doc-queue", "Agenda, by Alice. Minutes, by Bob.")
    assert saved_fence(bob, "doc-queue") > first  # (each server process keeps its own copy: the fence is the grant's)
    expect(carol.locator("#banner-text")).to_contain_text("Bob is editing since")
    expect(carol.locator("#queue-position")).to_contain_text("You are #1 in line.")
    expect(carol.locator("#queue")).to_have_text("You are waiting for it.")
    expect(alice.locator("#queue")).to_have_text("Carol is waiting for it.")
    expect(alice.locator("#editor")).to_be_disabled()

    # Carol leaves the line: nobody is waiting any more, and Bob's "Done" frees the document
    carol.get_by_role("button", name="Leave the line").click()
    expect(carol.locator("#message")).to_have_text("You left the line.")
    expect(carol.locator("#queue-position")).to_be_hidden()
    expect(bob.locator("#queue")).to_be_hidden()
    bob.get_by_role("button", name="Done editing").click()
    expect(carol.locator("#holder")).to_have_text("Nobody is editing.")
    expect(carol.locator("#editor")).to_be_disabled()
    expect(carol.locator("#notice")).to_be_hidden()
    assert console.errors() == []


def test_handoff_accepted_give_it(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    a, b = servers.server("a"), servers.server("b")
    alice = open_demo(new_page("alice"), a.http_url, "alice", "Alice", "doc-give")
    bob = open_demo(new_page("bob"), b.http_url, "bob", "Bob", "doc-give")
    start_editing(alice, "doc-give", "Budget 2025, draft.")
    first = saved_fence(alice, "doc-give")
    expect(alice.locator("#request-prompt")).to_be_hidden()

    ask(bob, "Alice", "Just fixing a typo in the title, two minutes")
    expect(bob.locator("#ask-status")).to_be_visible()
    expect(bob.locator("#ask-status")).to_have_text(re.compile(r"^\s*Waiting for Alice's answer \((2\d|30) s\)\s*$"))
    expect(bob.locator("#ask-form")).to_be_hidden()
    expect(bob.locator("#ask")).to_be_hidden()

    # Alice's prompt: who, the message, a countdown, and the two answers
    prompt = alice.get_by_role("region", name="Bob asks for this document.")
    expect(prompt).to_be_visible()
    expect(prompt.locator("#request-message")).to_have_text("“Just fixing a typo in the title, two minutes”")
    expect(prompt.locator("#request-countdown")).to_have_text(
        re.compile(r"^Bob may take over in (2\d|30) s if you do not answer\.$")
    )
    expect(alice.locator("#viewers li").filter(has_text="Bob")).to_contain_text("asking for it")
    expect(alice.locator("#editor")).to_be_enabled()  # being asked changes nothing by itself

    alice.get_by_role("button", name="Give it").click()
    expect(bob.locator("#editor")).to_be_enabled()
    expect(bob.locator("#notice-text")).to_have_text("It's yours now: Alice handed the document over.")
    expect(bob.locator("#ask-status")).to_be_hidden()
    bob.locator("#editor").fill("Budget 2025, final draft.")
    expect_saved(bob, "doc-give", "Budget 2025, final draft.")
    assert saved_fence(bob, "doc-give") > first
    expect(alice.locator("#request-prompt")).to_be_hidden()
    expect(alice.locator("#editor")).to_be_disabled()
    expect(alice.locator("#message")).to_have_text("You gave the document to Bob.")
    expect(alice.locator("#banner-text")).to_contain_text("Bob is editing since")
    expect(alice.locator("#notice")).to_be_hidden()  # she gave it: no "took over" alarm
    assert console.errors() == []


def test_handoff_declined_keep_it(servers: Cluster, new_page: NewPage, console: ConsoleLog) -> None:
    a = servers.server("a")
    alice = open_demo(new_page("alice"), a.http_url, "alice", "Alice", "doc-keep")
    bob = open_demo(new_page("bob"), a.http_url, "bob", "Bob", "doc-keep")
    start_editing(alice, "doc-keep", "Quarterly report.")

    ask(bob, "Alice")  # no message
    prompt = alice.get_by_role("region", name="Bob asks for this document.")
    expect(prompt).to_be_visible()
    expect(alice.locator("#request-message")).to_be_hidden()
    expect(bob.locator("#ask-status")).to_contain_text("Waiting for Alice's answer")

    alice.get_by_role("button", name="Keep it").click()
    expect(bob.locator("#notice-text")).to_have_text("Alice wants to keep the document for now.")
    expect(bob.locator("#ask-status")).to_be_hidden()
    expect(bob.locator("#editor")).to_be_disabled()
    expect(bob.locator("#banner-text")).to_contain_text("Alice is editing since")
    expect(bob.get_by_role("button", name="Ask Alice for it")).to_be_enabled()  # may ask again later
    expect(prompt).to_be_hidden()
    expect(alice.locator("#message")).to_have_text("You kept the document; Bob was told.")
    expect(alice.locator("#editor")).to_be_enabled()
    alice.locator("#editor").fill("Quarterly report, still Alice's.")
    expect_saved(alice, "doc-keep", "Quarterly report, still Alice's.")
    assert console.errors() == []


def test_handoff_unanswered_becomes_a_takeover(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    a = servers.server("a", PRESENCE_HANDOFF_TIMEOUT_MS="1500", PRESENCE_TAKEOVER_COOLDOWN_MS="20000")
    alice = open_demo(new_page("alice"), a.http_url, "alice", "Alice", "doc-timeout")
    bob = open_demo(new_page("bob"), a.http_url, "bob", "Bob", "doc-timeout")
    start_editing(alice, "doc-timeout", "Release notes.")

    ask(bob, "Alice", "Alice, are you still there?")
    expect(alice.locator("#request-countdown")).to_have_text(
        re.compile(r"^Bob may take over in [12] s if you do not answer\.$")
    )
    expect(bob.locator("#ask-status")).to_have_text(re.compile(r"Waiting for Alice's answer \([12] s\)"))

    # nobody answers: Bob's server takes it over for him after 1.5 s
    expect(bob.locator("#editor")).to_be_enabled(timeout=5000)
    expect(bob.locator("#notice-text")).to_have_text("It's yours now: Alice did not answer in time.")
    expect(alice.locator("#notice-text")).to_have_text(re.compile(
        rf"^Bob took over at {TIME} because you did not answer the request; nothing was lost\.$"
    ))  # her text was saved under her lease
    expect(alice.locator("#request-prompt")).to_be_hidden()
    expect(alice.locator("#editor")).to_be_disabled()
    expect(alice.locator("#editor")).to_have_value("Release notes.")
    expect(alice.locator("#kept")).to_be_hidden()  # nothing to keep apart: it is the server's text

    # taking it straight back is refused by the takeover cooldown, in words
    alice.get_by_role("button", name="Take over").click()
    expect(alice.locator("#action-problem")).to_have_text(re.compile(
        r"^It was taken over moments ago\. To stop takeover wars, try again in \d+ s, or ask Bob for it\.$"
    ))
    expect(alice.locator("#editor")).to_be_disabled()
    expect(bob.locator("#editor")).to_be_enabled()
    assert console.errors() == []
