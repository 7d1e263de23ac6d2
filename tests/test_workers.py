"""``presence serve --workers N`` and the restart grace, with real processes: redis-server and
``presence serve`` (a supervisor and its workers, or single processes), and tabs over WebSockets.

Timings are the short ones of ``FAST`` (lease TTL 1.5 s); the restart grace is a few seconds, so
"later than the TTL but within the grace" fits in a short test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, Cluster
from procs import ROOT, RedisServer, _bindable, free_port, wait_until
from wsclient import Tab

from presence.gateway.keys import Keys

TTL_S = int(FAST["PRESENCE_LEASE_TTL_MS"]) / 1000
GRACE_MS = 4000  # the restart grace of single processes here: well over the TTL, well under a long wait
# The supervisors' restart grace: over the 5 s a close frame may take to arrive, so holders are told.
SUPERVISED_GRACE_MS = 9000
KEPT = re.compile(r"^server restarting, reconnect; lease kept for (\d+) ms$")


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free ports (a supervisor's workers' own addresses)."""
    for _ in range(200):
        first = free_port()
        if all(_bindable(first + i) for i in range(1, n)):
            return first
    raise RuntimeError(f"no {n} consecutive free ports")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


class Supervised:
    """``python -m presence serve --workers N``: the supervisor process, its log, its workers."""

    def __init__(self, redis_url: str, prefix: str, workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.first = free_ports(workers)
        self.workers = workers
        self.env = {**os.environ, **FAST, "PRESENCE_REDIS_URL": redis_url, "PRESENCE_KEY_PREFIX": prefix,
                    "PRESENCE_DEV": "1", "PRESENCE_WORKER_PORTS": str(self.first),
                    "PRESENCE_RESTART_GRACE_MS": str(SUPERVISED_GRACE_MS), "PYTHONUNBUFFERED": "1", **env}
        self.env.pop("PORT", None)
        self.log_path = Path(tempfile.mkstemp(prefix="presence-supervisor-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def own_url(self, slot: int) -> str:
        return f"http://127.0.0.1:{self.first + slot - 1}"

    def start(self) -> Supervised:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "presence", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )
        wait_until(lambda: len(self.ready_pids()) == self.workers, 60, "every worker ready", interval=0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready_pids(self) -> dict[int, int]:
        """``{worker: pid}`` of the latest process of each worker that said it is ready."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the supervisor exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return {int(w): int(pid) for w, pid in re.findall(r"worker (\d+) \(pid (\d+)\) is ready", self.log())}

    def children(self) -> set[int]:
        assert self.proc is not None
        return {int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()}

    def server_id(self, slot: int) -> str:
        """The server id of worker ``slot``'s current process (its own address's /readyz)."""
        status, body = get(self.own_url(slot) + "/readyz")
        assert status == 200, (status, body)
        return str(re.search(r'"server":"(\w+)"', body).group(1))  # type: ignore[union-attr]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            pids = self.children()
            self.proc.kill()
            self.proc.wait(10)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if not os.environ.get("PRESENCE_KEEP_LOGS"):
            self.log_path.unlink(missing_ok=True)


@pytest.fixture
async def supervised(redis_server: RedisServer, prefix: str) -> AsyncIterator[Supervised]:
    """A supervisor of two workers, started (in a thread: the test's loop goes on meanwhile)."""
    sup = Supervised(redis_server.url, prefix)
    try:
        yield await asyncio.to_thread(sup.start)
    finally:
        sup.close()


@pytest.fixture
async def opened() -> AsyncIterator[list[Tab]]:
    tabs: list[Tab] = []
    yield tabs
    for t in tabs:
        await t.drop()


async def tab(tabs: list[Tab], url: str, user: str, ws: str, tab_id: str | None = None) -> Tab:
    t = Tab(url, user, ws, tab=tab_id)
    tabs.append(t)
    return await t.connect()


def lease_key(prefix: str, ws: str) -> str:
    return Keys(prefix).workspace(ws).lease


async def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(check)):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)
    return result


async def holders(tabs: list[Tab], url: str, n: int, stem: str) -> dict[str, tuple[Tab, int]]:
    """``n`` users, each holding the lease of a workspace of their own: {workspace: (tab, fence)}."""
    out: dict[str, tuple[Tab, int]] = {}
    for i in range(n):
        t = await tab(tabs, url, f"{stem}{i}", f"{stem}-ws{i}", f"{stem}-tab{i}")
        got = await t.request("acquire")
        assert got["type"] == "acquired", got
        out[t.workspace] = (t, got["fence"])
    return out


def server_of(t: Tab) -> str:
    assert t.welcome is not None
    return str(t.welcome["conn"]).rsplit("-", 1)[0]


async def rejoin(tabs: list[Tab], url: str, old: Tab, fence: int) -> Tab:
    """``old``'s tab connects again (same tab id) and gets its lease back with the same fence.
    A connection refused or reset is tried again, as the JS client does: a SIGKILLed worker's
    listening socket goes a moment after its connections, and takes what reached it meanwhile."""
    for attempt in range(5):
        try:
            again = await tab(tabs, url, old.user, old.workspace, old.tab)
            break
        except OSError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.1 * 2**attempt)
    got = await again.expect("acquired", timeout=10)
    assert got.get("rejoined") is True and got["fence"] == fence, got
    return again


