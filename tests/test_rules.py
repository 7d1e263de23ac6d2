"""Domain rules written in more than one language agree: scope matching (Python and the Lua
library) and the event kinds (Python and the JS client's typedefs)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from procs import RedisServer

from presence.core import rules
from presence.core.events import CHANGE_KINDS, LEASE_KINDS
from presence.core.records import HolderRecord
from presence.gateway.scripts import load_scripts

ROOT = Path(__file__).resolve().parent.parent

# The library of the workspace scripts, then a body that asks it whether holder matches (user, tab).
_PROBE = """
local ws = workspace(KEYS, ARGV)
local h = {user = ARGV[5], tab = ARGV[6]}
return matches(ws, h, ARGV[7], ARGV[8]) and 1 or 0
"""


async def test_lua_and_python_agree_on_scope_matching(redis_server: RedisServer) -> None:
    library = load_scripts()["acquire"].source.rsplit(_body("acquire"), 1)[0]
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = [f"probe:{{ws}}:{n}" for n in range(8)]
    try:
        names, tabs = ("alice", "bob"), ("t1", "t2")
        cases = list(itertools.product(("user", "tab"), names, tabs, names, tabs))
        for scope, h_user, h_tab, user, tab in cases:
            lua = await client.eval(library + _PROBE, 8, *keys, "ch", "PUBLISH", 1000, scope, h_user, h_tab, user, tab)
            holder = HolderRecord(fence=1, user=h_user, name=h_user, tab=h_tab, since=0)
            python = rules.holds(holder, user, tab, scope)
            assert bool(lua) == python, (scope, h_user, h_tab, user, tab)
        assert sum(rules.holds(HolderRecord(1, c[1], "", c[2], 0), c[3], c[4], c[0]) for c in cases) == 12
    finally:
        await client.aclose()


def _body(name: str) -> str:
    return (ROOT / "presence" / "gateway" / "lua" / f"{name}.lua").read_text()


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
