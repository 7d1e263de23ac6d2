"""Scripts: the Lua scripts of ``presence/gateway/lua/``, loaded once with their SHA1.

Redis scripts cannot import, so libraries are prepended as source: one script is the definitions
of its libraries (and of theirs) that it uses, directly or through another definition, in the
order the libraries define them (a library's after those of the libraries it needs), followed by
its body. Only those: Redis runs a script's whole text on every call, and each ``local function``
it passes makes a closure, so a definition the script never calls costs every call for nothing. A
library is its header, then definitions only (top-level ``local`` statements); what a definition
or body uses is every name its code mentions (comments, strings, fields and table keys aside).

What a script takes is declared once, in its header (the comment block it starts with), and read
from there:

.. code-block:: lua

    -- Libraries: _clock.lua, _workspace.lua   where its definitions come from ('none': nowhere)
    -- KEYS[1..10] - the workspace keys (_workspace.lua)  a library's declarations, by reference
    -- ARGV[7]    user - user id                      one argument, by name
    -- ARGV[4..]  workspaces - ...                    the rest: a list
    -- ARGV[4..]  workspaces {channel, n, conns} - .. the rest: per item, these fields in order
    -- Returns {reply JSON, event JSON...} ...
    --   granted  {fence, ttl_ms}  ...                one line per reply status

Callers pass KEYS and ARGV by name (``script.argv(user=..., name=...)``), so their order lives
in the header only. A library declares the KEYS and the head of ARGV it reads for the scripts
that cite it; a range line cites it by its file name in parentheses.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import cast

Arg = str | int | float
Args = Sequence[Arg]
Record = Mapping[str, Arg | Sequence[Arg]]
Value = Arg | Sequence[Arg] | Sequence[Record]

_LIBRARIES = re.compile(r"^-- Libraries: (.+)$")
_DECLARATION = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.(\d*))?\]\s+(.*)$")
_NAMED = re.compile(r"^(\w+)(?:\s*\{(\w+(?:,\s*\w+)*)\})?\s+- ")
_CITED = re.compile(r"^- .*\((\w+)\.lua\)")
_RETURNS = re.compile(r"^-- Returns\b")
_STATUS = re.compile(r"^--   (\w+) +\{")


class HeaderError(ValueError):
    """A script's header does not declare what it takes the way :mod:`scripts` reads it."""


@dataclass(frozen=True, slots=True)
class Param:
    """One declared KEYS or ARGV entry: a single value, or (``rest``) the rest of the list,
    each item a value or, with ``fields``, a record of those fields in order."""

    name: str
    rest: bool = False
    fields: tuple[str, ...] = ()


class Params:
    """The KEYS or the ARGV of one script, in order."""

    __slots__ = ("_simple", "names", "params", "what")

    def __init__(self, what: str, params: tuple[Param, ...]) -> None:
        self.what = what  # "acquire.lua ARGV", for errors
        self.params = params
        self.names = tuple(p.name for p in params)
        self._simple = not any(p.rest for p in params)

    def build(self, named: Mapping[str, Value]) -> list[Arg]:
        """The list in declaration order; a ``TypeError`` for a missing or unknown name, or a
        value of the wrong shape."""
        if len(named) != len(self.names) or not self._simple:
            self._check(named)
            return self._build(named)
        try:  # the common case, kept quick: one value per name
            out = [named[n] for n in self.names]
        except KeyError:
            self._check(named)
            raise
        for v in out:
            if not isinstance(v, _SCALARS):
                return self._build(named)  # raises, naming the argument
        return cast(list[Arg], out)

    def _check(self, named: Mapping[str, Value]) -> None:
        missing = [n for n in self.names if n not in named]
        unknown = [n for n in named if n not in self.names]
        if missing or unknown:
            raise TypeError(f"{self.what}: missing {missing}, unknown {unknown} (declared: {list(self.names)})")

    def _build(self, named: Mapping[str, Value]) -> list[Arg]:
        out: list[Arg] = []
        for p in self.params:
            value = named[p.name]
            if not p.rest:
                out.append(_scalar(self.what, p.name, value))
            elif not p.fields:
                out += cast(Sequence[Arg], _list(self.what, p.name, value))  # the items' types: mypy's to check
            else:
                for item in _list(self.what, p.name, value):
                    out += _record(self.what, p, item)
        return out


_SCALARS = (str, int, float)


def _scalar(what: str, name: str, value: object) -> Arg:
    if not isinstance(value, _SCALARS):
        raise TypeError(f"{what}: {name} takes one value, not {type(value).__name__}")
    return value


def _list(what: str, name: str, value: object) -> Sequence[object]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{what}: {name} takes a list, not {type(value).__name__}")
    return value


def _record(what: str, p: Param, item: object) -> list[Arg]:
    if not isinstance(item, Mapping) or len(item) != len(p.fields):
        raise TypeError(f"{what}: each item of {p.name} has the fields {list(p.fields)}: got {item!r}")
    out: list[Arg] = []
    for f in p.fields:
        if f not in item:
            raise TypeError(f"{what}: each item of {p.name} has the fields {list(p.fields)}: got {item!r}")
        v = item[f]
        out += v if isinstance(v, list | tuple) else [_scalar(what, f, v)]
    return out


