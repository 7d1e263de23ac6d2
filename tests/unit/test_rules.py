"""Domain rules written in more than one language agree: the event kinds (Python and the JS client's
typedefs); and the rules of counting tabs. Scope matching in Python and in the Lua library is
compared on a real redis-server in tests/integration/test_rules_in_lua.py."""

from __future__ import annotations

import re

import pytest
from paths import ROOT

from presence.core import rules
from presence.core.events import CHANGE_KINDS, LEASE_KINDS


def _union(typedef: str, field: str) -> set[str]:
    """The string literals of ``field: "a"|"b"|...`` in one JSDoc typedef of presence.js."""
    source = (ROOT / "static" / "presence.js").read_text()
    match = re.search(rf"@typedef \{{\{{[^@]*?{field}: ((?:\"\w+\"\|?)+)[^@]*?\}}\}} {typedef}\b", source, re.S)
    assert match is not None, f"no {field} union in the {typedef} typedef of presence.js"
    return set(re.findall(r'"(\w+)"', match.group(1)))


def test_the_js_client_knows_every_change_kind() -> None:
    assert _union("Change", "kind") == set(CHANGE_KINDS)


def test_the_js_client_knows_every_release_reason() -> None:
    # Every lease kind but a grant ends someone's lease; "lost" is the local deadline's.
    assert _union("ReleasedMsg", "reason") == (set(LEASE_KINDS) - {"acquired"}) | {"lost"}


@pytest.mark.parametrize("scope", ["user", "tab"])
def test_tabs_are_counted_by_tab_id(scope: str) -> None:
    from presence.core.records import TabInfo

    infos = [TabInfo("a", "A", "t1", True, None, "s1"), TabInfo("a", "A", "t1", False, None, "s2"),
             TabInfo("a", "A", "t2", False, None, "s1"), TabInfo("b", "B", "t9", True, None, "s1")]
    assert rules.tabs_of(infos, "a") == 2
    (a, b) = rules.viewers({f"c{i}": info for i, info in enumerate(infos)})
    assert (a.user.id, a.tabs, a.active) == ("a", 2, True) and (b.user.id, b.tabs) == ("b", 1)
    assert [p.conn for p in a.presence] == ["c0", "c1", "c2"]  # every live tab, by conn
