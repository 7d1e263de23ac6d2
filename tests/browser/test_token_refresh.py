"""The real ``static/presence.js`` in headless Chromium keeps a connection whose tokens live two or
three seconds: before each runs out it calls its token function again and sends ``refresh``, so
the server never closes it (4401) and it never reconnects, keeping its lease and fence."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jwt
import pytest
from browser_support import (
    HARNESS_PATH,
    ConsoleLog,
    browser_fixture,  # noqa: F401 - fixture
    console_fixture,  # noqa: F401 - fixture
    needs_browser,
    new_page_fixture,  # noqa: F401 - fixture
)
from servers import Cluster
from wsclient import token

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, needs_browser, pytest.mark.timeout(90)]

TOKEN_S = 3  # each token's lifetime (exp is whole seconds: 2 to 3 s from when it is minted)

# The client's token function asks the test for a token (``window.mintToken``, exposed below).
HARNESS = """
import { PresenceClient } from "/static/presence.js";
window.events = [];
window.refreshes = 0;
const token = (info) => {
  if (info.refresh) window.refreshes++;
  return window.mintToken(info.refresh);
};
const client = new PresenceClient({ workspace: "refresh-doc", token });
for (const type of ["connection", "error", "released"]) {
  client.addEventListener(type, (e) => window.events.push({ type, detail: e.detail }));
}
window.client = client;
window.welcome = await client.connect();
window.ready = true;
"""


def test_the_client_refreshes_its_token_without_reconnecting(
    servers: Cluster, new_page: Callable[[str], Page], console: ConsoleLog
) -> None:
    server = servers.server("a", PRESENCE_TOKEN_LEEWAY_MS="500")
    minted: list[tuple[bool, str]] = []

    def mint(refresh: bool) -> str:
        minted.append((refresh, token("rena", ttl_s=TOKEN_S)))
        return minted[-1][1]

    page = new_page("rena")
    page.context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page.expose_function("mintToken", mint)
    page.goto(server.http_url + HARNESS_PATH)
    page.add_script_tag(type="module", content=HARNESS)
    page.wait_for_function("window.ready === true")
    assert 0 < page.evaluate("() => window.welcome.expires_in_ms") <= TOKEN_S * 1000
    fence = page.evaluate("async () => (await client.acquire()).fence")
    # Two refreshes, and a second past the first token's exp and leeway: the server would have
    # closed the connection by then had it not taken the new tokens.
    first_exp = jwt.decode(minted[0][1], options={"verify_signature": False})["exp"]
    page.wait_for_function("() => window.refreshes >= 2", timeout=15_000)
    page.wait_for_function("(t) => Date.now() > t", arg=(first_exp + 1.5) * 1000, timeout=15_000)
    assert [refresh for refresh, _ in minted][:3] == [False, True, True]
    events = page.evaluate("() => window.events.map((e) => e.type + ':' + (e.detail.status || e.detail.code))")
    assert events == ["connection:connecting", "connection:open"]  # no close, no reconnect, no error
    assert page.evaluate("() => [client.connected, client.holding, client.canEdit, client.fence]") == [
        True, True, True, fence
    ]
    log = server.log_path.read_text(errors="replace")
    assert "token expired" not in log and log.count("rena@refresh-doc> joined") == 1
    assert console.errors() == []
