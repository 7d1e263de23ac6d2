"""Settings table: the table of every setting in the configuration docs, generated from the
fields of :class:`~presence.settings.Settings` (variable, default, accepted values, meaning)::

    python -m presence.settings_table           # print the configuration page with a fresh table
    python -m presence.settings_table --write   # write it (after changing a field)

The table sits between two marker lines of :data:`CONFIGURATION_DOC`; the rest of the page is
prose and stays as written. A test fails while the committed table differs from the fields.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import docfile
from .settings import Settings
from .settings_fields import specs

CONFIGURATION_DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN = "<!-- settings table: generated from presence/settings.py by python -m presence.settings_table --write -->"
END = "<!-- end of settings table -->"


def table() -> str:
    """Every setting as one Markdown table row, in the order the fields are declared."""
    rows = ["| variable | default | accepted | meaning |", "|---|---|---|---|"]
    for spec in specs(Settings).values():
        variables = " / ".join(f"`{name}`" for name in spec.env)
        cells = (variables, spec.shown_default(), spec.rule(), spec.description)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def splice(page: str) -> str:
    """``page`` with the text between its marker lines replaced by a fresh table."""
    head, begin, rest = page.partition(BEGIN + "\n")
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the configuration page lacks the marker lines {BEGIN!r} and {END!r}")
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def render() -> str:
    return splice(CONFIGURATION_DOC.read_text(encoding="utf-8"))


if __name__ == "__main__":
    raise SystemExit(docfile.main(sys.argv[1:], render, CONFIGURATION_DOC, "presence.settings_table"))