# -- the supervisor ----------------------------------------------------------------------------


async def test_two_workers_serve_tabs_on_one_port_and_see_each_others_tabs(
    supervised: Supervised, opened: list[Tab]
) -> None:
    tabs = [await tab(opened, supervised.ws_url, f"u{i}", "doc") for i in range(16)]
    ids = {supervised.server_id(1), supervised.server_id(2)}
    assert len(ids) == 2
    by_server = {sid: [t for t in tabs if server_of(t) == sid] for sid in ids}
    assert all(by_server.values()), f"the kernel gave one worker every tab: {by_server}"  # 2**-15 by chance
    one, other = (group[0] for group in by_server.values())
    got = await one.request("acquire")
    assert got["type"] == "acquired"
    seen = await other.expect("state", lambda m: (m.get("holder") or {}).get("fence") == got["fence"])
    assert len(seen["viewers"]) == 16
    assert (await other.request("acquire"))["type"] == "busy"
    log = supervised.log()
    assert "[worker=1]" in log and "[worker=2]" in log, log[-2000:]  # each line says whose it is
    assert supervised.children() == set(supervised.ready_pids().values())


async def test_a_killed_worker_is_started_again_and_its_tabs_rejoin_with_their_fences(
    supervised: Supervised, opened: list[Tab]
) -> None:
    held = await holders(opened, supervised.ws_url, 10, "k")
    pid = supervised.ready_pids()[1]
    victim = supervised.server_id(1)
    hit = {ws: tf for ws, tf in held.items() if server_of(tf[0]) == victim}
    assert hit, "no holder on worker 1"
    os.kill(pid, signal.SIGKILL)
    # A crash keeps the TTL rule: the tabs come back at once (to the other worker, or the new one).
    for t, _ in hit.values():
        assert await t.closed(timeout=5) != 1012
    back = await asyncio.gather(*(rejoin(opened, supervised.ws_url, t, fence) for t, fence in hit.values()))
    assert len(back) == len(hit)
    await until(lambda: supervised.ready_pids().get(1) not in (None, pid), 15, "worker 1 started again")
    assert supervised.server_id(1) != victim
    assert f"worker 1 (pid {pid}) was ended by SIGKILL" in supervised.log()
    assert len(supervised.children()) == 2


