"""Scope matching written in two languages agrees: Python's rule and the Lua library's, run on a
real redis-server for every combination of scope, holder and asker."""

from __future__ import annotations

import itertools

import redis.asyncio as aioredis
from paths import ROOT
from procs import RedisServer

from presence.core import rules
from presence.core.records import HolderRecord
from presence.gateway.scripts import load_scripts

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
