"""The demo's list page (/demo/list), in headless Chromium: twenty documents with live badges from
one LeaseWatcher connection; a badge changes within a second when another browser takes the
document, the list's visitor is nobody's viewer, and after its server restarts the list reconnects
and shows what changed meanwhile."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from browser_support import (
    SERVER_DOWN_NOISE,
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    expect,
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
    open_demo,
)
from servers import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

NewPage = Callable[[str], "Page"]


def test_the_list_page_shows_who_edits_each_document_live(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    a = servers.server("a")
    b = servers.server("b")
    lister = new_page("lister")
    lister.goto(f"{a.http_url}/demo/list?user=lister")
    expect(lister.locator("#status")).to_have_attribute("data-status", "open")
    rows = lister.locator("#docs tr")
    expect(rows).to_have_count(20)
    row = lister.locator('#docs tr[data-workspace="doc-3"]')
    expect(row.locator(".badge")).to_have_text("Free")
    expect(row.locator("a")).to_have_attribute("href", "/demo?workspace=doc-3")

    # Alice opens doc-3 in another browser, on the other process: one person has it open.
    alice = open_demo(new_page("alice"), b.http_url, "alice", "Alice", "doc-3")
    expect(row.locator(".viewers")).to_have_text("1 person", timeout=1000)
    # She takes it: the badge says so within a second.
    alice.get_by_role("button", name="Edit", exact=True).click()
    expect(alice.locator("#editor")).to_be_enabled()
    expect(row.locator(".badge")).to_have_text("Alice is editing", timeout=1000)
    expect(row.locator(".badge")).to_have_attribute("data-state", "held")
    expect(lister.locator('#docs tr[data-workspace="doc-4"] .badge')).to_have_text("Free")
    # The list's visitor is not among the document's viewers.
    expect(alice.locator("#viewers")).to_contain_text("Alice")
    expect(alice.locator("#viewers")).not_to_contain_text(re.compile("lister"))

    # She stops editing: free again.
    alice.get_by_role("button", name="Done editing").click()
    expect(row.locator(".badge")).to_have_text("Free", timeout=1000)

    # The list's server restarts; meanwhile she takes the document again. The list reconnects,
    # watches again, and shows what changed while it was away.
    a.terminate()
    expect(lister.locator("#status")).to_have_attribute("data-status", re.compile("reconnecting|connecting"))
    alice.get_by_role("button", name="Edit", exact=True).click()
    expect(alice.locator("#editor")).to_be_enabled()
    a.start()
    expect(lister.locator("#status")).to_have_attribute("data-status", "open", timeout=20_000)
    expect(row.locator(".badge")).to_have_text("Alice is editing")
    assert console.errors(allow=SERVER_DOWN_NOISE) == []