async def test_sigterm_drains_every_worker_keeps_the_leases_and_exits_0(
    supervised: Supervised, opened: list[Tab], redis_server: RedisServer, prefix: str
) -> None:
    held = await holders(opened, supervised.ws_url, 6, "t")
    viewer = await tab(opened, supervised.ws_url, "viewer", "t-ws0")
    served = {server_of(t) for t, _ in held.values()} | {server_of(viewer)}
    assert served == {supervised.server_id(1), supervised.server_id(2)}
    supervised.signal(signal.SIGTERM)
    termed = time.monotonic()
    for t, _ in held.values():
        assert await t.closed(timeout=10) == 1012
        told = KEPT.match(t.closed_reason or "")
        # 9 s kept, less the 5 s a close frame may take to arrive, less the keeping itself.
        assert told is not None and 2000 < int(told.group(1)) <= 4000, t.closed_reason
    assert await viewer.closed(timeout=10) == 1012
    assert viewer.closed_reason == "server restarting, reconnect"  # it holds nothing
    assert supervised.proc is not None
    assert await asyncio.to_thread(supervised.proc.wait, 30) == 0
    assert time.monotonic() - termed < 15
    client = redis_server.client()
    for ws in held:
        assert int(client.pttl(lease_key(prefix, ws))) > 1000 * TTL_S + 1000  # kept past the TTL
    log = supervised.log()
    assert "every worker has exited" in log and "Traceback" not in log, log[-3000:]


async def test_sighup_restarts_the_workers_one_at_a_time_and_loses_no_lease(
    supervised: Supervised, opened: list[Tab], redis_server: RedisServer, prefix: str
) -> None:
    held = await holders(opened, supervised.ws_url, 10, "h")
    before = supervised.children()
    lost: list[Any] = []
    current = {ws: t for ws, (t, _) in held.items()}

    async def follow(ws: str, fence: int) -> None:
        """Reconnect this holder's tab whenever it is closed, as the JS client does."""
        while True:
            t = current[ws]
            await t.closed(timeout=60)
            lost.extend(m for m in t.messages if m["type"] == "released")
            assert t.closed_code == 1012, (t.closed_code, t.closed_reason)
            assert KEPT.match(t.closed_reason or ""), t.closed_reason
            current[ws] = await rejoin(opened, supervised.ws_url, t, fence)

    followers = [asyncio.create_task(follow(ws, fence)) for ws, (_, fence) in held.items()]
    supervised.signal(signal.SIGHUP)
    await until(lambda: "rolling restart done" in supervised.log(), 60, "the rolling restart")
    log = supervised.log()
    # One at a time: the first new worker was ready before the first old one was stopped, and so on.
    order = re.findall(r"worker (\d) \(pid \d+\) (started|is ready)|stopping worker (\d)", log.split("SIGHUP")[1])
    steps = [(w or s, "stop" if s else what) for w, what, s in order]
    assert steps == [("1", "started"), ("1", "is ready"), ("1", "stop"),
                     ("2", "started"), ("2", "is ready"), ("2", "stop")], steps
    after = supervised.children()
    assert len(after) == 2 and not after & before
    # The tabs of the last old worker come back (a tab is current once it has rejoined).
    await until(lambda: all(t.closed_code is None for t in current.values()), 15, "every holder back")
    for f in followers:
        assert not f.done(), f  # no follower failed
        f.cancel()
    await asyncio.gather(*followers, return_exceptions=True)
    # Every lease still has its fence: Redis says so, and each holder's tab holds it now.
    client = redis_server.client()
    for ws, (_, fence) in held.items():
        assert client.get(lease_key(prefix, ws)) == str(fence)
        again = await current[ws].request("acquire")
        assert again["type"] == "acquired" and again["fence"] == fence, again
    assert not lost


# -- the restart grace -------------------------------------------------------------------------


