"""The bundled browser files: all there, and served with the right types and cache headers (the
wheel that ships them: tests/system/test_wheel.py)."""

from __future__ import annotations

import pytest
from paths import ROOT, STATIC_FILES
from starlette.testclient import TestClient

from presence.http.app import create_app, static_dir
from presence.settings import Settings

# What only the npm package ships besides them.
NPM_ONLY = ["README.md", "LICENSE"]


@pytest.fixture
def client() -> TestClient:
    # no lifespan (no `with`): static files need neither Redis nor the hub running
    return TestClient(create_app(Settings()))


def test_static_dir_of_the_source_tree_has_every_file() -> None:
    assert static_dir() == ROOT / "static"
    for name in STATIC_FILES:
        assert (static_dir() / name).is_file(), name
    # and nothing else: a new file belongs in one list or the other (and in package-data, when it is served)
    assert sorted(p.name for p in static_dir().iterdir() if p.suffix != ".tgz") == sorted(STATIC_FILES + NPM_ONLY)


def test_presence_js_is_served_as_javascript_with_cache_headers(client: TestClient) -> None:
    r = client.get("/static/presence.js")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    cache = r.headers["cache-control"]
    assert "max-age=" in cache and "must-revalidate" in cache
    assert "export class PresenceClient" in r.text
    assert r.content == (ROOT / "static" / "presence.js").read_bytes()
    # revalidation: an unchanged file costs a 304 and no body
    etag = r.headers["etag"]
    again = client.get("/static/presence.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(("path", "ctype"), [
    ("/static/demo.js", ("text/javascript", "application/javascript")),
    ("/static/demo.css", ("text/css",)),
    ("/static/demo.html", ("text/html",)),
    ("/static/dashboard.js", ("text/javascript", "application/javascript")),
    ("/static/dashboard.css", ("text/css",)),
    ("/static/dashboard.html", ("text/html",)),
])
def test_demo_assets_are_served_with_their_types(client: TestClient, path: str, ctype: tuple[str, ...]) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] in ctype
    assert "max-age=" in r.headers["cache-control"]


def test_demo_page_is_html_and_not_cached_in_dev_mode(client: TestClient) -> None:
    r = client.get("/demo")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert 'src="/static/demo.js"' in r.text


@pytest.mark.parametrize(("path", "script"), [
    ("/demo/form", "/static/demo-form.js"), ("/demo/list", "/static/demo-list.js"),
])
def test_the_other_demo_pages_are_served_in_dev_mode(client: TestClient, path: str, script: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert f'src="{script}"' in r.text
    assert f'href="{path}"' in client.get("/").text  # the start page links it


def test_demo_is_not_served_outside_dev_mode() -> None:
    app_client = TestClient(create_app(Settings(secret="s" * 40)))
    assert app_client.get("/demo").status_code == 404
    assert app_client.get("/demo/form").status_code == 404
    assert app_client.get("/static/presence.js").status_code == 200


def test_presence_fencing_declares_its_public_api() -> None:
    """`__all__` of the typed public module names exactly what it defines for app backends."""
    import presence.fencing as fencing

    defined = {name for name, value in vars(fencing).items()
               if not name.startswith("_") and getattr(value, "__module__", None) == fencing.__name__}
    assert sorted(fencing.__all__) == sorted(defined)
    assert {"FenceGuard", "HttpFenceGuard", "ServiceLease", "StaleFence", "LeaseLost", "LeaseBusy"} <= defined