@dataclass(frozen=True, slots=True)
class Header:
    """What a script's header declares."""

    name: str
    libraries: tuple[str, ...]  # prepended directly (their own libraries come with them), no .lua
    keys: Params
    argv: Params
    statuses: tuple[str, ...]  # the status of each reply it can give, for the scripts that reply so


def declared_libraries(name: str, text: str) -> tuple[str, ...]:
    """The libraries the header of ``name``.lua names (without .lua), in its order."""
    declared = [m.group(1) for m in map(_LIBRARIES.match, _header_lines(text)) if m]
    if len(declared) != 1:
        raise HeaderError(f"{name}.lua: one '-- Libraries:' line expected, found {len(declared)}")
    if declared[0].strip() == "none":
        return ()
    libs = tuple(n.strip() for n in declared[0].split(","))
    for lib in libs:
        if not re.fullmatch(r"\w+\.lua", lib):
            raise HeaderError(f"{name}.lua: libraries are named by file name (x.lua), not {lib!r}")
    return tuple(lib.removesuffix(".lua") for lib in libs)


def _header_lines(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return lines


def parse_header(name: str, text: str, libraries: Mapping[str, Header]) -> Header:
    """Read the header of ``name``.lua; ``libraries``: the headers of its libraries (and theirs)."""
    libs = declared_libraries(name, text)
    for lib in libs:
        if lib not in libraries:
            raise HeaderError(f"{name}.lua: unknown library {lib}.lua")
    reachable = {lib: libraries[lib] for lib in _closure(libs, libraries)}
    lines = _header_lines(text)
    keys = _params(name, "KEYS", lines, reachable)
    argv = _params(name, "ARGV", lines, reachable)
    returns = next((i for i, line in enumerate(lines) if _RETURNS.match(line)), len(lines))
    statuses = tuple(m.group(1) for m in map(_STATUS.match, lines[returns:]) if m)
    return Header(name, libs, keys, argv, statuses)


def _closure(libs: Iterable[str], libraries: Mapping[str, Header]) -> list[str]:
    """``libs`` and the libraries they need, each once, every library after those it needs."""
    out: list[str] = []

    def visit(lib: str) -> None:
        if lib not in out:
            for need in libraries[lib].libraries:
                visit(need)
            out.append(lib)

    for lib in libs:
        visit(lib)
    return out


def _params(name: str, kind: str, lines: Sequence[str], libraries: Mapping[str, Header]) -> Params:
    what = f"{name}.lua {kind}"
    params: list[Param] = []
    for line in lines:
        m = _DECLARATION.match(line)
        if m is None or m.group(1) != kind:
            continue
        first, ranged, last, rest = int(m.group(2)), m.group(3) is not None, m.group(4), m.group(5)
        if params and params[-1].rest:
            raise HeaderError(f"{what}[{first}]: declared after {params[-1].name}, which takes the rest")
        if first != len(params) + 1:
            raise HeaderError(f"{what}[{first}]: expected {kind}[{len(params) + 1}] next")
        if ranged and last:  # KEYS[1..10]: the declarations of the library cited
            cited = _CITED.match(rest)
            if cited is None or cited.group(1) not in libraries:
                raise HeaderError(f"{what}[{first}..{last}]: a range cites one of its libraries, (x.lua)")
            lib = libraries[cited.group(1)]
            inherited = (lib.keys if kind == "KEYS" else lib.argv).params
            if first != 1 or int(last) != len(inherited) or any(p.rest for p in inherited):
                raise HeaderError(f"{what}[{first}..{last}]: {lib.name}.lua declares {kind}[1..{len(inherited)}]")
            params += inherited
            continue
        named = _NAMED.match(rest)
        if named is None:
            raise HeaderError(f"{what}[{first}]: expected 'name - what it is', got {rest!r}")
        fields = tuple(f.strip() for f in named.group(2).split(",")) if named.group(2) else ()
        if fields and not ranged:
            raise HeaderError(f"{what}[{first}]: only the rest ({kind}[{first}..]) takes records")
        params.append(Param(named.group(1), ranged, fields))
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise HeaderError(f"{what}: a name is declared twice: {names}")
    return Params(what, tuple(params))


@dataclass(frozen=True, slots=True)
class Definition:
    """One top-level ``local`` statement of a library (its comments before it included): the names
    it defines and the names its code mentions."""

    text: str
    defines: tuple[str, ...]
    mentions: frozenset[str]


_LOCAL = re.compile(r"^local\s+(?:function\s+(\w+)\s*\(|(\w+(?:\s*,\s*\w+)*)\s*(?:=|$))")
_TOKEN = re.compile(
    r"""(?P<skip>--\[(?P<c>=*)\[.*?\](?P=c)\]|--[^\n]*|\[(?P<s>=*)\[.*?\](?P=s)\]
          |'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|\d[\w.]*)
      |(?P<name>[A-Za-z_]\w*)
      |(?P<punct>==|~=|<=|>=|\.\.\.|\.\.|[{}.:=])
      |\S""",
    re.S | re.X,
)


_KEYWORDS = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in", "local", "nil", "not", "or",
    "repeat", "return", "then", "true", "until", "while",
))