async def test_restart_grace_keeps_a_lease_past_its_ttl_ends_an_unclaimed_one_by_then_and_not_on_a_crash(
    servers: Cluster, opened: list[Tab]
) -> None:
    env = {"PRESENCE_RESTART_GRACE_MS": str(GRACE_MS)}
    stopping, crashing, staying = await asyncio.gather(*(
        servers.server_async(name, **env) for name in ("stopping", "crashing", "staying")
    ))
    alice = await tab(opened, stopping.ws_url, "alice", "kept", "alice-tab")
    carol = await tab(opened, stopping.ws_url, "carol", "unclaimed", "carol-tab")
    dave = await tab(opened, crashing.ws_url, "dave", "crashed", "dave-tab")
    fences = {t.workspace: (await t.request("acquire"))["fence"] for t in (alice, carol, dave)}
    watchers = {ws: await tab(opened, staying.ws_url, "bob", ws) for ws in ("unclaimed", "crashed")}
    for ws, w in watchers.items():
        assert w.state()["holder"]["fence"] == fences[ws]

    def freed(ws: str) -> Any:
        w = watchers[ws]
        return w.expect("state", lambda m: m.get("holder") is None, timeout=GRACE_MS / 1000 + 5, after=len(w.messages))

    unclaimed, crashed = asyncio.create_task(freed("unclaimed")), asyncio.create_task(freed("crashed"))
    assert stopping.proc is not None and crashing.proc is not None
    t0 = time.monotonic()
    stopping.proc.send_signal(signal.SIGTERM)
    crashing.proc.send_signal(signal.SIGKILL)
    assert await alice.closed(timeout=5) == 1012 and await carol.closed(timeout=5) == 1012

    # A crash keeps the TTL rule: dave's lease ends within its TTL (and an expiry check).
    gone = await crashed
    assert gone["_t"] - t0 < TTL_S + 1.0, gone["_t"] - t0
    # Alice comes back well after her lease's TTL, within the restart grace: same lease, same fence.
    await asyncio.sleep(max(0.0, t0 + TTL_S + 1.0 - time.monotonic()))
    back = await rejoin(opened, staying.ws_url, alice, fences["kept"])
    assert back.welcome is not None and back.welcome["state"]["holder"]["fence"] == fences["kept"]
    # Nobody comes back for carol's: it outlives its TTL and ends by the grace.
    ended = await unclaimed
    assert TTL_S + 1.0 < ended["_t"] - t0 < GRACE_MS / 1000 + 1.5, ended["_t"] - t0
    assert ended["change"]["kind"] == "expired", ended["change"]


async def test_restart_grace_off_keeps_the_ttl_rule(servers: Cluster, opened: list[Tab]) -> None:
    stopping, staying = await asyncio.gather(*(
        servers.server_async(name, PRESENCE_RESTART_GRACE_MS="0") for name in ("stopping", "staying")
    ))
    carol = await tab(opened, stopping.ws_url, "carol", "doc", "carol-tab")
    fence = (await carol.request("acquire"))["fence"]
    bob = await tab(opened, staying.ws_url, "bob", "doc")
    assert bob.state()["holder"]["fence"] == fence
    mark = len(bob.messages)
    assert stopping.proc is not None
    t0 = time.monotonic()
    stopping.proc.send_signal(signal.SIGTERM)
    assert await carol.closed(timeout=5) == 1012 and carol.closed_reason == "server restarting, reconnect"
    ended = await bob.expect("state", lambda m: m.get("holder") is None, timeout=TTL_S + 5, after=mark)
    assert ended["_t"] - t0 < TTL_S + 1.0


# -- refused command lines ---------------------------------------------------------------------


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_") and k != "PORT"}
    return subprocess.run([sys.executable, "-m", "presence", "serve", *args], env={**full, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_more_than_one_worker_on_the_embedded_store_is_refused_in_one_line() -> None:
    out = serve("--workers", "2", "--port", str(free_port()))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "needs a Redis" in out.stderr and "PRESENCE_REDIS_URL" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_a_bad_number_of_workers_is_refused(count: str) -> None:
    out = serve("--workers", count)
    assert out.returncode == 2 and "--workers" in out.stderr and "Traceback" not in out.stderr


def test_workers_on_a_port_in_use_are_refused_before_any_starts(redis_server: RedisServer) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = serve("--workers", "2", "--port", str(port), PRESENCE_REDIS_URL=redis_server.url, PRESENCE_DEV="1")
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr, out.stderr
    assert "started" not in out.stderr



async def test_workers_of_a_killed_supervisor_drain_and_exit(supervised: Supervised, opened: list[Tab]) -> None:
    t = await tab(opened, supervised.ws_url, "alice", "doc", "alice-tab")
    workers = supervised.children()
    supervised.signal(signal.SIGKILL)  # nobody would stop or restart them any more
    assert await t.closed(timeout=10) == 1012
    await until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 15, "the workers exited")
    assert "the supervisor is gone: stopping" in supervised.log()
