"""The JS client as an npm package: `npm pack static/` ships the client, its React hooks, their
declarations, a README and the licence; the tarball installs and imports by name (`presence-client`,
`presence-client/react`); the declarations match the modules and type-check a TypeScript app that uses
the whole API, and a React app (TSX) that uses the hooks, under `tsc --strict`; the modules themselves
type-check from their JSDoc; the version is the Python package's.

npm and tsc come from the machine (CI installs both: `.ci/run` puts typescript from npm in a
directory of its own and names its tsc in PRESENCE_TSC), React and its types from the directory
PRESENCE_REACT_MODULES names (a node_modules that .ci/run fills from npm). Without them the tests
are skipped, except under CI, where a missing tool is a failure rather than a silent skip.
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
REACT_EXAMPLE = ROOT / "examples" / "react"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true")
# What the React example and the JSDoc check need from npm, besides the packed client.
REACT_PACKAGES = ["react", "react-dom", "scheduler", "csstype", "@types/react", "@types/react-dom"]


def tool(name: str, path: str | None) -> str:
    found = path or shutil.which(name)
    if found is None or not Path(found).exists():
        if IN_CI:
            pytest.fail(f"{name} is missing in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return found


def react_modules() -> Path:
    """The node_modules holding React and its types (PRESENCE_REACT_MODULES)."""
    found = os.environ.get("PRESENCE_REACT_MODULES")
    if not found or not (Path(found) / "react" / "package.json").is_file():
        if IN_CI:
            pytest.fail("PRESENCE_REACT_MODULES is missing in CI (.ci/run installs React from npm)")
        pytest.skip("React from npm is not installed (set PRESENCE_REACT_MODULES)")
    return Path(found)


def link_react(node_modules: Path) -> None:
    """React and its types, linked into a project's node_modules (after npm installed the rest)."""
    source = react_modules()
    for name in REACT_PACKAGES:
        target = node_modules / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source / name, target_is_directory=True)


def js_exports(source: str) -> set[str]:
    return set(re.findall(r"^export (?:const|function|class|async function) (\w+)", source, re.M))


def dts_exports(source: str) -> set[str]:
    return set(re.findall(r"^export declare (?:const|function|class) (\w+)", source, re.M))


