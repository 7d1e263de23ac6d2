"""The Lua scripts' headers, read by presence/gateway/scripts.py: what each script takes (KEYS and
ARGV, by name), which libraries it runs with and which replies it gives. No Redis here."""

from __future__ import annotations

import re
from importlib import resources

import msgspec
import pytest

from presence.core import outcomes
from presence.core.records import Snapshot
from presence.gateway.keys import Keys
from presence.gateway.replies import DECODERS
from presence.gateway.scripts import (
    Header,
    HeaderError,
    Record,
    declared_libraries,
    definitions,
    load_scripts,
    mentions,
    parse_header,
)

LIB = """-- lib.lua: helpers.
-- Libraries: none
-- KEYS[1] lease  - the lease
-- KEYS[2] holder - the holder
--                  (a continuation line)
-- ARGV[1] channel - its channel
-- ARGV[2] ttl_ms  - the TTL
local function helper() end
"""


def header(text: str, libraries: dict[str, Header] | None = None) -> Header:
    return parse_header("probe", text, libraries or {})


def lib() -> dict[str, Header]:
    return {"lib": parse_header("lib", LIB, {})}


def test_a_header_declares_keys_and_arguments_by_name_in_order() -> None:
    h = header(
        """-- probe: a script.
-- Libraries: lib.lua
-- KEYS[1..2] - the library's keys (lib.lua)
-- KEYS[3]    extra - one more key
-- ARGV[1..2] - the library's head (lib.lua)
-- ARGV[3]    user  - user id
-- ARGV[4]    wait  - '1' to wait
-- Returns {reply JSON, event JSON...}; the replies, by status:
--   granted {fence}  a grant
--                    (continued {not a status})
--   busy    {}       someone else
return 1
""",
        lib(),
    )
    assert h.libraries == ("lib",)
    assert h.keys.names == ("lease", "holder", "extra")
    assert h.argv.names == ("channel", "ttl_ms", "user", "wait")
    assert h.statuses == ("granted", "busy")
    # Passed by name, in any order: built in header order.
    assert h.argv.build({"wait": "1", "user": "u", "ttl_ms": 5, "channel": "ch"}) == ["ch", 5, "u", "1"]
    assert h.keys.build({"extra": "x", "holder": "h", "lease": "l"}) == ["l", "h", "x"]


def test_a_missing_or_unknown_name_or_a_wrong_shape_raises() -> None:
    argv = header("-- Libraries: none\n-- ARGV[1] user - u\n-- ARGV[2] tab - t\n").argv
    with pytest.raises(TypeError, match=r"missing \['tab'\]"):
        argv.build({"user": "u"})
    with pytest.raises(TypeError, match=r"unknown \['tap'\]"):
        argv.build({"user": "u", "tap": "t"})
    with pytest.raises(TypeError, match=r"missing \['tab'\], unknown \['tab_id'\]"):
        argv.build({"user": "u", "tab_id": "t"})  # a misspelt name is both
    with pytest.raises(TypeError, match="takes one value"):
        argv.build({"user": ["u"], "tab": "t"})


