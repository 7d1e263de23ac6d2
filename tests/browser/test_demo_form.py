"""The demo form (/demo/form) in headless Chromium: four fields, each a named lock of its own, and
each viewer's field shown from their presence meta. Each user is a browser context of their own,
against real ``presence serve`` processes on a real redis-server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from browser_support import (
    TIME,
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    expect,
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
)
from servers import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

NewPage = Callable[[str], "Page"]


def open_form(page: Page, base_url: str, user: str, name: str, form: str) -> Page:
    page.goto(f"{base_url}/demo/form?user={user}&name={name}&workspace={form}")
    expect(page.locator("#status")).to_have_attribute("data-status", "open")
    return page


def field(page: Page, name: str) -> Locator:
    return page.locator(f"#field-{name}")


def status(page: Page, name: str) -> Locator:
    return page.locator(f"#status-{name}")


def row(page: Page, name: str) -> Locator:
    return page.locator(f'.field[data-field="{name}"]')


def saved(page: Page, form: str, lock: str) -> dict[str, Any]:
    """A field's value as the page's server keeps it (dev mode's stand-in for an app backend)."""
    doc: dict[str, Any] = page.evaluate(
        "async ([form, lock]) => (await fetch(`/demo/docs/${form}?lock=${lock}`, {cache: 'no-store'})).json()",
        [form, lock],
    )
    return doc


def test_each_field_is_a_lock_of_its_own_and_shows_who_is_in_it(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    server = servers.server("a")  # one process: the demo keeps the values in its memory
    alice = open_form(new_page("alice"), server.http_url, "alice", "Alice", "form-1")
    bob = open_form(new_page("bob"), server.http_url, "bob", "Bob", "form-1")
    expect(field(alice, "title")).not_to_be_editable()  # nobody's yet: focusing it takes it

    # Bob goes into Title: his lock, and everyone sees where he is
    field(bob, "title").click()
    expect(field(bob, "title")).to_be_editable()
    expect(status(bob, "title")).to_have_text("You are editing Title.")
    expect(status(alice, "title")).to_have_text("Bob is editing Title.")
    expect(row(alice, "title")).to_have_attribute("data-state", "theirs")
    expect(row(alice, "title").locator(".here .who")).to_have_text(["Bob"])  # from Bob's presence meta
    expect(alice.locator('#viewers li[data-user="bob"]')).to_contain_text("in Title")
    expect(row(alice, "title").get_by_role("button", name="Take over")).to_be_visible()
    expect(row(alice, "notes").locator(".here .who")).to_have_count(0)

    # Alice clicks into Title too: it stays read-only for her (typing does nothing), and Bob sees her there
    field(alice, "title").click()
    field(alice, "title").press_sequentially("mine")
    expect(field(alice, "title")).to_have_value("")
    expect(field(alice, "title")).not_to_be_editable()
    expect(row(bob, "title").locator(".here .who")).to_have_text(["Alice"])
    expect(bob.locator('#viewers li[data-user="alice"]')).to_contain_text("in Title")

    # ... and edits Notes at the same time as Bob types the title
    field(alice, "notes").click()
    expect(field(alice, "notes")).to_be_editable()
    field(alice, "notes").press_sequentially("Ask Carol")
    field(bob, "title").press_sequentially("Q3 plan")
    expect(status(bob, "notes")).to_have_text("Alice is editing Notes.")
    expect(row(bob, "notes").locator(".here .who")).to_have_text(["Alice"])
    expect(row(bob, "title").locator(".here .who")).to_have_count(0)  # she left Title
    expect(status(bob, "title")).to_have_text("You are editing Title.")
    expect(status(alice, "notes")).to_have_text("You are editing Notes.")

    # Bob is done (Enter saves and frees it): Alice gets his title, and can take the field
    field(bob, "title").press("Enter")
    expect(row(bob, "title")).to_have_attribute("data-state", "free")
    expect(row(alice, "title")).to_have_attribute("data-state", "free")
    expect(status(alice, "title")).to_have_text("")
    expect(field(alice, "title")).to_have_value("Q3 plan")
    field(alice, "title").click()
    expect(field(alice, "title")).to_be_editable()
    field(alice, "title").press("End")
    field(alice, "title").press_sequentially(", by Friday")
    expect(status(bob, "title")).to_have_text("Alice is editing Title.")
    expect(field(bob, "notes")).to_have_value("Ask Carol")  # she left Notes: saved, and freed
    expect(row(bob, "notes")).to_have_attribute("data-state", "free")
    field(alice, "title").press("Enter")
    expect(field(bob, "title")).to_have_value("Q3 plan, by Friday")

    # each value was saved under its own lock, by whoever held it
    title, notes = saved(alice, "form-1", "title"), saved(alice, "form-1", "notes")
    assert (title["text"], title["saved_by"]["id"]) == ("Q3 plan, by Friday", "alice")
    assert (notes["text"], notes["saved_by"]["id"]) == ("Ask Carol", "alice")
    assert title["version"] >= 2  # Bob's save, then Alice's
    assert console.errors() == []


def test_wait_for_a_field_then_take_one_over_across_two_processes(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    a, b = servers.server("a"), servers.server("b")  # a named lock is one lease, whichever process serves you
    alice = open_form(new_page("alice"), a.http_url, "alice", "Alice", "form-2")
    bob = open_form(new_page("bob"), b.http_url, "bob", "Bob", "form-2")
    field(bob, "owner").click()
    expect(field(bob, "owner")).to_be_editable()
    expect(status(alice, "owner")).to_have_text("Bob is editing Owner.")

    # Alice waits in line for Owner
    row(alice, "owner").get_by_role("button", name="Wait for it").click()
    expect(status(alice, "owner")).to_have_text("Bob is editing Owner. You are #1 in line.")
    expect(row(alice, "owner").get_by_role("button", name="Leave the line")).to_be_visible()
    # Bob leaves the field: it goes straight to Alice, focused
    field(bob, "due").click()
    expect(field(alice, "owner")).to_be_editable()
    expect(field(alice, "owner")).to_be_focused()
    expect(row(alice, "owner").locator(".field-notice")).to_have_text("It's yours now: you can edit Owner.")
    expect(status(bob, "owner")).to_have_text("Alice is editing Owner.")
    expect(status(alice, "due")).to_have_text("Bob is editing Due date.")

    # Bob takes Owner back: his now, and Alice is told; his Due date is saved and freed on the way
    field(bob, "owner").click()
    expect(field(bob, "owner")).not_to_be_editable()
    row(bob, "owner").get_by_role("button", name="Take over").click()
    expect(field(bob, "owner")).to_be_editable()
    expect(field(bob, "owner")).to_be_focused()
    expect(row(alice, "owner").locator(".field-notice")).to_have_text(re.compile(rf"^Bob took over Owner at {TIME}\.$"))
    expect(field(alice, "owner")).not_to_be_editable()
    expect(status(alice, "owner")).to_have_text("Bob is editing Owner.")
    expect(row(alice, "due")).to_have_attribute("data-state", "free")
    assert console.errors() == []


def test_a_reload_keeps_the_field_and_its_lock(servers: Cluster, new_page: NewPage, console: ConsoleLog) -> None:
    server = servers.server("a", PRESENCE_GRACE_MS="3000", PRESENCE_LEASE_TTL_MS="4000")  # room for a reload
    alice = open_form(new_page("alice"), server.http_url, "alice", "Alice", "form-3")
    bob = open_form(new_page("bob"), server.http_url, "bob", "Bob", "form-3")
    field(bob, "title").click()
    expect(field(bob, "title")).to_be_editable()  # (keys pressed before the lock is granted do nothing)
    field(bob, "title").press_sequentially("Kept across a reload")
    expect(status(alice, "title")).to_have_text("Bob is editing Title.")
    expect(row(alice, "title").locator(".here .who")).to_have_text(["Bob"])
    fence = row(alice, "title").get_attribute("data-fence")
    assert fence and row(bob, "title").get_attribute("data-fence") == fence
    # Everything Alice's Title says from now on is recorded: the lock must never look free or change hands.
    alice.evaluate("""() => {
        const el = document.getElementById("status-title");
        window.titleSays = [];
        new MutationObserver(() => window.titleSays.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true});
    }""")

    bob.reload()
    expect(bob.locator("#status")).to_have_attribute("data-status", "open")
    expect(field(bob, "title")).to_be_editable()  # rejoined: still his, with the same fence...
    expect(field(bob, "title")).to_be_focused()  # ... and he is back in the field
    expect(row(bob, "title")).to_have_attribute("data-fence", fence)
    expect(field(bob, "title")).to_have_value("Kept across a reload")  # saved as the page went away
    expect(row(alice, "title").locator(".here .who")).to_have_text(["Bob"])  # his meta again, from the new tab
    expect(row(alice, "title")).to_have_attribute("data-fence", fence)
    expect(status(alice, "title")).to_have_text("Bob is editing Title.")
    assert set(alice.evaluate("() => window.titleSays")) <= {"Bob is editing Title."}
    field(bob, "title").press_sequentially(", and more")
    field(bob, "title").press("Enter")
    expect(field(alice, "title")).to_have_value("Kept across a reload, and more")
    assert saved(alice, "form-3", "title")["fence"] == int(fence)
    assert console.errors() == []
