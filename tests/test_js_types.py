"""presence.d.ts against the protocol's machine-readable form: every message of
docs/protocol.schema.json, with every field, has its interface in the declarations (nested objects
followed through the types the fields name), and every enumerated value of the schema is the
declared union, so a reason or a field added on the server cannot be missing from the TypeScript
types. The reasons the declarations list are also the ones docs/protocol.md documents."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DTS = (ROOT / "static" / "presence.d.ts").read_text()
SCHEMA: dict[str, Any] = json.loads((ROOT / "docs" / "protocol.schema.json").read_text())
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
UNIONS = ("ClientMessage", "ServerMessage", "WatcherMessage", "WatchServerMessage")


@dataclass
class Interface:
    name: str
    bases: list[str]
    fields: dict[str, str] = field(default_factory=dict)  # name -> type text


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def _block(text: str, start: int) -> str:
    """The text between the brace at ``start`` and its match."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i]
    raise AssertionError("unbalanced braces in presence.d.ts")


def _members(body: str) -> dict[str, str]:
    """Property members of an interface body (methods left out), at brace depth 0."""
    out: dict[str, str] = {}
    parts, depth, current = [], 0, ""
    for i, ch in enumerate(body):
        if not (ch == ">" and body[i - 1:i] == "="):  # the arrow of a function type is no bracket
            depth += {"{": 1, "(": 1, "<": 1, "}": -1, ")": -1, ">": -1}.get(ch, 0)
        if ch in ";\n" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for part in parts:
        m = re.match(r"\s*(?:readonly\s+)?(\w+)\??\s*:\s*(.+)", part, re.S)
        if m:
            out[m.group(1)] = " ".join(m.group(2).split())
    return out


def parse(dts: str) -> tuple[dict[str, Interface], dict[str, str]]:
    text = _strip_comments(dts)
    interfaces: dict[str, Interface] = {}
    for m in re.finditer(r"export (?:declare )?interface (\w+)(?: extends ([\w, ]+?))? \{", text):
        bases = [b.strip() for b in (m.group(2) or "").split(",") if b.strip()]
        interfaces[m.group(1)] = Interface(m.group(1), bases, _members(_block(text, m.end() - 1)))
    aliases = {m.group(1): " ".join(m.group(2).split())
               for m in re.finditer(r"export type (\w+) =([^;]*);", text)}
    return interfaces, aliases


INTERFACES, ALIASES = parse(DTS)


def fields_of(name: str) -> dict[str, str]:
    if name in ALIASES and ALIASES[name] in INTERFACES:  # export type UpdateMessage = Update;
        name = ALIASES[name]
    iface = INTERFACES[name]
    out: dict[str, str] = {}
    for base in iface.bases:
        out |= fields_of(base)
    return out | iface.fields


