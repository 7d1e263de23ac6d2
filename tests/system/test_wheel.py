"""The wheel as it would be published: it ships the bundled browser files and nothing else but the
package, and the app installed from it, apart from the checkout, serves them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from paths import ROOT, STATIC_FILES


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
