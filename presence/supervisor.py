"""Supervisor: ``presence serve --workers N``, N server processes on one port under one process.

Each worker is an ordinary ``presence serve`` process (:mod:`presence.worker`) of the
multi-process design: leases, presence and events go through Redis, so workers share nothing
but the port. The supervisor serves nothing itself; it starts, watches and stops the workers.

Sockets. On Linux each worker listens on a socket of its own, bound to the port with
``SO_REUSEPORT``: the kernel spreads new connections evenly over the workers, and a worker that
stops takes only its own accept queue with it (connections queued there and not yet accepted are
reset, and their clients reconnect). Where the OS has no such load balancing (macOS, the BSDs,
anything without ``SO_REUSEPORT``) the supervisor opens the port once and every worker accepts
from that one socket, which the OS spreads less evenly. Either way each worker also serves on an
address of its own, ``HOST:FIRST+k-1`` for worker k (``FIRST`` is ``PRESENCE_WORKER_PORTS``,
default the port + 1), opened once by the supervisor and handed to each process of that worker
in turn: Prometheus scrapes each worker's ``/metrics`` there.

Lifecycle:

- A worker that exits when it was not asked to (a crash, SIGKILL, the OOM killer) is started
  again after about a second, twice as long each time it dies again, at most 30 s; a worker that
  stayed up for a minute starts from the short delay again.
- SIGTERM or SIGINT: every worker gets SIGTERM and drains (its tabs' leases kept for the restart
  grace, each tab closed with 1012); once all have exited, exit status 0. A worker still running
  ``STOP_TIMEOUT_S`` after its SIGTERM is killed.
- SIGHUP: a rolling restart. For each worker in turn a new process starts on the same sockets;
  once it is ready (its ``/readyz`` would answer 200, which it tells over its socket pair) the old
  one gets SIGTERM, and the next begins once that one has exited. A successor not ready within
  ``READY_TIMEOUT_S`` is stopped and the restart ends there (the old workers go on serving). New
  processes run the code installed now, with the supervisor's environment. A SIGHUP during a
  rolling restart starts another when it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .gateway.backoff import Backoff
from .http.stack import bind_socket
from .settings import Settings
from .tasks import TaskSet
from .worker import READY

log = logging.getLogger("presence.supervisor")

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
STABLE_S = 60.0  # a worker up this long died of something new: its restart delay starts afresh
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


@dataclass(eq=False)
class Worker:
    """One process of worker ``slot``."""

    slot: int
    proc: asyncio.subprocess.Process
    channel: socket.socket  # the supervisor's end of the socket pair
    started: float = field(default_factory=time.monotonic)
    ready: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    exited: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __str__(self) -> str:
        return f"worker {self.slot} (pid {self.proc.pid})"

    def terminate(self) -> None:
        if not self.exited.done():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class Exited:
    worker: Worker


@dataclass(frozen=True, slots=True)
class Replace:
    done: asyncio.Future[bool]


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Event = Exited | Replace | Stop


class Listeners:
    """The sockets the workers serve on: the port (one socket per process with SO_REUSEPORT, else
    one for all) and each worker's own address."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.host, self.port = settings.host, settings.port
        self.first = settings.worker_ports or settings.port + 1
        self.count = count
        self.shared: socket.socket | None = None
        self.own: dict[int, socket.socket] = {}

    def open(self) -> str | None:
        """Bind every address now; the reason (one line) when one cannot be."""
        last = self.first + self.count - 1
        if last > 65535 or self.first <= self.port <= last:
            return (f"the workers' own ports {self.first}-{last} must be valid ports apart from the port "
                    f"{self.port}: set PRESENCE_WORKER_PORTS to the first of {self.count} free ports")
        try:
            # Not SO_REUSEPORT: this bind fails when anything listens there, even another supervisor's workers.
            probe = bind_socket(self.host, self.port)
        except OSError as exc:
            return self._cannot(self.port, exc, "Is another server running there? Choose another with --port.")
        if REUSE_PORT:
            probe.close()
        else:
            self.shared = probe
        for slot in range(1, self.count + 1):
            port = self.first + slot - 1
            try:
                self.own[slot] = bind_socket(self.host, port)
            except OSError as exc:
                return self._cannot(port, exc, f"(worker {slot}'s own address) Set PRESENCE_WORKER_PORTS to the "
                                               f"first of {self.count} free ports.")
        return None

    def _cannot(self, port: int, exc: OSError, advice: str) -> str:
        self.close()
        return f"cannot listen on {self.host}:{port}: {exc.strerror or exc}. {advice}"

    def for_worker(self, slot: int) -> tuple[socket.socket, socket.socket]:
        """The serving socket and the own-address socket of a new process of worker ``slot``.
        A serving socket made for it (SO_REUSEPORT) is the caller's to close once it is handed on."""
        serving = self.shared or bind_socket(self.host, self.port, reuse_port=True)
        return serving, self.own[slot]

    def own_url(self, slot: int) -> str:
        return f"http://{self.host}:{self.first + slot - 1}"

    def close(self) -> None:
        for sock in [*self.own.values(), *([self.shared] if self.shared else [])]:
            sock.close()