def literals(type_text: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The string literals a type admits, through type aliases."""
    out = set(re.findall(r'"([^"]*)"', type_text))
    for ident in re.findall(r"\b[A-Z]\w*\b", type_text):
        if ident in ALIASES and ident not in seen:
            out |= literals(ALIASES[ident], seen | {ident})
    return out


def interfaces_named(type_text: str) -> set[str]:
    out = set()
    for ident in re.findall(r"\b[A-Z]\w*\b", type_text):
        target = ALIASES.get(ident, ident)
        if target in INTERFACES:
            out.add(target)
    return out


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return SCHEMA["$defs"][ref.rsplit("/", 1)[1]] if ref else schema


def refs(schema: Any) -> set[str]:
    """The $defs a schema fragment points to (through arrays, unions and maps)."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[1]} if "$ref" in schema else set()
        for value in schema.values():
            found |= refs(value)
        return found
    if isinstance(schema, list):
        return set().union(*(refs(v) for v in schema)) if schema else set()
    return set()


def schema_messages() -> dict[str, list[str]]:
    """Message tag -> the $defs that carry it (``error`` has two: a tab's and a watcher's)."""
    out: dict[str, list[str]] = {}
    for union in UNIONS:
        for ref in refs(SCHEMA["$defs"][union].get("anyOf", SCHEMA["$defs"][union].get("oneOf"))):
            tag = SCHEMA["$defs"][ref]["properties"]["type"]["enum"][0]
            out.setdefault(tag, [])
            if ref not in out[tag]:
                out[tag].append(ref)
    return out


def dts_messages() -> dict[str, str]:
    """Message tag -> the interface of presence.d.ts whose `type` is that literal."""
    out: dict[str, str] = {}
    for name in INTERFACES:
        tag = fields_of(name).get("type", "")
        if re.fullmatch(r'"\w+"', tag):
            assert tag.strip('"') not in out, f"two interfaces for {tag}: {out.get(tag.strip(chr(34)))}, {name}"
            out[tag.strip('"')] = name
    return out


def check(def_name: str, iface: str, path: str, seen: set[tuple[str, str]]) -> list[str]:
    """What def ``def_name`` of the schema has that interface ``iface`` lacks, recursively."""
    if (def_name, iface) in seen:
        return []
    seen.add((def_name, iface))
    problems = []
    declared = fields_of(iface)
    for prop, prop_schema in SCHEMA["$defs"][def_name].get("properties", {}).items():
        where = f"{path}.{prop}"
        if prop not in declared:
            problems.append(f"{where}: no field `{prop}` in interface {iface}")
            continue
        schema = resolve(prop_schema)
        if "enum" in schema and prop != "type":
            want, got = set(schema["enum"]), literals(declared[prop])
            if want != got:
                problems.append(f"{where}: the schema allows {sorted(want)}, {iface}.{prop} {sorted(got)}")
        nested = refs(prop_schema)
        if not nested:
            continue
        named = interfaces_named(declared[prop])
        if len(nested) == 1 and len(named) == 1:
            problems += check(nested.pop(), named.pop(), where, seen)
        elif not named:
            problems.append(f"{where}: {iface}.{prop} is `{declared[prop]}`, which names none of the interfaces "
                            f"of {sorted(nested)}")
    return problems


def test_the_parser_reads_the_declarations() -> None:
    assert fields_of("AcquiredMessage")["fence"] == "number"
    assert "seq" in fields_of("StateMessage")  # inherited from State
    assert literals("ReleaseReason") >= {"released", "taken_over"}
    assert interfaces_named("Holder | null") == {"Holder"}
    assert interfaces_named("Record<string, WatchedLease>") == {"WatchedLease"}
    assert set(fields_of("LeaseWatcherOptions")) >= {"random", "setTimeout", "clearTimeout"}  # after `=>`


def test_every_message_of_the_schema_is_declared_and_nothing_else() -> None:
    assert sorted(dts_messages()) == sorted(schema_messages())


@pytest.mark.parametrize("tag", sorted(schema_messages()))
def test_every_field_of_every_message_is_declared(tag: str) -> None:
    iface = dts_messages()[tag]
    problems: list[str] = []
    for def_name in schema_messages()[tag]:
        problems += check(def_name, iface, tag, set())
    assert problems == []


def test_the_check_finds_a_missing_field_and_a_missing_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check bites: a field the schema adds, or a value of an enumeration the types lack."""
    defs = json.loads(json.dumps(SCHEMA["$defs"]))
    defs["Holder" if "Holder" in defs else "HolderView"]["properties"]["colour"] = {"type": "string"}
    declined = defs[schema_messages()["declined"][0]]
    declined["properties"]["reason"] = {"enum": ["declined", "timeout", "cancelled", "cooldown", "later"]}
    monkeypatch.setitem(SCHEMA, "$defs", defs)
    problems = check(schema_messages()["busy"][0], "BusyMessage", "busy", set())
    assert problems == ["busy.holder.colour: no field `colour` in interface Holder"]
    problems = check(schema_messages()["declined"][0], "DeclinedMessage", "declined", set())
    assert len(problems) == 1 and "later" in problems[0]


def test_the_reasons_declared_are_the_reasons_documented() -> None:
    released = PROTOCOL.split("\n### `released`\n", 1)[1].split("\n### ", 1)[0]
    reasons_table = released.split("| reason |", 1)[1]
    assert set(re.findall(r"^\| `(\w+)` \|", reasons_table, re.M)) == literals("ReleaseReason")
    declined = PROTOCOL.split("\n### `declined`\n", 1)[1].split("\n### ", 1)[0]
    reason_row = next(line for line in declined.splitlines() if line.startswith("| `reason` |"))
    assert set(re.findall(r"`(\w+)` \(", reason_row)) == literals("DeclineReason")
