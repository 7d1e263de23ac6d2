"""Print a pip constraints file that pins every dependency of pyproject.toml to its declared floor.

    python3 .ci/floors.py [extra ...] > constraints.txt

Every requirement of ``[project].dependencies`` (and of the named optional extras) must carry a
``>=`` floor: that floor is the oldest version we claim to work with, so CI installs exactly it
(``pip install -c constraints.txt``) and runs the tests against it. A requirement without a floor
is an error, so a new dependency cannot slip in unchecked. A requirement pinned with ``==`` (the
checkers of the ``lint`` extra) is its own floor.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(?:>=|==)\s*([0-9][^,;\s]*)\s*(?:,.*)?$")


def floors(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        requirements += optional[extra]
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"floors.py: {requirement!r} has no '>=' floor (or '==' pin); give it one")
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()  # PEP 503: one spelling per package
        pins[name] = match.group(3)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    print("\n".join(floors(sys.argv[1:])))
