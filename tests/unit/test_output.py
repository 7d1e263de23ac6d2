"""Output: a connection's outgoing frames, against a socket and a server transport of our own
(what the server's tests cannot see: which task sends, in which order, stamped when); and the
middleware that hands ``/ws`` its connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from presence.connections.output import Output
from presence.connections.transport import ExposeTransport
from presence.wire.messages import Ping, Refreshed, encode


class Socket:
    """The ASGI side: ``send_text`` waits while ``gate`` is clear (a peer that does not read)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str | None] | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def send_text(self, data: str) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionResetError("gone")
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)


class Transport:
    """The server's transport: takes a frame straight away while ``open`` and nothing is buffered."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.open = True
        self.unread = 0
        self.aborted = False

    def buffered(self) -> int:
        return self.unread

    def abort(self) -> bool:
        self.aborted = True
        return True

    def write(self, frame: bytes) -> bool:
        if not self.open or self.unread:
            return False
        assert frame[0] == 0x81  # a final text frame, unmasked, as the server sends it
        n = frame[1]
        self.socket.sent.append(frame[2 if n < 126 else 4 if n == 126 else 10:].decode())
        return True


def writers() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("writer ", "close "))]


async def drained(output: Output) -> None:
    """Until the output's writer has sent everything (and ended)."""
    for task in writers():
        await task


def kinds(socket: Socket) -> list[object]:
    return [json.loads(text).get("id", json.loads(text)["type"]) for text in socket.sent]


async def test_an_idle_connection_writes_straight_to_the_socket_and_holds_no_task() -> None:
    socket = Socket()
    output = Output(socket, "c-1", transport=Transport(socket))
    for i in range(3):
        output.send(Refreshed(id=i, expires_in_ms=None))
    assert output.send_frame('{"type":"update"}')
    assert kinds(socket) == [0, 1, 2, "update"]
    assert writers() == []  # nothing ever waited: no task, no queue
    await output.stop()


async def test_what_has_to_wait_goes_out_in_order_and_the_writer_ends_with_the_queue() -> None:
    socket = Socket()
    transport = Transport(socket)
    output = Output(socket, "c-1", transport=transport)
    transport.open = False  # the server does not take a frame now (paused, or its buffer not empty)
    socket.gate.clear()
    output.send(Refreshed(id=0, expires_in_ms=None))
    transport.open = True
    output.send(Refreshed(id=1, expires_in_ms=None))  # behind the first, although the socket takes it now
    assert output.send_frame('{"type":"update"}')
    assert len(writers()) == 1 and socket.sent == []
    socket.gate.set()
    await drained(output)
    assert kinds(socket) == [0, 1, "update"]
    assert writers() == [] and output.buffered == 0
    output.send(Refreshed(id=2, expires_in_ms=None))  # idle again: straight through
    assert kinds(socket) == [0, 1, "update", 2] and writers() == []
    await output.stop()


async def test_a_lease_time_is_stamped_when_sent_not_when_queued() -> None:
    socket = Socket()
    transport = Transport(socket)
    output = Output(socket, "c-1", transport=transport)
    output.send(Ping(n=1, ttl_ms=10_000, ttls={"doc": 8_000}))  # sent at once: nothing taken off
    transport.open = False
    socket.gate.clear()
    output.send(Refreshed(id=0, expires_in_ms=None))  # the writer hangs in its send
    output.send(Ping(n=2, ttl_ms=10_000, ttls={"doc": 8_000}))
    await asyncio.sleep(0.2)  # the time the ping waits behind a peer that does not read
    socket.gate.set()
    await drained(output)
    first, _, second = (json.loads(text) for text in socket.sent)
    assert (first["ttl_ms"], first["ttls"]) == (10_000, {"doc": 8_000})
    assert second["ttl_ms"] <= 10_000 - 200 and second["ttls"]["doc"] <= 8_000 - 200
    await output.stop()


