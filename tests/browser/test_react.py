"""The React hooks (static/react.js) in headless Chromium, on React from npm, against real
``presence serve`` processes on a real redis-server: under StrictMode (mount, unmount, mount) a
component keeps exactly one live connection and leaks none when it goes; re-renders tear nothing
down; usePresence, useLock and useLeases follow the lease as two users take it in turns.

The page (tests/browser/react_app.jsx) is bundled with React by esbuild, both from the node_modules
that PRESENCE_REACT_MODULES names (.ci/run installs them from npm); no CDN. Without them the tests
are skipped, except under CI, where that is a failure."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browser_support import (
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    expect,
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
)
from conftest import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(120)]

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true")
NewPage = Callable[[str], "Page"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """react_app.jsx with React (a development build: StrictMode's double mount happens only there)."""
    modules = os.environ.get("PRESENCE_REACT_MODULES", "")
    esbuild = Path(modules) / ".bin" / "esbuild"
    if not modules or not esbuild.exists() or not (Path(modules) / "react-dom").is_dir():
        if IN_CI:
            pytest.fail("PRESENCE_REACT_MODULES is missing in CI (.ci/run installs React and esbuild from npm)")
        pytest.skip("React and esbuild from npm are not installed (set PRESENCE_REACT_MODULES)")
    out = tmp_path_factory.mktemp("react") / "app.js"
    built = subprocess.run(
        [str(esbuild), str(HERE / "react_app.jsx"), "--bundle", "--format=esm", "--jsx=automatic",
         "--define:process.env.NODE_ENV=\"development\"", f"--outfile={out}", "--log-level=warning"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": modules},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return out.read_text()


def at_origin(page: Page, base_url: str) -> Page:
    """A plain page of the server's origin (its WebSocket to 127.0.0.1 is then same-origin)."""
    # the page (/healthz) has no <link rel=icon>: answer the browser's favicon request
    page.context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page.goto(base_url + "/healthz")
    return page


def open_app(page: Page, base_url: str, bundle: str, **props: Any) -> Page:
    """Loads the bundle into a page of the server's origin and mounts the app with ``props``."""
    at_origin(page, base_url)
    page.add_script_tag(type="module", content=bundle)
    page.wait_for_function("window.reactReady === true")
    page.evaluate("(props) => window.mount(props)", props)
    return page


def sockets(page: Page) -> dict[str, int]:
    counts: dict[str, int] = page.evaluate("() => window.sockets()")
    return counts


@pytest.mark.parametrize("token", ["function", "string"])
def test_strict_mode_keeps_one_live_connection_and_unmounting_leaks_none(
    servers: Cluster, new_page: NewPage, bundle: str, console: ConsoleLog, token: str
) -> None:
    """With a token function or a string, the first mount's connection is cancelled before it has a
    socket."""
    server = servers.server("a")
    props: dict[str, Any] = {"workspace": "doc-r1", "user": "alice", "name": "Alice", "strict": True}
    alice = new_page("alice")
    if token == "string":
        props["token"] = at_origin(alice, server.http_url).evaluate(
            "async () => (await (await fetch('/demo/token?user=alice&name=Alice')).json()).token")
    alice = open_app(alice, server.http_url, bundle, **props)
    bob = open_app(new_page("bob"), server.http_url, bundle, workspace="doc-r1", user="bob", name="Bob")
    expect(alice.locator("#editor")).to_have_attribute("data-status", "open")
    # StrictMode did its work: the app mounted, unmounted and mounted again ...
    assert alice.evaluate("() => window.mounts") == {"mounted": 2, "unmounted": 1}
    # ... and one connection came of it: the first mount's was cancelled before it had a socket.
    assert sockets(alice) == {"made": 1, "live": 1}
    expect(bob.locator("#viewers")).to_have_text("AliceBob")

    # Re-renders (each with a new inline token function) tear nothing down and ask for no token.
    calls = alice.evaluate("() => window.tokenCalls")
    for _ in range(3):
        alice.evaluate("() => window.rerender()")
    expect(alice.locator("#editor")).to_have_attribute("data-tick", "3")
    assert sockets(alice) == {"made": 1, "live": 1}
    assert alice.evaluate("() => window.tokenCalls") == calls
    expect(alice.locator("#editor")).to_have_attribute("data-status", "open")

    # Unmounting closes the client: no live socket, and the others see Alice leave.
    alice.evaluate("() => window.unmount()")
    alice.wait_for_function("() => window.sockets().live === 0")
    expect(bob.locator("#viewers")).to_have_text("Bob")
    assert sockets(alice)["made"] == 1
    assert console.errors() == []


def test_use_presence_and_use_lock_follow_the_lease(
    servers: Cluster, new_page: NewPage, bundle: str, console: ConsoleLog
) -> None:
    server = servers.server("a")
    alice = open_app(new_page("alice"), server.http_url, bundle, workspace="doc-r2", user="alice", name="Alice")
    expect(alice.locator("#editor")).to_have_attribute("data-status", "open")
    lock_renders = alice.evaluate("() => window.renders.lock")
    bob = open_app(new_page("bob"), server.http_url, bundle, workspace="doc-r2", user="bob", name="Bob",
                   strict=True)
    expect(alice.locator("#viewers")).to_have_text("AliceBob")
    # Bob's arrival re-rendered Alice's editor, not her lock badge: useLock's view did not change.
    assert alice.evaluate("() => window.renders.lock") == lock_renders
    expect(alice.locator("#lock")).to_have_text("free")

    got = alice.evaluate("() => window.lease.acquire()")
    assert got["acquired"] is True
    expect(alice.locator("#lock")).to_have_attribute("data-can-edit", "true")
    expect(alice.locator("#lock")).to_have_attribute("data-fence", str(got["fence"]))
    expect(alice.locator("#editor")).to_have_attribute("data-can-edit", "true")
    assert alice.evaluate("() => window.presence.fence") == got["fence"]
    expect(bob.locator("#holder")).to_have_text("Alice")
    expect(bob.locator("#lock")).to_have_text("Alice holds it")
    expect(bob.locator("#lock")).to_have_attribute("data-can-edit", "false")
    refused = bob.evaluate("() => window.lease.acquire()")
    assert refused["acquired"] is False and refused["holder"]["user"]["id"] == "alice"

    # Bob takes it over: both pages follow, and Alice may no longer edit.
    taken = bob.evaluate("() => window.presence.takeover()")
    assert taken["fence"] > got["fence"]
    expect(alice.locator("#lock")).to_have_attribute("data-can-edit", "false")
    expect(alice.locator("#lock")).to_have_text("Bob holds it")
    expect(alice.locator("#lock")).to_have_attribute("data-fence", "")
    expect(bob.locator("#lock")).to_have_attribute("data-fence", str(taken["fence"]))
    assert bob.evaluate("() => window.lease.release()") == {"released": True, "reason": "released"}
    expect(alice.locator("#holder")).to_have_text("nobody")
    expect(bob.locator("#lock")).to_have_text("free")
    assert sockets(bob)["live"] == 1
    assert console.errors() == []


def test_use_leases_shows_who_edits_each_document_over_one_connection(
    servers: Cluster, new_page: NewPage, bundle: str, console: ConsoleLog
) -> None:
    server = servers.server("a")
    ids = ["doc-l1", "doc-l2", "doc-l3"]
    lister = open_app(new_page("lister"), server.http_url, bundle, list=True, user="lister", workspaces=ids,
                      strict=True)
    for doc in ids:
        expect(lister.locator(f'#list li[data-workspace="{doc}"]')).to_have_text("Free")
    alice = open_app(new_page("alice"), server.http_url, bundle, workspace="doc-l2", user="alice", name="Alice")
    expect(alice.locator("#editor")).to_have_attribute("data-status", "open")
    assert alice.evaluate("() => window.lease.acquire()")["acquired"] is True
    expect(lister.locator('#list li[data-workspace="doc-l2"]')).to_have_text("Alice is editing", timeout=2000)
    expect(lister.locator('#list li[data-workspace="doc-l1"]')).to_have_text("Free")
    assert sockets(lister) == {"made": 1, "live": 1}
    alice.evaluate("() => window.lease.release()")
    expect(lister.locator('#list li[data-workspace="doc-l2"]')).to_have_text("Free", timeout=2000)
    lister.evaluate("() => window.unmount()")
    lister.wait_for_function("() => window.sockets().live === 0")
    assert console.errors() == []
