"""Scripts: the Lua scripts of ``presence/gateway/lua/``, loaded once with their SHA1.

Redis scripts cannot import, so shared helpers are prepended as source: one script is its
libraries followed by its body. Each file has a KEYS/ARGV/returns header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

Args = Sequence[str | int | float]

# Scripts that run with _lib.lua prepended; the others stand alone.
_WITH_LIB = (
    "acquire", "takeover", "release", "join", "leave", "status", "snapshot", "expire", "touch", "request",
    "handoff",
)
_STANDALONE = ("renew", "announce", "census")  # the last two: the registry's, global keys only


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str, lib: str = "") -> Script:
        body = resources.files("presence.gateway.lua").joinpath(f"{name}.lua").read_text()
        source = f"{lib}\n{body}" if lib else body
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


def load_scripts() -> dict[str, Script]:
    lib = resources.files("presence.gateway.lua").joinpath("_lib.lua").read_text()
    scripts = {name: Script.load(name, lib) for name in _WITH_LIB}
    scripts.update({name: Script.load(name) for name in _STANDALONE})
    return scripts


@dataclass(frozen=True, slots=True)
class Call:
    """One script invocation, for :meth:`~presence.gateway.gateway.Gateway.batch`."""

    script: Script
    keys: Sequence[str]
    args: Args
