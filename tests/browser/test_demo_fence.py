"""The demo tells the fence story end to end, in headless Chromium with two browser contexts (two
people on two machines): the text lives on the server, both see it, every save carries the fence,
and the one who lost the lease is refused by the server and told why, with her text kept."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from browser_support import (
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    expect,
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
    open_demo,
)
from conftest import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

NewPage = Callable[[str], "Page"]
TIME = r"\d{1,2}:\d{2}(?:\s?[AP]M)?"
REFUSED = re.compile(r"status of 409 \(Conflict\) @ http://127\.0\.0\.1:\d+/demo/docs/doc-fence$")


def server_doc(page: Page, workspace: str) -> dict[str, Any]:
    doc: dict[str, Any] = page.evaluate("async (ws) => (await fetch(`/demo/docs/${ws}`)).json()", workspace)
    return doc


def test_a_stale_save_is_refused_by_the_server_and_told_why(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    server = servers.server("a")
    alice = open_demo(new_page("alice"), server.http_url, "alice", "Alice", "doc-fence")
    bob = open_demo(new_page("bob"), server.http_url, "bob", "Bob", "doc-fence")

    # Alice edits; her save carries her fence, and Bob's browser shows her text
    alice.get_by_role("button", name="Edit", exact=True).click()
    expect(alice.locator("#editor")).to_be_enabled()
    alice.locator("#editor").fill("Minutes of Monday, by Alice.")
    expect(alice.locator("#message")).to_have_text(re.compile(rf"^Saved at {TIME} with fence \d+\.$"))
    saved = server_doc(alice, "doc-fence")
    alice_fence = saved["fence"]
    assert (saved["text"], saved["saved_by"]["name"]) == ("Minutes of Monday, by Alice.", "Alice")
    by_you = rf"^Last saved by you at {TIME} with fence {alice_fence}\.$"
    expect(alice.locator("#saved")).to_have_text(re.compile(by_you))
    expect(bob.locator("#editor")).to_have_value("Minutes of Monday, by Alice.")
    expect(bob.locator("#editor")).to_be_disabled()
    by_alice = rf"^Last saved by Alice at {TIME} with fence {alice_fence}\.$"
    expect(bob.locator("#saved")).to_have_text(re.compile(by_alice))

    # She goes on typing; Bob takes over and writes his own version
    alice.locator("#editor").fill("Minutes of Monday, by Alice, with the action items.")
    bob.get_by_role("button", name="Take over").click()
    expect(bob.locator("#editor")).to_be_enabled()
    bob.locator("#editor").fill("Minutes of Monday, rewritten by Bob.")
    expect(bob.locator("#message")).to_have_text(re.compile(rf"^Saved at {TIME} with fence \d+\.$"))
    bob_fence = server_doc(bob, "doc-fence")["fence"]
    assert bob_fence > alice_fence

    # Alice was told; her editor shows the server's text (Bob's) and hers is kept apart
    expect(alice.locator("#notice-text")).to_contain_text(re.compile(rf"^Bob took over at {TIME}, "))
    expect(alice.locator("#editor")).to_be_disabled()
    expect(alice.locator("#editor")).to_have_value("Minutes of Monday, rewritten by Bob.")
    kept = alice.get_by_role("region", name="Your text, not saved")
    expect(kept).to_be_visible()
    expect(kept.locator("#kept-text")).to_have_value("Minutes of Monday, by Alice, with the action items.")

    # She tries to save it anyway: the server refuses her fence and says why
    kept.get_by_role("button", name="Try to save it").click()
    expect(kept.locator("#kept-why")).to_have_text(
        f"Not saved: saved by Bob after you (fence {bob_fence} is newer than your {alice_fence}); "
        "your text is kept here."
    )
    expect(kept.locator("#kept-text")).to_have_value("Minutes of Monday, by Alice, with the action items.")
    after = server_doc(alice, "doc-fence")
    assert (after["text"], after["fence"], after["saved_by"]["name"]) == (
        "Minutes of Monday, rewritten by Bob.", bob_fence, "Bob")  # the refusal changed nothing
    expect(bob.locator("#editor")).to_have_value("Minutes of Monday, rewritten by Bob.")

    # Discarding it leaves the server's text
    kept.get_by_role("button", name="Discard").click()
    expect(kept).to_be_hidden()
    # Chromium logs every answer >= 400 as a console error: the refusals (409) are the only ones
    refusals = [(name, text) for name, text in console.errors() if REFUSED.search(text)]
    assert refusals and {name for name, _ in refusals} == {"alice"}
    assert console.errors(allow=REFUSED) == []
