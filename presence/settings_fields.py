"""Settings fields: what each field of :class:`~presence.settings.Settings` declares, read once
from its annotations (its variables, type and bounds, meaning, how its default reads), and the
conversion of raw values (environment strings, CLI flags) with ``msgspec.convert``.

A value that does not convert is reported in words derived from the same constraints msgspec
checks ("a whole number from 50 to 60,000"), so the message cannot drift from the check.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
import urllib.parse
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import inspect as mi

_BOOL_WORDS = {"yes": "true", "on": "true", "no": "false", "off": "false"}  # as well as true/false/1/0


class SettingsError(ValueError):
    """Settings are missing or invalid: one line per problem, each naming the variable and saying
    how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [" ".join(p.splitlines()) for p in problems]
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One setting, as its field declares it."""

    name: str
    env: tuple[str, ...]  # the variables it is read from, the first one set wins
    hint: Any  # the annotated type msgspec converts to
    kind: mi.Type  # that type without metadata and without ``None``
    description: str
    extra: Mapping[str, Any]
    default: object

    @property
    def variable(self) -> str:
        return self.env[0]

    def rule(self) -> str:
        """What a valid value is, in words."""
        return str(self.extra["rule"]) if "rule" in self.extra else _rule(self.kind)

    def shown_default(self) -> str:
        """The default as the docs show it."""
        if "default" in self.extra:
            return str(self.extra["default"])
        if self.default is None or self.default == ():
            return "unset"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        if isinstance(self.default, str):
            return f"`{self.default}`"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def problem(self, value: object) -> str:
        """The line that refuses ``value``."""
        line = f"{self.variable} must be {self.rule()}"
        if not self.extra.get("secret"):
            line += f", got {_shown(value, bool(self.extra.get('url')))}"
        if "hint" in self.extra:
            line += f" ({self.extra['hint']})"
        return line

    def prepare(self, text: str) -> object:
        """An environment string in the shape msgspec converts from: a comma list split, spaces
        around a number or a boolean dropped."""
        if isinstance(self.kind, mi.VarTupleType):
            return [part.strip().rstrip("/") for part in text.split(",") if part.strip()]
        if isinstance(self.kind, mi.BoolType):
            word = text.strip().lower()
            return _BOOL_WORDS.get(word, word)
        if isinstance(self.kind, mi.IntType | mi.FloatType):
            return text.strip()
        return text


@functools.cache
def specs(cls: type) -> dict[str, FieldSpec]:
    """Every field of the settings class ``cls``, in declaration order."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.DataclassType)
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, FieldSpec] = {}
    for field in info.fields:
        kind, extra, description = _unwrap(field.type)
        env = tuple(extra.get("env", ("PRESENCE_" + field.name.upper(),)))
        out[field.name] = FieldSpec(field.name, env, hints[field.name], kind, description, extra, field.default)
    return out


def field_names(cls: type) -> list[str]:
    return list(specs(cls))


def env_value(cls: type, name: str, env: Mapping[str, str]) -> str | None:
    """The raw value of setting ``name`` in ``env``, None when unset. An empty variable counts as
    unset, except for settings that refuse a blank value (a key left empty by an unset template
    variable must not quietly turn into dev mode)."""
    spec = specs(cls)[name]
    for variable in spec.env:
        value = env.get(variable)
        if value or (value == "" and spec.extra.get("blank") == "refused"):
            return value
    return None


def convert_all(cls: type, raw: Mapping[str, object], *, strict: bool) -> tuple[dict[str, object], list[str]]:
    """Each raw value converted to its field's type and checked against its bounds: the values,
    and one problem line per value refused. ``strict=False`` converts from strings."""
    fields = specs(cls)
    values: dict[str, object] = {}
    problems: list[str] = []
    for name, value in raw.items():
        spec = fields[name]
        if value == "" and spec.extra.get("blank") == "refused":
            problems.append(f"{spec.variable} is set but empty (an unset template variable?): give it its value, "
                            "or remove it from the environment")
            continue
        given = spec.prepare(value) if not strict and isinstance(value, str) else value
        try:
            values[name] = msgspec.convert(given, spec.hint, strict=strict)
        except msgspec.ValidationError:
            problems.append(spec.problem(value))
    return values, problems


def _unwrap(t: mi.Type) -> tuple[mi.Type, dict[str, Any], str]:
    """A field's type without its metadata and ``None``, and the metadata's ``extra`` (the
    field's own before its type alias') and description."""
    extra: dict[str, Any] = {}
    description = ""
    while True:
        if isinstance(t, mi.Metadata):
            extra = {**(t.extra or {}), **extra}
            description = description or str((t.extra_json_schema or {}).get("description", ""))
            t = t.type
        elif isinstance(t, mi.UnionType):
            rest = [m for m in t.types if not isinstance(m, mi.NoneType)]
            assert len(rest) == 1, "a setting is one type or None"
            t = rest[0]
        else:
            return t, extra, description


def _rule(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        return str(t.extra["rule"]) if t.extra and "rule" in t.extra else _rule(t.type)
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.IntType):
        return _bounded("a whole number", t)
    if isinstance(t, mi.FloatType):
        return _bounded("a number", t)
    if isinstance(t, mi.LiteralType):
        return " or ".join(repr(v) for v in t.values)
    if isinstance(t, mi.VarTupleType):
        return f"a comma list of {_rule(t.item_type)}"
    if isinstance(t, mi.StrType) and t.min_length:
        return "not empty" if t.min_length == 1 else f"at least {t.min_length} characters"
    return "text"


def _bounded(what: str, t: mi.IntType | mi.FloatType) -> str:
    low = f"from {_number(t.ge)}" if t.ge is not None else f"above {_number(t.gt)}" if t.gt is not None else ""
    high = f"to {_number(t.le)}" if t.le is not None else f"below {_number(t.lt)}" if t.lt is not None else ""
    if t.gt is not None and high:
        high = f"and at most {_number(t.le)}" if t.le is not None else f"and {high}"
    return " ".join(filter(None, (what, low, high)))


def _number(x: float | int | None) -> str:
    if x is None:
        return ""
    return f"{int(x):,}" if float(x).is_integer() else str(x)


def _shown(value: object, url: bool) -> str:
    """A refused value as the message shows it: a URL without its password."""
    return repr(without_password(value) if url and isinstance(value, str) else value)


def without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
