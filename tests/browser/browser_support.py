"""Helpers of the browser tests: Debian's headless Chromium driven by Playwright (sync API).

This is deliberately not a ``conftest.py``: a second conftest module would shadow the suite's
``from conftest import ...``.

Never a downloaded browser: Chromium is launched from ``/usr/bin/chromium``; without it (or
without the ``playwright`` package) every browser test is skipped.

Each user gets a browser *context* of their own (separate cookies, localStorage and
sessionStorage: two people on two machines). Console errors and uncaught page errors of every
page are collected so a test can assert there were none.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

try:
    from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it; the tests are skipped without it
    sync_playwright = expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

__all__ = [
    "CHROMIUM", "CHROMIUM_ARGS", "HARNESS_JS", "HARNESS_PATH", "HAVE_BROWSER", "SERVER_DOWN_NOISE", "TIME",
    "BrowserTab", "ConsoleLog", "browser_fixture", "console_fixture", "expect", "expect_saved", "needs_browser",
    "new_page_fixture", "open_demo", "server_doc", "sync_playwright",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
HAVE_BROWSER = sync_playwright is not None and CHROMIUM.exists() and shutil.which(str(CHROMIUM)) is not None

needs_browser = pytest.mark.skipif(
    not HAVE_BROWSER, reason="needs the playwright package and Debian's /usr/bin/chromium"
)

# Noise a browser logs, as console errors, while a test has deliberately stopped the server.
SERVER_DOWN_NOISE = re.compile(
    r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed"
    r"|net::ERR_CONNECTION_REFUSED|net::ERR_CONNECTION_RESET|net::ERR_EMPTY_RESPONSE"
)

# The harness runs in a plain page of the server's own origin (``/healthz``): a page fulfilled by a
# Playwright route would count as a public address and Chromium's local network access checks would
# then block its WebSocket to 127.0.0.1. It loads the real client and records every event.
HARNESS_PATH = "/healthz"
HARNESS_JS = """
import { PresenceClient } from "/static/presence.js";
const EVENTS = ["state", "acquired", "busy", "queued", "released", "error", "connection", "canedit"];
/** Rejects when `promise` takes longer than `ms`, so a hung request fails the test quickly. */
window.within = (promise, ms, what) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)),
]);
window.events = [];
window.start = async ({ user, name, workspace }) => {
  const token = async () => {
    const q = new URLSearchParams({ user, name });
    const res = await fetch(`/demo/token?${q}`, { cache: "no-store" });
    if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
    return (await res.json()).token;
  };
  const client = new PresenceClient({ workspace, token });
  for (const type of EVENTS) {
    client.addEventListener(type, (e) => window.events.push({ type, detail: e.detail, at: Date.now() }));
  }
  window.client = client;
  const welcome = await within(client.connect(), 5000, "connect");
  return { user: welcome.user, tab: client.tabId };
};
window.harnessReady = true;
"""


@dataclass
class ConsoleLog:
    """Console errors and page errors of every page opened by the test."""

    entries: list[tuple[str, str]] = field(default_factory=list)  # (page name, text)

    def watch(self, page: Page, name: str) -> None:
        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.entries.append((name, f"console: {msg.text} @ {msg.location.get('url', '')}"))

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.entries.append((name, f"pageerror: {exc}")))

    def errors(self, allow: re.Pattern[str] | None = None) -> list[tuple[str, str]]:
        return [(n, t) for n, t in self.entries if allow is None or not allow.search(t)]


class BrowserTab:
    """One user's page driving the real ``presence.js`` through :data:`HARNESS_HTML`."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url

    def start(self, user: str, name: str, workspace: str) -> dict[str, Any]:
        """(Re)loads the harness page and connects a client; returns ``{user, tab}``."""
        self.page.goto(self.base_url + HARNESS_PATH)
        self.page.add_script_tag(type="module", content=HARNESS_JS)
        self.page.wait_for_function("window.harnessReady === true")
        result: dict[str, Any] = self.page.evaluate("(o) => window.start(o)", {
            "user": user, "name": name, "workspace": workspace,
        })
        return result

    def js(self, expression: str, arg: Any = None) -> Any:
        """Evaluates ``expression`` (a function of ``arg`` or a plain expression) in the page."""
        return self.page.evaluate(expression, arg)

    def call(self, method: str, timeout_s: float = 5.0) -> Any:
        """``await client[method]()`` in the page, failing after ``timeout_s``."""
        return self.page.evaluate(
            "([m, ms]) => within(client[m](), ms, m)", [method, timeout_s * 1000]
        )

    def wait(self, predicate: str, arg: Any = None, timeout_s: float = 5.0) -> None:
        """Waits until the JS ``predicate`` is truthy (polled every 20 ms)."""
        self.page.wait_for_function(predicate, arg=arg, timeout=timeout_s * 1000, polling=20)

    def events(self, *types: str) -> list[dict[str, Any]]:
        evs: list[dict[str, Any]] = self.page.evaluate("() => window.events")
        return [e for e in evs if not types or e["type"] in types]

    def now_ms(self) -> float:
        return float(self.page.evaluate("() => Date.now()"))


# -- fixtures a test module can import (``from browser_support import browser_fixture, ...``) --------


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[Browser]:
    """Debian's Chromium, headless, closed after the test."""
    if not HAVE_BROWSER:
        pytest.skip("needs the playwright package and Debian's /usr/bin/chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(name="console")
def console_fixture() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture(name="new_page")
def new_page_fixture(browser: Browser, console: ConsoleLog) -> Iterator[Callable[[str], Page]]:
    """``new_page(name)``: a page in a fresh browser context (one per user), watched for errors."""
    contexts: list[BrowserContext] = []

    def make(name: str) -> Page:
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        console.watch(page, name)
        return page

    yield make
    for context in contexts:
        context.close()


# A time of day as the demo shows it (the browser's locale: 14:05, or 2:05 PM).
TIME = r"\d{1,2}:\d{2}(?:\s?[AP]M)?"


def server_doc(page: Page, workspace: str) -> dict[str, Any]:
    """The demo document as the page's server keeps it (dev mode's stand-in for an app backend)."""
    doc: dict[str, Any] = page.evaluate("async (ws) => (await fetch(`/demo/docs/${ws}`)).json()", workspace)
    return doc


def expect_saved(page: Page, workspace: str, text: str) -> dict[str, Any]:
    """Waits until the page's server has ``text`` saved and the page's one saved line says it was
    this page's user, as which version (never a fence: that is for programs). Returns the document."""
    deadline = time.monotonic() + 10
    while (doc := server_doc(page, workspace))["text"] != text:
        assert time.monotonic() < deadline, f"{text!r} was not saved: the server has {doc!r}"
        page.wait_for_timeout(50)
    saved = rf"^Saved as version {doc['version']} by you at {TIME}\.$"
    expect(page.locator("#saved")).to_have_text(re.compile(saved))
    return doc


def open_demo(page: Page, base_url: str, user: str, name: str, workspace: str) -> Page:
    """Opens ``/demo`` as ``user`` on ``workspace`` and waits until it is connected."""
    page.goto(f"{base_url}/demo?user={user}&name={name}&workspace={workspace}")
    # A locator, not wait_for_function: the page's Content-Security-Policy forbids the eval it needs.
    expect(page.locator("#status")).to_have_attribute("data-status", "open")
    return page