def test_package_version_and_licence_are_the_python_package_ones() -> None:
    package = json.loads((STATIC / "package.json").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert package["version"] == pyproject["version"]
    assert package["license"] == pyproject["license"] == "MIT"
    assert (STATIC / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    repository = pyproject["urls"]["Repository"]
    assert package["repository"] == {"type": "git", "url": f"git+{repository}.git", "directory": "static"}


def test_package_json_is_an_es_module_with_exports_types_and_an_optional_react() -> None:
    package = json.loads((STATIC / "package.json").read_text())
    assert package["type"] == "module"
    assert package["types"] == "./presence.d.ts" and package["main"] == "./presence.js"
    assert package["exports"]["."] == {"types": "./presence.d.ts", "default": "./presence.js"}
    assert package["exports"]["./react"] == {"types": "./react.d.ts", "default": "./react.js"}
    assert package["files"] == ["presence.js", "presence.d.ts", "react.js", "react.d.ts"]  # not the demo
    assert package["peerDependencies"] == {"react": ">=18"}
    assert package["peerDependenciesMeta"] == {"react": {"optional": True}}
    assert "dependencies" not in package  # nothing bundled, nothing pulled in
    assert re.fullmatch(r">=\d+", package["engines"]["node"])


@pytest.mark.parametrize("module", ["presence", "react"])
def test_declarations_declare_exactly_what_each_module_exports(module: str) -> None:
    js = js_exports((STATIC / f"{module}.js").read_text())
    assert js, module
    assert dts_exports((STATIC / f"{module}.d.ts").read_text()) == js


def test_react_js_imports_react_and_the_client_only() -> None:
    imports = re.findall(r'^import .* from "([^"]+)";', (STATIC / "react.js").read_text(), re.M)
    assert sorted(imports) == ["./presence.js", "react"]


@pytest.mark.parametrize("module", ["presence", "react"])
def test_declarations_have_no_any(module: str) -> None:
    code = "\n".join(
        line.split("//", 1)[0] for line in (STATIC / f"{module}.d.ts").read_text().splitlines()
        if not line.lstrip().startswith(("*", "/**"))
    )
    assert re.search(r"\bany\b", code) is None


def test_npm_pack_lists_the_modules_their_types_a_readme_and_the_licence() -> None:
    npm = tool("npm", None)
    listed = subprocess.run([npm, "pack", "--dry-run", "--json"], capture_output=True, text=True, timeout=120,
                            cwd=STATIC)
    assert listed.returncode == 0, listed.stderr[-3000:]
    (info,) = json.loads(listed.stdout)
    assert sorted(f["path"] for f in info["files"]) == [
        "LICENSE", "README.md", "package.json", "presence.d.ts", "presence.js", "react.d.ts", "react.js",
    ]


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
        assert names == [f"package/{name}" for name in (
            "LICENSE", "README.md", "package.json", "presence.d.ts", "presence.js", "react.d.ts", "react.js")]
        for name in ("presence.js", "react.js"):
            js = tar.extractfile(f"package/{name}")
            assert js is not None and js.read() == (STATIC / name).read_bytes()


def install_example(example: Path, files: tuple[str, ...], tarball: Path, app: Path) -> Path:
    """An example in a project of its own, with the tarball installed as a dependency."""
    npm = tool("npm", None)
    for name in files:
        shutil.copy2(example / name, app / name)
    (app / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
    installed = subprocess.run(
        [npm, "install", "--offline", "--no-audit", "--no-fund", "--no-package-lock", str(tarball)],
        capture_output=True, text=True, timeout=120, cwd=app,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return app


@pytest.fixture(scope="module")
def app_dir(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_example(EXAMPLE, ("app.ts", "tsconfig.json"), tarball, tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def react_app_dir(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The React example: the tarball installed, React and its types linked in."""
    app = install_example(REACT_EXAMPLE, ("App.tsx", "tsconfig.json"), tarball, tmp_path_factory.mktemp("react-app"))
    link_react(app / "node_modules")
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


def tsc_strict(project: Path) -> subprocess.CompletedProcess[str]:
    tsc = tool("tsc", os.environ.get("PRESENCE_TSC"))
    return subprocess.run([tsc, "--strict", "-p", "tsconfig.json"], capture_output=True, text=True, timeout=300,
                          cwd=project)


def loosened(app: Path, tmp_path: Path, declarations: str, strict: str, loose: str) -> subprocess.CompletedProcess[str]:
    """tsc on a copy of ``app`` whose installed ``declarations`` say ``loose`` instead of ``strict``."""
    broken = tmp_path / "app"
    shutil.copytree(app, broken, symlinks=True)
    dts = broken / "node_modules" / "presence-client" / declarations
    assert strict in dts.read_text()
    dts.write_text(dts.read_text().replace(strict, loose))
    return tsc_strict(broken)


def test_typescript_check_fails_when_a_declaration_loosens(app_dir: Path, tmp_path: Path) -> None:
    """The example's @ts-expect-error lines make the check bite: a result union that is no longer
    discriminated (here: `any`) fails it."""
    checked = loosened(app_dir, tmp_path, "presence.d.ts", "export type AcquireResult = AcquiredResult | BusyResult;",
                       "export type AcquireResult = { acquired: boolean; fence?: number; holder?: Holder };")
    assert checked.returncode != 0
    assert "app.ts" in checked.stdout


def test_react_app_type_checks_under_strict(react_app_dir: Path) -> None:
    checked = tsc_strict(react_app_dir)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]


def test_react_check_fails_when_a_hook_loosens(react_app_dir: Path, tmp_path: Path) -> None:
    """The TSX example's @ts-expect-error lines make the check bite: a lock named by anything fails it."""
    signature = "export declare function useLock(client: PresenceClient | null, lock?: {}): UseLockResult;"
    checked = loosened(react_app_dir, tmp_path, "react.d.ts", signature.format("string"), signature.format("unknown"))
    assert checked.returncode != 0
    assert "App.tsx" in checked.stdout


def test_the_modules_type_check_from_their_jsdoc(tmp_path: Path) -> None:
    """presence.js and react.js carry `// @ts-check`: their JSDoc types hold under `--strict`."""
    tsc = tool("tsc", os.environ.get("PRESENCE_TSC"))
    for name in ("presence.js", "react.js"):
        shutil.copy2(STATIC / name, tmp_path / name)
    link_react(tmp_path / "node_modules")
    (tmp_path / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
    (tmp_path / "tsconfig.json").write_text(json.dumps({"compilerOptions": {
        "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "lib": ["ES2022", "DOM"],
        "allowJs": True, "checkJs": True, "strict": True, "noEmit": True, "types": [],
    }, "files": ["presence.js", "react.js"]}))
    checked = subprocess.run([tsc, "-p", "tsconfig.json"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
