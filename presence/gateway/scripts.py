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

# The libraries each script runs with, prepended in this order (Redis scripts cannot import): _clock.lua
# to every script that reads the time, _lib.lua (which needs _clock.lua) to the workspace scripts.
_WORKSPACE_LIBS = ("_clock", "_lib")
_LIBS: dict[str, tuple[str, ...]] = {
    "acquire": _WORKSPACE_LIBS,
    "takeover": _WORKSPACE_LIBS,
    "release": _WORKSPACE_LIBS,
    "join": _WORKSPACE_LIBS,
    "leave": _WORKSPACE_LIBS,
    "status": _WORKSPACE_LIBS,
    "snapshot": _WORKSPACE_LIBS,
    "expire": _WORKSPACE_LIBS,
    "touch": _WORKSPACE_LIBS,
    "request": _WORKSPACE_LIBS,
    "handoff": _WORKSPACE_LIBS,
    "renew": (),
    "announce": ("_clock",),  # announce and census: the registry's, global keys only
    "census": ("_clock",),
}


def _read(name: str) -> str:
    return resources.files("presence.gateway.lua").joinpath(f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str, libs: Sequence[str] = ()) -> Script:
        source = "\n".join([*(_read(lib) for lib in libs), _read(name)])
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


def load_scripts() -> dict[str, Script]:
    return {name: Script.load(name, libs) for name, libs in _LIBS.items()}


@dataclass(frozen=True, slots=True)
class Call:
    """One script invocation, for :meth:`~presence.gateway.gateway.Gateway.batch`."""

    script: Script
    keys: Sequence[str]
    args: Args
