"""The peer Hocuspocus of ``presence bench --peer hocuspocus``: installed from npm into a cache
directory outside the repository, run as Node processes (its server, and a process of its clients).

The Node programs are plain ES modules shipped in this package (``hocuspocus-server.mjs``,
``hocuspocus-clients.mjs``); they are copied next to the installed ``node_modules`` so that their
imports resolve there, with no build step.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .ports import free_port
from .procs import HttpProc

# What the issue measured: @hocuspocus/server 4.7 with its Redis extension; the provider and Yjs
# are what a browser page runs, ws stands in for the browser's WebSocket in Node.
PACKAGES = {
    "@hocuspocus/server": "^4.7.0",
    "@hocuspocus/extension-redis": "^4.7.0",
    "@hocuspocus/provider": "^4.7.0",
    "yjs": "^13.6.8",
    "y-protocols": "^1.0.6",
    "ws": "^8.18.0",
}
REPORTED = (*PACKAGES, "ioredis")  # the extension's Redis client, a dependency of its own
SCRIPTS = ("hocuspocus-server.mjs", "hocuspocus-clients.mjs")
INSTALL_TIMEOUT_S = 600


class PeerUnavailable(Exception):
    """The peer cannot run here (no node or npm, or the install failed): the comparison is skipped."""


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "presence-bench" / "hocuspocus"


@dataclass(frozen=True, slots=True)
class Installation:
    dir: Path
    node: str
    versions: dict[str, str]  # node's and every package's in REPORTED

    def server(self, redis_port: int) -> HocuspocusProc:
        return HocuspocusProc(self, redis_port)

    def clients_cmd(self) -> list[str]:
        """The command of the clients' process (speaks the tab farm's JSON lines)."""
        return [self.node, str(self.dir / "hocuspocus-clients.mjs")]


class HocuspocusProc(HttpProc):
    """``node hocuspocus-server.mjs PORT REDIS_PORT`` on 127.0.0.1."""

    def __init__(self, inst: Installation, redis_port: int) -> None:
        port = free_port()
        super().__init__("hocuspocus", [inst.node, str(inst.dir / "hocuspocus-server.mjs"), str(port),
                                        str(redis_port)], port)


def install(cache: Path, log: Callable[[str], None]) -> Installation:
    """Install the peer into ``cache`` unless it is there already; raise :class:`PeerUnavailable`
    with the reason when it cannot run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        raise PeerUnavailable(f"{missing} not found on PATH (install Node.js 20 or later with npm)")
    want = json.dumps({"name": "presence-bench-hocuspocus", "private": True, "type": "module",
                       "dependencies": PACKAGES}, indent=2) + "\n"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with _locked(cache / ".lock"):
            stamp = cache / ".installed"  # written after a successful install of exactly ``want``
            if not (stamp.exists() and stamp.read_text() == want and (cache / "node_modules").is_dir()):
                (cache / "package.json").write_text(want)
                log(f"installing {', '.join(PACKAGES)} from npm into {cache}")
                try:
                    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                                          cwd=cache, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    raise PeerUnavailable(f"npm install in {cache} took over {INSTALL_TIMEOUT_S} s") from None
                if done.returncode != 0:
                    raise PeerUnavailable(f"npm install in {cache} failed:\n{(done.stderr or done.stdout)[-2000:]}")
                stamp.write_text(want)
            for name in SCRIPTS:
                (cache / name).write_text(resources.files(__package__).joinpath(name).read_text())
            versions = {pkg: _version(cache, pkg) for pkg in REPORTED}
    except OSError as exc:
        raise PeerUnavailable(f"cannot use {cache}: {exc}") from None
    versions["node"] = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return Installation(cache, node, versions)


def _version(cache: Path, package: str) -> str:
    try:
        return str(json.loads((cache / "node_modules" / package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "?"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two runs at once install one after the other."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
