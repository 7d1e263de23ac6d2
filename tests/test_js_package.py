"""The JS client as an npm package: `npm pack static/` works, the tarball installs and imports, its
TypeScript declarations match presence.js and type-check a TypeScript app that uses the whole API
under `tsc --strict`, and its version is the Python package's.

npm and tsc come from the machine (CI installs both: `.ci/run` puts typescript from npm in a
directory of its own and names its tsc in PRESENCE_TSC). Without them the tests are skipped, except
under CI, where a missing tool is a failure rather than a silent skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"
EXAMPLE = ROOT / "examples" / "typescript"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true")


def tool(name: str, path: str | None) -> str:
    found = path or shutil.which(name)
    if found is None or not Path(found).exists():
        if IN_CI:
            pytest.fail(f"{name} is missing in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return found


def js_exports(source: str) -> set[str]:
    return set(re.findall(r"^export (?:const|function|class|async function) (\w+)", source, re.M))


def dts_exports(source: str) -> set[str]:
    return set(re.findall(r"^export declare (?:const|function|class) (\w+)", source, re.M))


def test_package_version_is_the_python_package_version() -> None:
    package = json.loads((STATIC / "package.json").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert package["version"] == pyproject["version"]
    assert package["license"] == pyproject["license"]["text"]


def test_package_json_is_an_es_module_with_exports_and_types() -> None:
    package = json.loads((STATIC / "package.json").read_text())
    assert package["type"] == "module"
    assert package["types"] == "./presence.d.ts" and package["main"] == "./presence.js"
    assert package["exports"]["."] == {"types": "./presence.d.ts", "default": "./presence.js"}
    assert package["files"] == ["presence.js", "presence.d.ts"]  # not the demo nor the dashboard


def test_declarations_declare_exactly_what_presence_js_exports() -> None:
    js = js_exports((STATIC / "presence.js").read_text())
    assert {"PresenceClient", "PresenceError", "backoffDelay"} <= js
    assert dts_exports((STATIC / "presence.d.ts").read_text()) == js


def test_declarations_have_no_any() -> None:
    code = "\n".join(
        line.split("//", 1)[0] for line in (STATIC / "presence.d.ts").read_text().splitlines()
        if not line.lstrip().startswith(("*", "/**"))
    )
    assert re.search(r"\bany\b", code) is None


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = tool("npm", None)
    out = tmp_path_factory.mktemp("pack")
    packed = subprocess.run([npm, "pack", str(STATIC), "--pack-destination", str(out), "--json"],
                            capture_output=True, text=True, timeout=120, cwd=out)
    assert packed.returncode == 0, packed.stderr[-3000:]
    (info,) = json.loads(packed.stdout)
    return out / info["filename"]


def test_npm_pack_ships_the_client_and_its_types(tarball: Path) -> None:
    version = json.loads((STATIC / "package.json").read_text())["version"]
    assert tarball.name == f"presence-client-{version}.tgz"
    with tarfile.open(tarball) as tar:
        names = sorted(tar.getnames())
        assert names == ["package/package.json", "package/presence.d.ts", "package/presence.js"]
        js = tar.extractfile("package/presence.js")
        assert js is not None and js.read() == (STATIC / "presence.js").read_bytes()


@pytest.fixture(scope="module")
def app_dir(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example app in a project of its own, with the tarball installed as a dependency."""
    npm = tool("npm", None)
    app = tmp_path_factory.mktemp("app")
    for name in ("app.ts", "tsconfig.json"):
        shutil.copy2(EXAMPLE / name, app / name)
    (app / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
    installed = subprocess.run(
        [npm, "install", "--offline", "--no-audit", "--no-fund", "--no-package-lock", str(tarball)],
        capture_output=True, text=True, timeout=120, cwd=app,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return app


def test_the_installed_package_imports_by_its_name(app_dir: Path) -> None:
    node = tool("node", None)
    probe = ("import * as m from 'presence-client'; import pkg from 'presence-client/package.json' with "
             "{type: 'json'}; console.log(JSON.stringify({names: Object.keys(m).sort(), version: pkg.version}))")
    out = subprocess.run([node, "--input-type=module", "-e", probe], capture_output=True, text=True, timeout=60,
                         cwd=app_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout)
    assert set(seen["names"]) == js_exports((STATIC / "presence.js").read_text())
    assert seen["version"] == json.loads((STATIC / "package.json").read_text())["version"]


def test_typescript_app_type_checks_under_strict(app_dir: Path) -> None:
    tsc = tool("tsc", os.environ.get("PRESENCE_TSC"))
    version = subprocess.run([tsc, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    checked = subprocess.run([tsc, "--strict", "-p", "tsconfig.json"], capture_output=True, text=True, timeout=300,
                             cwd=app_dir)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]


def test_typescript_check_fails_when_a_declaration_loosens(app_dir: Path, tmp_path: Path) -> None:
    """The example's @ts-expect-error lines make the check bite: a result union that is no longer
    discriminated (here: `any`) fails it."""
    tsc = tool("tsc", os.environ.get("PRESENCE_TSC"))
    broken = tmp_path / "app"
    shutil.copytree(app_dir, broken, symlinks=True)
    dts = broken / "node_modules" / "presence-client" / "presence.d.ts"
    loose = "export type AcquireResult = { acquired: boolean; fence?: number; holder?: Holder };"
    dts.write_text(dts.read_text().replace("export type AcquireResult = AcquiredResult | BusyResult;", loose))
    checked = subprocess.run([tsc, "--strict", "-p", "tsconfig.json"], capture_output=True, text=True, timeout=300,
                             cwd=broken)
    assert checked.returncode != 0
    assert "app.ts" in checked.stdout