def test_the_rest_of_the_list_is_a_list_or_records() -> None:
    h = header(
        """-- Libraries: none
-- KEYS[1..] leases - per lease its key
-- ARGV[1]   ttl_ms - the TTL
-- ARGV[2..] workspaces {channel, n, conns} - per workspace: channel, n, then n conns
"""
    )
    assert h.keys.build({"leases": ["a", "b"]}) == ["a", "b"]
    assert h.keys.build({"leases": []}) == []
    rows: list[Record] = [{"channel": "c1", "n": 2, "conns": ["x", "y"]}, {"conns": [], "n": 0, "channel": "c2"}]
    assert h.argv.build({"ttl_ms": 9, "workspaces": rows}) == [9, "c1", 2, "x", "y", "c2", 0]
    with pytest.raises(TypeError, match="takes a list"):
        h.keys.build({"leases": "a"})
    with pytest.raises(TypeError, match=r"fields \['channel', 'n', 'conns'\]"):
        h.argv.build({"ttl_ms": 9, "workspaces": [{"channel": "c", "n": 0}]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="fields"):
        h.argv.build({"ttl_ms": 9, "workspaces": [{"channel": "c", "n": 0, "conns": [], "more": 1}]})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("-- probe\n", "one '-- Libraries:' line"),
        ("-- Libraries: none\n-- Libraries: none\n", "one '-- Libraries:' line"),
        ("-- Libraries: lib\n", r"by file name \(x.lua\)"),
        ("-- Libraries: other.lua\n", "unknown library other.lua"),
        ("-- Libraries: none\n-- ARGV[1] a - a\n-- ARGV[3] b - b\n", r"expected ARGV\[2\] next"),
        ("-- Libraries: none\n-- ARGV[1] a - a\n-- ARGV[2] a - again\n", "declared twice"),
        ("-- Libraries: none\n-- ARGV[1..] a - rest\n-- ARGV[2] b - b\n", "takes the rest"),
        ("-- Libraries: none\n-- ARGV[1] a {x, y} - a\n", "only the rest"),
        ("-- Libraries: none\n-- ARGV[1] - no name\n", "expected 'name - what it is'"),
        ("-- Libraries: none\n-- KEYS[1..2] - the library's (lib.lua)\n", "cites one of its libraries"),
        ("-- Libraries: lib.lua\n-- KEYS[1..3] - too many (lib.lua)\n", r"lib.lua declares KEYS\[1..2\]"),
        ("-- Libraries: lib.lua\n-- KEYS[1..2] - no citation\n", "cites one of its libraries"),
    ],
)
def test_a_header_that_does_not_read_right_is_refused(text: str, error: str) -> None:
    with pytest.raises(HeaderError, match=error):
        header(text, lib())


def test_only_the_header_is_read() -> None:
    """Declarations count only in the comment block a script starts with."""
    h = header("-- Libraries: none\n-- ARGV[1] a - a\nlocal x = 1\n-- ARGV[2] b - not the header\n")
    assert h.argv.names == ("a",)


def test_libraries_come_once_each_after_the_libraries_they_need() -> None:
    """A script gets the definitions it uses, directly or through another, each once, in the order
    of its libraries (each after those it needs); none it does not use."""
    texts = {
        "_a": "-- Libraries: _b.lua\nlocal function a() return b() end",
        "_b": "-- Libraries: _c.lua\n\n-- b's comment\nlocal function b() return c() end\nlocal function unused() end",
        "_c": "-- Libraries: none\nlocal function c() end\nlocal x, y = 1, 2",
        "s": "-- Libraries: _c.lua, _a.lua\nreturn a() + y", "t": "-- Libraries: none\nT",
    }
    scripts = load_scripts(texts)
    assert set(scripts) == {"s", "t"}
    assert [line for line in scripts["s"].source.splitlines() if line and not line.startswith("--")] == [
        "local function c() end", "local x, y = 1, 2", "local function b() return c() end",
        "local function a() return b() end", "return a() + y",
    ]
    assert "-- b's comment" in scripts["s"].source
    assert scripts["t"].source == texts["t"]
    with pytest.raises(HeaderError, match=r"no library _x\.lua"):
        load_scripts({"s": "-- Libraries: _x.lua\n"})
    with pytest.raises(HeaderError, match="needs itself: s -> _a -> _b -> _a"):
        load_scripts({"s": "-- Libraries: _a.lua\n", "_a": "-- Libraries: _b.lua\n", "_b": "-- Libraries: _a.lua\n"})
    with pytest.raises(HeaderError, match="definitions only"):
        load_scripts({"s": "-- Libraries: _a.lua\n", "_a": "-- Libraries: none\nredis.call('TIME')\n"})
    with pytest.raises(HeaderError, match="f is defined twice"):
        load_scripts({"s": "-- Libraries: _a.lua, _b.lua\nf()", "_a": "-- Libraries: none\nlocal function f() end",
                      "_b": "-- Libraries: none\nlocal function f() end"})


def test_a_name_in_a_comment_string_field_or_table_key_is_no_use() -> None:
    code = """-- holder() in a comment
local h = redis.call('HGET', ws.holder, 'request') .. "grant"
local t = {person = 1, [emit] = 2, x = reply(ws)}
--[[ settle() ]] local n = ws:note() == queue_map
"""
    assert mentions(code) == {"h", "redis", "ws", "t", "emit", "reply", "n", "queue_map"}


# -- the real scripts -------------------------------------------------------------------------------

SCRIPTS = load_scripts()


def _text(name: str) -> str:
    return resources.files("presence.gateway.lua").joinpath(f"{name}.lua").read_text()