@pytest.mark.parametrize("bound", ["messages", "bytes"])
async def test_a_backlog_over_its_bounds_closes_1013(bound: str) -> None:
    socket = Socket()
    transport = Transport(socket)
    output = Output(socket, "c-1", transport=transport, queue_size=4 if bound == "messages" else 1000,
                    buffer_bytes=1 << 20 if bound == "messages" else 400)
    transport.open = False
    socket.gate.clear()  # stopped reading: the first send hangs, the rest wait behind it
    sent, backlog = 0, 0
    while output.closing is None:
        message = Refreshed(id=sent, expires_in_ms=None)
        output.send(message)
        sent += 1
        backlog += len(encode(message))
        assert sent < 100
    assert output.closing.code == 1013
    if bound == "messages":
        assert sent == 5  # the one being sent, four queued, and the one too many
    else:
        assert backlog > 400 >= backlog - len(encode(message))
    await asyncio.wait_for(asyncio.gather(*writers(), return_exceptions=True), 5)
    assert socket.closed == (1013, "slow consumer: send queue overflow")  # not stuck behind the writer
    output.send(Refreshed(id=-1, expires_in_ms=None))
    assert writers() == []  # closing: nothing is taken any more
    await output.stop()


async def test_a_close_flushes_the_queue_first_and_an_idle_close_still_gets_out() -> None:
    socket = Socket()
    transport = Transport(socket)
    output = Output(socket, "c-1", transport=transport)
    output.close(4401, "token expired")
    await asyncio.wait_for(drained(output), 5)
    assert socket.closed == (4401, "token expired")
    await output.stop()

    socket = Socket()
    transport = Transport(socket)
    output = Output(socket, "c-2", transport=transport)
    transport.open = False
    output.send(Refreshed(id=0, expires_in_ms=None))
    output.close(1012, "restarting")
    output.send(Refreshed(id=1, expires_in_ms=None))  # after the close: dropped
    await asyncio.wait_for(drained(output), 5)
    assert kinds(socket) == [0] and socket.closed == (1012, "restarting")
    await output.stop()


async def test_a_failed_send_starts_no_writer_again_and_stop_awaits_what_runs() -> None:
    socket = Socket()
    transport = Transport(socket)
    output = Output(socket, "c-1", transport=transport)
    transport.open = False
    socket.fail = True
    output.send(Refreshed(id=0, expires_in_ms=None))
    await asyncio.gather(*writers(), return_exceptions=True)
    output.send(Refreshed(id=1, expires_in_ms=None))
    assert writers() == []  # the connection is broken: its reader sees the end
    await output.stop()

    socket = Socket()
    output = Output(socket, "c-2")  # no transport (another server): every message through the writer
    socket.gate.clear()
    output.send(Refreshed(id=0, expires_in_ms=None))
    [writer] = writers()
    await output.stop()
    assert writer.cancelled()
    output.send(Refreshed(id=1, expires_in_ms=None))
    assert writers() == [] and socket.sent == []


def test_the_ws_route_is_taken_directly_and_by_the_router_under_a_root_path() -> None:
    taken: list[str] = []

    def endpoint(by: str) -> Callable[[WebSocket], Awaitable[None]]:
        async def serve(websocket: WebSocket) -> None:
            taken.append(by)
            await websocket.accept()
            await websocket.send_text(by)
            await websocket.close()
        return serve

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint("router"))],
                    middleware=[Middleware(ExposeTransport, path="/ws", endpoint=endpoint("direct"))])
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "direct"
    with TestClient(app, root_path="/presence") as client, client.websocket_connect("/presence/ws") as ws:
        assert ws.receive_text() == "router"  # a root path: matched as Starlette does
    with TestClient(app) as client, pytest.raises(WebSocketDisconnect), client.websocket_connect("/wss"):
        pass  # any other path: the router, which has no such route
    assert taken == ["direct", "router"]
