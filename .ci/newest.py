"""The newest releases of the runtime dependencies, tested on purpose.

CI's main run installs the project into a new virtualenv, so pip resolves today's newest release
of every runtime dependency (pyproject.toml's ``[project].dependencies``). ``.ci/tested.txt``
records the versions the suite last passed with, written on purpose by a developer
(``python .ci/newest.py record > .ci/tested.txt`` after a green run). This script, run with the
virtualenv's Python:

    python .ci/newest.py record            print the runtime dependencies installed now (name==version)
    python .ci/newest.py show              say which installed ones are newer than .ci/tested.txt
    python .ci/newest.py blame -- PYTEST_ARGS
                                           after a failed run: reinstall each newer dependency at its
                                           tested version, one at a time, rerun the failed tests
                                           (``--lf``) and name the dependency whose new release
                                           breaks them

so a new redis-py, Starlette, uvicorn or websockets that breaks the suite is reported as such.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTED = ROOT / ".ci" / "tested.txt"
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: one spelling per package


def runtime_names() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = []
    for requirement in project["dependencies"]:
        match = NAME.match(requirement)
        assert match is not None, requirement
        names.append(canonical(match.group(1)))
    return sorted(set(names))


def installed() -> dict[str, str]:
    got = {}
    for name in runtime_names():
        try:
            got[name] = version(name)
        except PackageNotFoundError:
            got[name] = "missing"
    return got


def tested() -> dict[str, str]:
    pins = {}
    for line in TESTED.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            pins[canonical(name)] = ver
    return pins


def newer() -> list[tuple[str, str, str]]:
    """(name, installed, tested) of each runtime dependency whose version differs from tested.txt."""
    pins = tested()
    return [(name, ver, pins.get(name, "never")) for name, ver in installed().items() if pins.get(name) != ver]


def show() -> None:
    got = installed()
    print("runtime dependencies under test (newest releases):", ", ".join(f"{n} {v}" for n, v in got.items()))
    changed = newer()
    if changed:
        print("newer than the last green run (.ci/tested.txt):",
              ", ".join(f"{n} {v} (tested {t})" for n, v, t in changed))
    else:
        print("every runtime dependency is at the version of the last green run (.ci/tested.txt)")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args], check=True)


def blame(pytest_args: list[str]) -> int:
    changed = newer()
    if not changed:
        print("newest.py: the suite failed with the runtime dependencies of the last green run; "
              "the change itself (or the machine) broke it, not a new release")
        return 1
    culprits = []
    for name, ver, was in changed:
        if was == "never":
            continue
        pip(f"{name}=={was}")
        try:
            rerun = subprocess.run([sys.executable, "-m", "pytest", "--lf", "--reruns", "0", *pytest_args])
        finally:
            pip(f"{name}=={ver}")
        if rerun.returncode == 0:
            culprits.append(f"{name} {ver} (passes with {was})")
    if culprits:
        print("newest.py: the suite fails on the newest release of:", "; ".join(culprits))
    else:
        print("newest.py: no single newer dependency explains the failure; newer than the last green run:",
              ", ".join(f"{n} {v} (tested {t})" for n, v, t in changed))
    return 1


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "show"
    if command == "record":
        print("# The runtime dependencies' versions of the last green CI run; see .ci/newest.py.")
        print("\n".join(f"{n}=={v}" for n, v in installed().items()))
    elif command == "show":
        show()
    elif command == "blame":
        args = sys.argv[2:]
        sys.exit(blame(args[1:] if args[:1] == ["--"] else args))
    else:
        sys.exit(f"newest.py: unknown command {command!r} (record, show or blame)")
