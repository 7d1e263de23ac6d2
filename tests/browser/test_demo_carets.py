"""The others' carets in the demo editor, in headless Chromium: the editing tab shares its caret and
selection as its presence meta, and every other browser draws them over its copy of the text, where
that character is, in the person's colour and with their name. Two browser contexts against a real
``presence serve`` on a real redis-server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from browser_support import (
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    expect,
    expect_saved,
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
    open_demo,
)
from servers import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

NewPage = Callable[[str], "Page"]

TEXT = "alpha\nbeta\ngamma delta"

# Where line `line`, column `col` of the editor's monospace text is on the page, worked out from the
# textarea's own box and font (not from the page's drawing code): its content box's corner, plus
# whole lines and whole characters.
GRID_JS = """() => {
    const ed = document.getElementById("editor");
    const cs = getComputedStyle(ed);
    const box = ed.getBoundingClientRect();
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
    return {x: box.left + ed.clientLeft + parseFloat(cs.paddingLeft),
            y: box.top + ed.clientTop + parseFloat(cs.paddingTop),
            line: parseFloat(cs.lineHeight), char: ctx.measureText("m").width};
}"""


def expect_caret_at(page: Page, user: str, offset: int, line: int, col: int) -> None:
    """``user``'s caret is drawn in ``page`` at ``offset``, i.e. at (``line``, ``col``) of the text."""
    caret = page.locator(f'#carets .caret[data-user="{user}"]')
    expect(caret).to_have_attribute("data-offset", str(offset))
    grid = page.evaluate(GRID_JS)
    box = caret.bounding_box()
    assert box is not None
    x, top = box["x"] + box["width"] / 2, box["y"]
    want_x, want_top = grid["x"] + col * grid["char"], grid["y"] + line * grid["line"]
    assert abs(x - want_x) <= 1.5 and abs(top - want_top) <= 1.5, (
        f"the caret is at ({x:.1f}, {top:.1f}), line {line} column {col} is at ({want_x:.1f}, {want_top:.1f})"
    )
    assert abs(box["height"] - grid["line"]) <= 1


def test_bob_sees_alices_caret_and_selection_where_they_are(
    servers: Cluster, new_page: NewPage, console: ConsoleLog
) -> None:
    server = servers.server("a")  # one process: the demo keeps the text in its memory
    alice = open_demo(new_page("alice"), server.http_url, "alice", "Alice", "doc-carets")
    bob = open_demo(new_page("bob"), server.http_url, "bob", "Bob", "doc-carets")
    alice.get_by_role("button", name="Edit", exact=True).click()
    editor = alice.locator("#editor")
    expect(editor).to_be_enabled()
    editor.fill(TEXT)
    expect_saved(alice, "doc-carets", TEXT)
    expect(bob.locator("#editor")).to_have_value(TEXT, timeout=10_000)  # Bob follows the saves

    # Typing left the caret at the end: the last line, after "gamma delta"
    expect_caret_at(bob, "alice", len(TEXT), line=2, col=11)
    caret = bob.locator('#carets .caret[data-user="alice"]')
    expect(caret.locator(".caret-name")).to_have_text("Alice")
    # in her colour, the one her name has in the list of viewers
    colour = caret.evaluate("(el) => getComputedStyle(el).backgroundColor")
    dot = bob.locator("#viewers li .who").filter(has_text="Alice")
    assert dot.evaluate("(el) => getComputedStyle(el, '::before').backgroundColor") == colour

    # She moves it by keyboard: Bob sees each place
    editor.press("ArrowUp")  # end of "beta"
    expect_caret_at(bob, "alice", 10, line=1, col=4)
    editor.press("Home")
    expect_caret_at(bob, "alice", 6, line=1, col=0)
    editor.press("Control+Home")
    expect_caret_at(bob, "alice", 0, line=0, col=0)
    # fast moves are sent at most every 50 ms: the last one is what Bob ends with
    for _ in range(3):
        editor.press("ArrowRight")
    expect_caret_at(bob, "alice", 3, line=0, col=3)

    # A selection: "beta", highlighted in Bob's copy, with her caret at its end
    editor.press("ArrowDown")
    editor.press("Home")
    editor.press("Shift+End")
    expect(bob.locator("#carets mark")).to_have_text("beta")
    expect_caret_at(bob, "alice", 10, line=1, col=4)
    # nobody draws their own caret
    expect(alice.locator("#carets .caret")).to_have_count(0)

    # Done editing: she left the editor, and her caret goes away
    alice.get_by_role("button", name="Done editing").click()
    expect(caret).to_have_count(0)
    expect(bob.locator("#carets mark")).to_have_count(0)
    assert console.errors() == []
