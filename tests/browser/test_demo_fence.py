"""The demo tells the fence story end to end, in headless Chromium with two browser contexts (two
people on two machines): the text lives on the server, both see it, every save carries the fence,
and the one who lost the lease is refused by the server and told why, with her text kept."""

from __future__ import annotations

import re
import time
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
    server_doc,
)
from conftest import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

NewPage = Callable[[str], "Page"]
REFUSED = re.compile(r"status of 409 \(Conflict\) @ http://127\.0\.0\.1:\d+/demo/docs/doc-fence$")


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
    saved = expect_saved(alice, "doc-fence", "Minutes of Monday, by Alice.")
    alice_fence = saved["fence"]
    assert (saved["version"], saved["saved_by"]["name"]) == (1, "Alice")
    expect(alice.locator("#message")).to_have_text("")  # one line says it was saved, not two
    expect(bob.locator("#editor")).to_have_value("Minutes of Monday, by Alice.")
    expect(bob.locator("#editor")).to_be_disabled()
    expect(bob.locator("#saved")).to_have_text(re.compile(rf"^Saved as version 1 by Alice at {TIME}\.$"))

    # She goes on typing; Bob takes over and writes his own version
    alice.locator("#editor").fill("Minutes of Monday, by Alice, with the action items.")
    bob.get_by_role("button", name="Take over").click()
    expect(bob.locator("#editor")).to_be_enabled()
    bob.locator("#editor").fill("Minutes of Monday, rewritten by Bob.")
    bobs = expect_saved(bob, "doc-fence", "Minutes of Monday, rewritten by Bob.")
    bob_fence = bobs["fence"]
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
        f"Not saved: Bob saved a newer version after you (version {bobs['version']}); your text is kept here."
    )
    expect(kept.locator("#kept-text")).to_have_value("Minutes of Monday, by Alice, with the action items.")
    after = server_doc(alice, "doc-fence")
    assert (after["text"], after["fence"], after["saved_by"]["name"]) == (
        "Minutes of Monday, rewritten by Bob.", bob_fence, "Bob")  # the refusal changed nothing
    expect(bob.locator("#editor")).to_have_value("Minutes of Monday, rewritten by Bob.")

    # Discarding it leaves the server's text
    kept.get_by_role("button", name="Discard").click()
    expect(kept).to_be_hidden()
    # Nobody was shown a fence: those are for the programs
    for page, fence in ((alice, alice_fence), (bob, alice_fence), (alice, bob_fence), (bob, bob_fence)):
        expect(page.locator("body")).not_to_contain_text(str(fence))
    # Chromium logs every answer >= 400 as a console error: the refusals (409) are the only ones
    refusals = [(name, text) for name, text in console.errors() if REFUSED.search(text)]
    assert refusals and {name for name, _ in refusals} == {"alice"}
    assert console.errors(allow=REFUSED) == []


def test_the_demo_fetches_the_document_only_while_someone_else_edits_it(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    """Readers follow the holder's saves by asking the server for the document; with nobody editing,
    or when the reader is the editor, they do not ask at all (no access log lines by the second)."""
    server = servers.server("a")
    alice = open_demo(new_page("alice"), server.http_url, "alice", "Alice", "doc-quiet")
    bob = open_demo(new_page("bob"), server.http_url, "bob", "Bob", "doc-quiet")
    fetched: dict[str, list[float]] = {"alice": [], "bob": []}
    for name, page in (("alice", alice), ("bob", bob)):
        page.on("request", lambda r, name=name: fetched[name].append(time.monotonic())
                if r.method == "GET" and "/demo/docs/" in r.url else None)
    bob.wait_for_timeout(3500)  # nobody edits: nothing to follow
    assert fetched == {"alice": [], "bob": []}

    alice.get_by_role("button", name="Edit", exact=True).click()
    expect(alice.locator("#editor")).to_be_enabled()
    alice.locator("#editor").fill("Quiet minutes.")
    expect_saved(alice, "doc-quiet", "Quiet minutes.")
    expect(bob.locator("#editor")).to_have_value("Quiet minutes.")  # he follows her saves
    start = time.monotonic()
    bob.wait_for_timeout(6500)
    bob_since = [t for t in fetched["bob"] if t >= start]
    assert 1 <= len(bob_since) <= 3, bob_since  # every 3 s while she edits, not every second
    assert [t for t in fetched["alice"] if t >= start] == []  # the editor has the text
    assert console.errors() == []