def test_each_script_runs_with_the_library_definitions_it_uses_once_each() -> None:
    """Each script is the definitions of its libraries that it uses (directly or through another
    definition), each once, in the libraries' order, then its body; nothing it does not use."""
    for name, script in SCRIPTS.items():
        libs = {"renew": (), "announce": ("_clock",), "census": ("_clock",)}.get(name, ("_clock", "_workspace", "_lib"))
        order = [d for lib in libs for d in definitions(lib, _text(lib))]
        defined = {n for d in order for n in d.defines}
        body = _text(name)
        assert script.source.endswith(body), name
        linked = [d for d in order if d.text in script.source.removesuffix(body)]
        assert "\n".join([*(d.text for d in linked), body]) == script.source, name
        needed = {n for n in mentions(body) if n in defined}
        for d in linked:
            needed |= {n for n in d.mentions if n in defined}
        assert {n for d in linked for n in d.defines} == needed, name


def _literal_indices(kind: str, body: str) -> set[int]:
    code = "\n".join(line.split("--")[0] for line in body.splitlines())
    return {int(i) for i in re.findall(rf"\b{kind}\[(\d+)\]", code)}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_body_reads_what_its_header_declares(name: str) -> None:
    """Every KEYS[i] and ARGV[i] the body reads is declared, and every one its header declares
    itself (not cited from a library, not the rest) is read."""
    h = SCRIPTS[name].header
    for kind, params in (("KEYS", h.keys), ("ARGV", h.argv)):
        single = [i + 1 for i, p in enumerate(params.params) if not p.rest]
        inherited = sum(
            len((lib.keys if kind == "KEYS" else lib.argv).params)
            for lib in (load_lib(n) for n in h.libraries)
        )
        read = _literal_indices(kind, _text(name))
        assert read <= set(single), (name, kind, read, single)
        assert set(single[inherited:]) <= read, (name, kind, read, single)


def load_lib(name: str) -> Header:
    """A library's header, read with the headers of the libraries it needs (and theirs)."""
    needed: dict[str, Header] = {}

    def collect(of: str) -> None:
        for lib in declared_libraries(of, _text(of)):
            if lib not in needed:
                collect(lib)
                needed[lib] = parse_header(lib, _text(lib), needed)

    collect(name)
    return parse_header(name, _text(name), needed)


def test_each_script_replies_with_the_statuses_its_header_lists() -> None:
    """The Returns lines of a script's header, the statuses its body replies with and the union
    its replies decode as are one list."""
    decoders = {d.script: d.statuses for d in DECODERS}
    answering = {name for name, s in SCRIPTS.items() if s.header.statuses}
    assert answering == set(decoders)
    for name in answering:
        listed = set(SCRIPTS[name].header.statuses)
        assert listed == decoders[name], name
        assert set(re.findall(r"reply\(ws, '(\w+)'", _text(name))) == listed, name


def test_each_status_is_its_reply_structs_name_in_snake_case() -> None:
    replies: list[type[msgspec.Struct]] = [
        t for name, t in vars(outcomes).items()
        if isinstance(t, type) and issubclass(t, outcomes.Reply) and name[0] != "_" and t is not outcomes.Reply
    ]
    assert len(replies) == 22  # the scripts' replies, and the touch script's per workspace (Touched)
    replies.append(Snapshot)
    for t in replies:
        assert t.__struct_config__.tag == re.sub(r"(?<!^)([A-Z])", r"_\1", t.__name__).lower()


def test_the_script_key_names_are_the_keys_python_has() -> None:
    keys = Keys("p")
    assert set(load_lib("_workspace").keys.names) == set(keys.workspace("w").by_name())
    (touched,) = SCRIPTS["touch"].header.keys.params
    assert set(touched.fields) < set(keys.workspace("w").by_name())
    for name in ("announce", "census"):
        assert SCRIPTS[name].header.keys.names == tuple(keys.registry.by_name), name


def test_a_reply_decodes_by_its_status() -> None:
    acquire = next(d for d in DECODERS if d.script == "acquire")
    out = acquire.decode(['{"status":"waiting","holder":{"fence":"7","user":"a","name":"A","tab":"t",'
                          '"since":1},"position":2}'], 0.0)
    assert isinstance(out.reply, outcomes.Waiting) and out.reply.position == 2 and out.status == "waiting"
    with pytest.raises(msgspec.ValidationError, match="status"):
        acquire.decode(['{"status":"ended","reason":"x"}'], 0.0)  # another script's reply
