"""A small TCP proxy for fault injection between a presence server and Redis.

It runs its own asyncio loop in a background thread, so a busy or blocked test loop never
delays the traffic it forwards (and a test may call it from sync or async code alike). Modes:

- ``up``: forward both ways, each chunk delayed by ``latency`` seconds (order preserved), or by
  ``latency_down`` on the way back from the target when set;
- ``cut``: every connection is reset at once, new ones are accepted and reset (a dead link that
  the client notices immediately: connection refused/reset);
- ``blackhole``: nothing is forwarded and nothing is closed, for existing and new connections
  alike (a partition: the client only notices by its own timeouts). Healing a blackhole resets
  the connections it held, as their byte streams lost data.

Only ever binds 127.0.0.1. ``close()`` stops the thread and every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

from procs import free_port

Mode = Literal["up", "cut", "blackhole"]
CHUNK = 65536
MAX_PENDING = 256  # chunks in flight per direction: latency never buffers without bound


class _Pair:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for w in (self.client, self.upstream):
            transport = w.transport
            if not transport.is_closing():
                transport.abort()
        for t in self.tasks:
            t.cancel()


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.latency = 0.0
        self.latency_down: float | None = None  # target -> client; None: same as ``latency``
        self.mode: Mode = "up"
        self.connections = 0  # accepted so far
        self._pairs: set[_Pair] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # -- control (thread-safe, synchronous) ---------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def set_latency(self, seconds: float, down: float | None = None) -> None:
        """Delay each chunk by ``seconds`` (towards the target) and ``down`` (back; default the same)."""
        self._call(self._set(latency=seconds, down=down))

    def cut(self) -> None:
        self._call(self._set(mode="cut"))

    def blackhole(self) -> None:
        self._call(self._set(mode="blackhole"))

    def heal(self) -> None:
        self._call(self._set(mode="up", latency=0.0))

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- inside the proxy's loop ----------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", free_port())
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set(self, mode: Mode | None = None, latency: float | None = None, down: float | None = None) -> None:
        if latency is not None:
            self.latency, self.latency_down = latency, down
        if mode is None or mode == self.mode:
            return
        previous, self.mode = self.mode, mode
        if mode == "cut" or previous == "blackhole":
            for pair in list(self._pairs):
                pair.reset()
            self._pairs.clear()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for pair in self._pairs for t in pair.tasks]
        for pair in list(self._pairs):
            pair.reset()
        self._pairs.clear()
        await asyncio.gather(*tasks, return_exceptions=True)  # every task ends before the loop stops

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair(writer, up_writer)
        if self.mode == "cut":  # cut while connecting
            pair.reset()
            return
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, pair, down=False)),
            asyncio.create_task(self._pipe(up_reader, writer, pair, down=True)),
        ]

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair, down: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_PENDING)

        async def deliver() -> None:
            while True:
                due, data = await pending.get()
                if not data:  # end of stream, after everything before it
                    return
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                if data and self.mode != "up":
                    continue  # blackhole: the bytes are lost
                delay = self.latency_down if down and self.latency_down is not None else self.latency
                await pending.put((loop.time() + delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            pair.reset()
            self._pairs.discard(pair)
