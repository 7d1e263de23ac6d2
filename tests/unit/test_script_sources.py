"""The Lua scripts' sources, read as text: the clock written once, no workspace state in globals,
libraries that hold no state. (What the scripts do: tests/integration/test_lease_scripts.py.)"""

from __future__ import annotations

import re
from importlib import resources

from presence.gateway.scripts import load_scripts

LIBRARIES = ("_clock.lua", "_workspace.lua", "_lib.lua")


def lua_files() -> dict[str, str]:
    return {
        f.name: f.read_text() for f in resources.files("presence.gateway.lua").iterdir() if f.name.endswith(".lua")
    }


def test_clock_is_written_once() -> None:
    """now_ms and str are defined in _clock.lua only; a script that uses them gets them once."""
    assert sorted(n for n, text in lua_files().items() if re.search(r"function (now_ms|str)\(", text)) == [
        "_clock.lua"
    ]
    for script in load_scripts().values():
        uses = re.findall(r"(?<!function )\b(?:now_ms|str)\(", script.source)
        assert script.source.count("local function now_ms(") == (1 if uses else 0), script.name


def test_no_script_binds_workspace_state_in_globals() -> None:
    """Each script binds its own keys and arguments (``local ws = ...``): no script, as loaded with its
    libraries, has file-wide names for a workspace's keys, channel, TTL or scope, or an ``events``
    accumulator that a script would reset by assignment."""
    shared = re.compile(r"\b(K_[A-Z]+|CHANNEL|PUBCMD|LEASE_TTL|SCOPE)\b")
    for script in load_scripts().values():
        assert not shared.search(script.source), script.name
        assert not re.search(r"^\s*events\s*=", script.source, re.M), script.name


def test_libraries_hold_no_state() -> None:
    """The libraries define functions only: a helper reads the workspace from its arguments, never
    from KEYS or ARGV or from a library variable. The one variable is _clock.lua's Redis time, read
    once per call (each call runs the library anew)."""
    files = lua_files()
    for lib in LIBRARIES:
        code = [line.split("--")[0].rstrip() for line in files[lib].splitlines()]
        assert not any(re.search(r"\b(KEYS|ARGV)\b", line) for line in code), lib
        top_level = [line for line in code if line[:1] not in ("", " ") and line != "end"]
        assert top_level, lib
        for line in top_level:
            clock = (lib, line) == ("_clock.lua", "local clock_ms, clock_us")
            assert re.match(r"local function \w+\(", line) or clock, line


def test_a_script_reads_the_time_once() -> None:
    """TIME is read by _clock.lua's read_clock only, and only while this call has not read it."""
    for script in load_scripts().values():
        assert script.source.count("redis.call('TIME')") == (1 if "read_clock()" in script.source else 0), script.name
    clock = lua_files()["_clock.lua"]
    assert clock.count("if not clock_ms then read_clock() end") == 1
    assert clock.count("if not clock_us then read_clock() end") == 1
