"""Docfile: the command line of a generated document (``docs/protocol.schema.json``,
``docs/openapi.json``): print it, or ``--write`` it where the repository keeps it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str], render: Callable[[], str], path: Path, module: str) -> int:
    if argv == ["--write"]:
        path.write_text(render(), encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
        return 0
    if argv:
        print(f"usage: python -m {module} [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(render())
    return 0