def mentions(code: str) -> frozenset[str]:
    """The names Lua ``code`` mentions: not in comments or strings, not a field (``x.name``,
    ``x:name``) nor a table key (``{name = ...}``)."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(code) if m.lastgroup != "skip"]
    out: set[str] = set()
    depth = 0
    for i, (kind, tok) in enumerate(tokens):
        if kind == "punct":
            depth += {"{": 1, "}": -1}.get(tok, 0)
        elif kind == "name":
            after = tokens[i - 1][1] if i else ""
            before = tokens[i + 1][1] if i + 1 < len(tokens) else ""
            if after not in (".", ":") and not (depth > 0 and before == "="):
                out.add(tok)
    return frozenset(out - _KEYWORDS)


def definitions(name: str, text: str) -> list[Definition]:
    """The top-level ``local`` statements of library ``name``.lua, in order, each with the comments
    before it; a ``HeaderError`` when the library has code outside them (it defines, it runs
    nothing)."""
    lines = text.splitlines()
    head = len(_header_lines(text))
    starts = [i for i, line in enumerate(lines) if _LOCAL.match(line)]
    stray = [line for line in lines[head : starts[0] if starts else None] if line.strip() and not line.startswith("--")]
    if stray:
        raise HeaderError(f"{name}.lua: a library holds definitions only (top-level 'local'), not {stray[0]!r}")
    out = []
    begin = head
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        while end - 1 > start and (lines[end - 1].startswith("--") or not lines[end - 1].strip()):
            end -= 1  # the comments before the next definition are the next one's
        m = _LOCAL.match(lines[start])
        assert m is not None
        defines = (m.group(1),) if m.group(1) else tuple(v.strip() for v in m.group(2).split(","))
        out.append(Definition("\n".join(lines[begin:end]), defines, mentions("\n".join(lines[start:end]))))
        begin = end
    return out


def link(name: str, body: str, libraries: Sequence[tuple[str, list[Definition]]]) -> str:
    """Script ``name``'s source: the definitions of ``libraries`` (in order: each after those it
    needs) that its body uses, directly or through another definition, in their order, then the
    body."""
    by_name: dict[str, Definition] = {}
    for lib, defs in libraries:
        for d in defs:
            for n in d.defines:
                if n in by_name:
                    raise HeaderError(f"{name}.lua: {n} is defined twice in its libraries ({lib}.lua and another)")
                by_name[n] = d
    used: set[int] = set()
    todo = [n for n in mentions(body) if n in by_name]
    while todo:
        d = by_name[todo.pop()]
        if id(d) not in used:
            used.add(id(d))
            todo += [n for n in d.mentions if n in by_name]
    parts = [d.text for _, defs in libraries for d in defs if id(d) in used]
    return "\n".join([*parts, body])


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str
    header: Header

    def keys(self, **named: str | Sequence[str] | Sequence[Mapping[str, str]]) -> list[str]:
        """KEYS in the order the header declares them, from their names."""
        return cast(list[str], self.header.keys.build(named))

    def argv(self, **named: Value) -> list[Arg]:
        """ARGV in the order the header declares them, from their names."""
        return self.header.argv.build(named)


def _read_all() -> dict[str, str]:
    files = resources.files("presence.gateway.lua").iterdir()
    return {f.name.removesuffix(".lua"): f.read_text() for f in files if f.name.endswith(".lua")}


def load_scripts(texts: Mapping[str, str] | None = None) -> dict[str, Script]:
    """Every script (the files not named ``_*.lua``), by name; ``texts``: the files by name
    (default: ``presence/gateway/lua/``)."""
    texts = _read_all() if texts is None else texts
    headers: dict[str, Header] = {}

    def header(name: str, seen: tuple[str, ...] = ()) -> Header:
        if name not in headers:
            if name in seen or name not in texts:
                raise HeaderError(f"no library {name}.lua to prepend" if name not in texts
                                  else f"{name}.lua needs itself: {' -> '.join((*seen, name))}")
            for lib in declared_libraries(name, texts[name]):
                header(lib, (*seen, name))
            headers[name] = parse_header(name, texts[name], headers)
        return headers[name]

    defined: dict[str, list[Definition]] = {}
    scripts = {}
    for name in sorted(texts):
        if not name.startswith("_"):
            h = header(name)
            libs = _closure(h.libraries, headers)
            for lib in libs:
                if lib not in defined:
                    defined[lib] = definitions(lib, texts[lib])
            source = link(name, texts[name], [(lib, defined[lib]) for lib in libs])
            scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest(), h)
    return scripts


@dataclass(frozen=True, slots=True)
class Call:
    """One script invocation, for :meth:`~presence.gateway.gateway.Gateway.batch`."""

    script: Script
    keys: Sequence[str]
    args: Args
