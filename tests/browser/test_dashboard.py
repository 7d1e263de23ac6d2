"""The ops dashboard in real headless Chromium (Debian's /usr/bin/chromium through Playwright,
never a downloaded browser) against a real server process and redis-server."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from conftest import Cluster
from wsclient import Tab

try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
HAVE_BROWSER = async_playwright is not None and CHROMIUM.exists() and shutil.which(str(CHROMIUM)) is not None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not HAVE_BROWSER, reason="needs the playwright package and Debian's /usr/bin/chromium"),
]

ADMIN = "dashboard-admin-token-0123456789"
API_KEY = "dashboard-api-key-0123456789abcdef"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


def watch_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return errors


async def test_dashboard_shows_and_revokes_a_lease(
    servers: Cluster, browser: Browser, tabs: list[Tab]
) -> None:
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN)
    holder = await Tab(a.ws_url, "alice", "team/roadmap").connect()
    viewer = await Tab(a.ws_url, "bob", "team/roadmap").connect()
    other = await Tab(a.ws_url, "carol", "notes-7").connect()
    tabs += [holder, viewer, other]
    fence = (await holder.request("acquire"))["fence"]

    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(a.http_url + "/dashboard")

    # A wrong token is refused and the page says so; the right one opens the dashboard.
    await page.fill("#token", "not-the-token")
    await page.click("#login-submit")
    await page.wait_for_selector("#login-error:not([hidden])")
    assert "refused" in (await page.text_content("#login-error") or "")
    await page.fill("#token", ADMIN)
    await page.click("#login-submit")
    row = page.locator('tr[data-workspace="team/roadmap"]')
    await row.wait_for()
    assert "Alice" in await row.inner_text()
    assert str(fence) in await row.inner_text()
    assert "Bob" in await row.inner_text()
    assert await page.evaluate("sessionStorage.getItem('presence.admin.token')") == ADMIN

    # The countdown moves between frames (interpolated locally, refreshed by the feed).
    # (Locators, not wait_for_function: the page's Content-Security-Policy forbids the eval it needs.)
    left = row.locator(".countdown .left")
    first = await left.inner_text()
    await expect(left).not_to_have_text(first, timeout=3000)
    await page.wait_for_selector('#audit li[data-kind="acquired"]')
    await page.wait_for_selector("#servers tbody tr")
    # One server, one lease so far: said in the singular.
    await expect(page.locator("#totals")).to_contain_text("1 server")
    await expect(page.locator("#totals")).to_contain_text("1 lease")
    await expect(page.locator("#totals")).not_to_contain_text(re.compile(r"\b1 (servers|leases)\b"))

    # Filter by holder name.
    await page.fill("#filter", "alic")
    await expect(page.locator("#workspaces tbody tr")).to_have_count(1)
    await page.fill("#filter", "")
    await page.wait_for_selector('tr[data-workspace="notes-7"]')

    for _ in range(3):  # some activity for the plots (their drawing runs under the console check below)
        await other.request("acquire")
        await other.request("release")

    # Force release with confirmation: the holder's tab is told it was revoked.
    await row.locator("button.release").click()
    await page.wait_for_selector("#confirm[open]")
    assert "Alice" in (await page.text_content("#confirm-text") or "")
    await page.fill("#confirm-reason", "browser test")
    await page.click("#confirm-ok")
    released = await holder.expect("released", timeout=5)
    assert released["reason"] == "revoked"
    await page.wait_for_selector('#audit li[data-kind="revoked"]')
    assert "browser test" in await page.locator('#audit li[data-kind="revoked"]').inner_text()
    await expect(row.locator(".countdown")).to_have_count(0, timeout=3000)
    assert "free" in await row.inner_text()
    await context.close()
    assert errors == [], errors


async def test_dashboard_acts_on_the_workspace_whose_id_has_slashes(
    servers: Cluster, browser: Browser, tabs: list[Tab]
) -> None:
    """Details, Close tab and Force release on a row whose id holds `/`: each request names the
    id as one encoded path segment (so no browser can resolve a `..` in it), acts on that
    workspace only, and the page runs under its Content-Security-Policy without a violation."""
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN)
    ws, neighbour = "team-1/specs/doc", "team-1/specs"
    holder = await Tab(a.ws_url, "alice", ws).connect()
    viewer = await Tab(a.ws_url, "bob", ws).connect()
    other = await Tab(a.ws_url, "carol", neighbour).connect()
    tabs += [holder, viewer, other]
    fence = (await holder.request("acquire"))["fence"]
    other_fence = (await other.request("acquire"))["fence"]
    viewer_conn = viewer.welcome["conn"] if viewer.welcome else ""

    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    await context.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective));"
    )
    page = await context.new_page()
    errors = watch_errors(page)
    api_urls: list[str] = []
    page.on("request", lambda r: api_urls.append(r.url) if "/admin/api/workspaces/" in r.url else None)
    await page.goto(a.http_url + "/dashboard")
    await page.fill("#token", ADMIN)
    await page.click("#login-submit")
    row = page.locator(f'tr[data-workspace="{ws}"]')
    await row.wait_for()

    # Details: the tabs of this workspace, not of its neighbour.
    await row.locator("a").click()
    await page.wait_for_selector("#detail[open]")
    detail = page.locator("#detail-tabs tbody")
    await expect(detail.locator("tr")).to_have_count(2)
    assert "Alice" in await detail.inner_text() and "Bob" in await detail.inner_text()
    assert "Carol" not in await detail.inner_text()

    # Close Bob's tab: his connection, and no other, is closed by the operator.
    await detail.locator("tr", has_text=viewer_conn).locator("button").click()
    assert await viewer.closed(timeout=5) == 4000
    await page.click("#detail button[value=close]")

    # Force release: Alice's lease is revoked, Carol's (the neighbour's) is not.
    await row.locator("button.release").click()
    await page.wait_for_selector("#confirm[open]")
    await page.click("#confirm-ok")
    released = await holder.expect("released", timeout=5)
    assert released["reason"] == "revoked"
    await page.wait_for_selector(f'#audit li[data-kind="revoked"]:has-text("{ws}")')
    assert not other.of("released") and other.state()["holder"]["fence"] == other_fence
    assert (await other.request("acquire"))["type"] == "acquired"  # still hers
    assert fence != other_fence

    encoded = "team-1%2Fspecs%2Fdoc"
    paths = [u.split("/admin/api/workspaces/", 1)[1] for u in api_urls]
    assert paths and all(p.startswith(encoded) for p in paths), paths
    assert {p.split("?")[0] for p in paths} >= {encoded, f"{encoded}/release", f"{encoded}/tabs/{viewer_conn}/close"}
    # The audit panel can list the forced changes alone (a stream of their own on the server).
    await page.click("#forced-only")
    await expect(page.locator("#audit li")).to_have_count(1)
    assert await page.locator("#audit li").get_attribute("data-kind") == "revoked"
    assert await page.evaluate("window.cspViolations") == []
    await context.close()
    assert errors == [], errors


async def test_dashboard_marks_a_service_holder_until_the_service_releases(
    servers: Cluster, browser: Browser, tabs: list[Tab]
) -> None:
    """A backend job holding a lease through the HTTP service-lease API is marked as a service in
    its workspace's holder cell (a person holding another workspace is not), and the mark goes
    when the job releases: the row stays (a viewer keeps the workspace active) and shows it free."""
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN, PRESENCE_API_KEY=API_KEY)
    viewer = await Tab(a.ws_url, "bob", "reports-q3").connect()
    person = await Tab(a.ws_url, "alice", "notes-9").connect()
    tabs += [viewer, person]
    await person.request("acquire")
    url = "/api/v1/workspaces/reports-q3/lease"
    async with httpx.AsyncClient(base_url=a.http_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        taken = await http.post(url, json={"holder": {"id": "import", "name": "Nightly import"}, "ttl_ms": 60000})
        assert taken.status_code == 201, taken.text
        fence = taken.json()["fence"]

        context = await browser.new_context(viewport={"width": 1360, "height": 900})
        page = await context.new_page()
        errors = watch_errors(page)
        await page.goto(a.http_url + "/dashboard")
        await page.fill("#token", ADMIN)
        await page.click("#login-submit")
        row = page.locator('tr[data-workspace="reports-q3"]')
        holder = row.locator("td").nth(1)
        await expect(holder).to_have_text("⚙ Nightly import (svc:import) · service")
        await expect(row.locator("td").nth(2)).to_have_text(str(fence))
        people = page.locator('tr[data-workspace="notes-9"] td').nth(1)
        await expect(people).to_contain_text("alice")
        await expect(people).not_to_contain_text("service")
        assert "⚙" not in await people.inner_text()

        released = await http.delete(url, params={"fence": fence})
        assert released.status_code == 204
        await expect(holder).to_have_text("free")
        await expect(row.locator(".countdown")).to_have_count(0)
        assert "service" not in await row.inner_text() and "⚙" not in await row.inner_text()
        await context.close()
    assert errors == [], errors


async def test_dashboard_lists_named_locks_and_force_releases_one(
    servers: Cluster, browser: Browser, tabs: list[Tab]
) -> None:
    """A workspace's named locks: counted in its row, listed in its detail with holder and fence,
    and force-released one by one; the workspace's own lease and the other lock stay."""
    a = await servers.server_async("a", PRESENCE_ADMIN_TOKEN=ADMIN)
    alice = await Tab(a.ws_url, "alice", "board-9").connect()
    bob = await Tab(a.ws_url, "bob", "board-9").connect()
    tabs += [alice, bob]
    title = (await alice.request("acquire", lock="title"))["fence"]
    await bob.request("acquire", lock="card-31")
    own = (await bob.request("acquire"))["fence"]

    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(a.http_url + "/dashboard")
    await page.fill("#token", ADMIN)
    await page.click("#login-submit")
    row = page.locator('tr[data-workspace="board-9"]')
    await expect(row).to_contain_text("2 named locks")
    await row.locator("a").click()
    await page.wait_for_selector("#detail[open]")
    locks = page.locator("#detail-locks tbody tr")
    await expect(locks).to_have_count(2)
    title_row = page.locator('#detail-locks tr[data-lock="title"]')
    assert "Alice" in await title_row.inner_text() and str(title) in await title_row.inner_text()
    await title_row.locator("button.release").click()
    await page.wait_for_selector("#confirm[open]")
    assert "title" in (await page.text_content("#confirm-text") or "")
    await page.click("#confirm-ok")
    released = await alice.expect("released", lambda m: m.get("lock") == "title", timeout=5)
    assert released["reason"] == "revoked"
    await expect(locks).to_have_count(1)  # the detail is read again
    assert bob.of("released") == []  # bob's lock and bob's lease stay
    await page.click("#detail button[value=close]")
    await expect(row).to_contain_text("1 named lock")
    assert str(own) in await row.inner_text()
    await context.close()
    assert errors == [], errors
