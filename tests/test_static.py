"""The bundled browser files: served with the right types and cache headers, and shipped in the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from presence.http.app import create_app, static_dir
from presence.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# What the server serves from static/, and package-data ships in the wheel.
STATIC_FILES = [
    "presence.js", "presence.d.ts", "react.js", "react.d.ts", "package.json", "demo.html", "demo.css", "demo.js",
    "dashboard.html", "dashboard.css", "dashboard.js", "demo-list.html", "demo-list.js", "demo-form.html",
    "demo-form.js", "demo-page.js", "demo-carets.js",
]
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


def test_wheel_ships_the_static_files_and_the_installed_app_serves_them(tmp_path: Path) -> None:
    # build from a clean copy, so neither a stale build/ directory nor the checkout is involved
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "presence", src / "presence", ignore=ignore)
    shutil.copytree(ROOT / "static", src / "static", ignore=ignore)
    (src / "LICENSE").write_bytes((ROOT / "LICENSE").read_bytes())
    shutil.copytree(ROOT / "tests", src / "tests", ignore=ignore)
    (src / "static" / "presence-client-0.1.0.tgz").write_bytes(b"a leftover of npm pack")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(dist), "-q"],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("presence-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in STATIC_FILES:
            assert f"presence/static/{name}" in names, sorted(n for n in names if "static" in n)
            assert zf.read(f"presence/static/{name}") == (ROOT / "static" / name).read_bytes()
        assert sorted(n for n in names if n.startswith("presence/static/")) == sorted(
            f"presence/static/{name}" for name in STATIC_FILES
        )
        # PEP 561: type checkers read presence.fencing's annotations from the installed package
        assert "presence/py.typed" in names
        # no tests, no tarball, nothing outside the package but its metadata; the licence in the metadata
        assert [n for n in names if not n.startswith(("presence/", "presence-"))] == []
        assert not any(n.endswith(".tgz") or "/tests/" in n or n.startswith("tests/") for n in names)
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        meta = zf.read(metadata).decode()
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert f"\nVersion: {version}\n" in meta
        for classifier in ("Typing :: Typed", "Programming Language :: Python :: 3.11", "Framework :: AsyncIO"):
            assert f"Classifier: {classifier}\n" in meta, classifier
        assert "Requires-Python: >=3.11" in meta
        assert "License-Expression: MIT" in meta

    # install it apart from the checkout and ask the installed package where its files are
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel), "-q"],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    probe = (
        "import json, presence, presence.http.app as a\n"
        "from starlette.testclient import TestClient\n"
        "from presence.settings import Settings\n"
        "r = TestClient(a.create_app(Settings())).get('/static/presence.js')\n"
        "print(json.dumps({'package': presence.__file__, 'static': str(a.static_dir()),\n"
        "                  'version': presence.__version__,\n"
        "                  'status': r.status_code, 'type': r.headers.get('content-type', ''),\n"
        "                  'cache': r.headers.get('cache-control', ''), 'size': len(r.content)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(target), seen
    static = Path(seen["static"])
    assert static == target / "presence" / "static", seen
    for name in STATIC_FILES:
        assert (static / name).read_bytes() == (ROOT / "static" / name).read_bytes(), name
    assert seen["status"] == 200, seen
    assert seen["version"] == version, seen  # importlib.metadata reads the installed wheel's
    assert seen["type"].startswith("text/javascript"), seen
    assert "max-age=" in seen["cache"], seen
    assert seen["size"] == (ROOT / "static" / "presence.js").stat().st_size


def test_presence_fencing_declares_its_public_api() -> None:
    """`__all__` of the typed public module names exactly what it defines for app backends."""
    import presence.fencing as fencing

    defined = {name for name, value in vars(fencing).items()
               if not name.startswith("_") and getattr(value, "__module__", None) == fencing.__name__}
    assert sorted(fencing.__all__) == sorted(defined)
    assert {"FenceGuard", "HttpFenceGuard", "ServiceLease", "StaleFence", "LeaseLost", "LeaseBusy"} <= defined