class Supervisor:
    """Lifecycle: ``await run()`` until SIGTERM or SIGINT; returns the exit status."""

    def __init__(self, count: int, flags: list[str], listeners: Listeners) -> None:
        self.count = count
        self.flags = flags
        self.listeners = listeners
        self.tasks = TaskSet()
        self.stopping = asyncio.Event()
        # A slot's events: its workers' exits (one each), one Replace at a time, one Stop.
        self._events: dict[int, asyncio.Queue[Event]] = {
            slot: asyncio.Queue(maxsize=16) for slot in range(1, count + 1)
        }
        self._roll: asyncio.Task[None] | None = None
        self._again = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._hup)
        log.info("starting %d workers on %s:%d (%s)", self.count, self.listeners.host, self.listeners.port,
                 "a socket each, SO_REUSEPORT" if REUSE_PORT else "one shared socket")
        keepers = [loop.create_task(self._keep(slot), name=f"worker {slot}") for slot in self._events]
        await self.stopping.wait()
        if self._roll is not None:
            self._roll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._roll
        await asyncio.gather(*keepers)
        await self.tasks.close()
        log.info("every worker has exited")
        return 0

    def _stop(self, sig: int) -> None:
        if self.stopping.is_set():
            return
        log.info("%s: stopping every worker (each drains its tabs)", signal.Signals(sig).name)
        self.stopping.set()
        for events in self._events.values():
            events.put_nowait(Stop())

    def _hup(self) -> None:
        if self.stopping.is_set():
            return
        if self._roll is not None and not self._roll.done():
            log.info("SIGHUP during a rolling restart: another follows it")
            self._again = True
            return
        self._roll = self.tasks.spawn(self._rolling_restart(), name="rolling restart")

    async def _rolling_restart(self) -> None:
        again = True
        while again:
            self._again = False
            log.info("SIGHUP: restarting the %d workers one at a time", self.count)
            for slot, events in self._events.items():
                done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
                events.put_nowait(Replace(done))
                if not await done:
                    log.error("rolling restart stopped at worker %d: its new process was not ready within %.0f s; "
                              "the old workers go on serving", slot, READY_TIMEOUT_S)
                    return
            log.info("rolling restart done")
            again = self._again

    # -- one slot -----------------------------------------------------------------------------

    async def _keep(self, slot: int) -> None:
        """Keep worker ``slot`` running until the supervisor stops; then stop its processes."""
        events = self._events[slot]
        backoff = Backoff(base=1.0, cap=30.0)
        live: set[Worker] = set()
        current = await self._start_or_revive(slot, backoff, live, "")
        try:
            while current is not None:
                match await events.get():
                    case Exited(worker=worker):
                        live.discard(worker)
                        if worker is not current or self.stopping.is_set():
                            continue  # replaced by a rolling restart, or stopping
                        if time.monotonic() - worker.started >= STABLE_S:
                            backoff.reset()
                        current = await self._start_or_revive(slot, backoff, live, f"{worker} {_status(worker)}")
                    case Replace(done=done):
                        current = await self._replace(current, live, done)
                    case Stop():
                        return
        finally:
            await self._stop_all(live)

    async def _start_or_revive(self, slot: int, backoff: Backoff, live: set[Worker], died: str) -> Worker | None:
        """A new process of worker ``slot``: at once, or after ``died`` (what happened) its backoff
        delay; None when the supervisor stops meanwhile."""
        while True:
            if died:
                delay = backoff.next_delay()
                log.error("%s; starting it again in %.1f s", died, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                if self.stopping.is_set():
                    return None
            try:
                worker = await self._start(slot)
            except OSError as exc:
                died = f"worker {slot} could not be started ({exc})"
                continue
            live.add(worker)
            return worker

    async def _replace(self, old: Worker, live: set[Worker], done: asyncio.Future[bool]) -> Worker:
        """A new process in place of ``old``, once it is ready; ``old`` stays if it is not."""
        try:
            new = await self._start(old.slot)
        except OSError as exc:
            log.error("worker %d: a new process could not be started (%s)", old.slot, exc)
            done.set_result(False)
            return old
        live.add(new)
        stop = asyncio.get_running_loop().create_task(self.stopping.wait())
        either: set[asyncio.Future[Any]] = {new.ready, stop}
        try:
            await asyncio.wait(either, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not (new.ready.done() and new.ready.result()) or self.stopping.is_set():
            new.terminate()
            done.set_result(False)
            return old
        log.info("stopping %s, replaced by %s", old, new)
        old.terminate()
        await self._reap(old)
        done.set_result(True)
        return new

    async def _start(self, slot: int) -> Worker:
        serving, own = self.listeners.for_worker(slot)
        mine, theirs = socket.socketpair()
        fds = f"{serving.fileno()},{own.fileno()}"
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "presence", "serve", *self.flags, "--worker", str(slot), "--fds", fds,
                "--channel", str(theirs.fileno()), pass_fds=(serving.fileno(), own.fileno(), theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
            if serving is not self.listeners.shared:
                serving.close()
        mine.setblocking(False)
        worker = Worker(slot, proc, mine)
        log.info("%s started", worker)
        self.tasks.spawn(self._listen(worker), name=f"{worker} channel")
        self.tasks.spawn(self._watch(worker), name=f"{worker} exit")
        return worker

    async def _listen(self, worker: Worker) -> None:
        """Read the worker's socket pair: ``ready`` once; the end when the process is gone."""
        loop = asyncio.get_running_loop()
        received = b""
        try:
            while chunk := await loop.sock_recv(worker.channel, 64):
                received += chunk
                if READY in received and not worker.ready.done():
                    worker.ready.set_result(True)
                    log.info("%s is ready (its own address: %s)", worker, self.listeners.own_url(worker.slot))
                received = received[-len(READY):]
        except OSError:
            pass
        finally:
            if not worker.ready.done():
                worker.ready.set_result(False)
            worker.channel.close()

    async def _watch(self, worker: Worker) -> None:
        worker.exited.set_result(await worker.proc.wait())
        self._events[worker.slot].put_nowait(Exited(worker))

    async def _reap(self, worker: Worker) -> None:
        """Wait for ``worker`` (asked to stop) to exit; kill it after STOP_TIMEOUT_S."""
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("%s did not exit within %.0f s of SIGTERM: killed", worker, STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
            await worker.exited

    async def _stop_all(self, workers: set[Worker]) -> None:
        for worker in workers:
            worker.terminate()
        await asyncio.gather(*(self._reap(w) for w in workers))
        for worker in workers:
            log.info("%s %s", worker, _status(worker))


def _status(worker: Worker) -> str:
    code = worker.exited.result() if worker.exited.done() else None
    if code is None:
        return "is running"
    if code < 0:
        return f"was ended by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def supervise(settings: Settings, count: int, flags: list[str]) -> int:
    """Run ``count`` workers (``flags``: their ``presence serve`` flags) until SIGTERM; the exit status."""
    listeners = Listeners(settings, count)
    problem = listeners.open()
    if problem is not None:
        print(f"presence: {problem}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(Supervisor(count, flags, listeners).run())
    finally:
        listeners.close()
