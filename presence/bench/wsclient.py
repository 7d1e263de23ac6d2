"""What a tab says first (:func:`dev_token`, :func:`hello`: the bench's tabs and the tests' alike), and
a minimal WebSocket client (RFC 6455) on an asyncio ``Protocol``, for driving thousands of tabs
from one process on a 2-core machine: no task per connection, frames parsed in ``data_received``,
the application's ``ping`` answered there too.

Client frames carry the all-zero masking key. RFC 6455 asks for a random one to protect caching
proxies on the path; there is no proxy on loopback, and XOR-ing every byte in Python would make the
client, not the server, the thing measured. Servers must accept any key.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import Any

import msgspec

from .. import auth
from ..settings import DEV_SECRET

Message = dict[str, Any]
TOKEN_TTL_S = 7200  # the bench's tabs: a full run outlives an hour

_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
_ZERO_MASK = b"\x00\x00\x00\x00"


def dev_token(user: str, name: str | None = None, secret: str = DEV_SECRET, **claims: Any) -> str:
    """A token of ``user`` (named ``name``, else ``user.title()``) that a server in dev mode takes:
    what the bench's tabs and the tests' present. ``claims``: :func:`presence.auth.mint`'s."""
    return auth.mint(secret, user, name or user.title(), **claims)


def hello(token: str, workspace: str, tab: str, **extra: Any) -> Message:
    """A tab's first frame."""
    return {"type": "hello", "token": token, "workspace": workspace, "tab": tab, **extra}


def frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + _ZERO_MASK + payload


def _quiet(fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """Nobody may be waiting any more when a connection dies: no 'exception never retrieved'."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut


class WsClient(asyncio.Protocol):
    """One connection. ``await connect(...)``; then ``send(msg)``, ``await next(pred)``; messages
    also go to ``on_message``. Application pings are answered unless ``answer_pings`` is false."""

    def __init__(self, on_message: Callable[[WsClient, Message], None] | None = None,
                 answer_pings: bool = True) -> None:
        self.on_message = on_message
        self.answer_pings = answer_pings
        self.transport: Any = None
        self.close_code: int | None = None
        self._buf = bytearray()
        self._upgraded = False
        self._handshake: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[int] | None = None
        self._waiters: list[tuple[Callable[[Message], bool], asyncio.Future[Message]]] = []
        self._fragments: list[bytes] = []
        self.bytes_in = 0  # payload bytes of the messages received

    # -- connection ---------------------------------------------------------------------------

    @classmethod
    async def connect(cls, host: str, port: int, path: str = "/ws", timeout: float = 10.0,
                      **kw: Any) -> WsClient:
        loop = asyncio.get_running_loop()
        proto = cls(**kw)
        proto._handshake = _quiet(loop.create_future())
        proto._closed = loop.create_future()
        transport, _ = await asyncio.wait_for(loop.create_connection(lambda: proto, host, port), timeout)
        proto.transport = transport  # uvloop may call connection_made later
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        try:
            await asyncio.wait_for(asyncio.shield(proto._handshake), timeout)
        except BaseException:
            proto.abort()
            raise
        return proto

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are not asyncio.Transport
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(self.close_code if self.close_code is not None else 1006)
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(ConnectionError(f"connection closed ({self.close_code})"))
        self._waiters.clear()

    @property
    def open(self) -> bool:
        return self.transport is not None and self._upgraded

    async def closed(self, timeout: float | None = None) -> int:
        assert self._closed is not None
        return await asyncio.wait_for(asyncio.shield(self._closed), timeout)

    def close(self, code: int = 1000) -> None:
        if self.transport is not None:
            self.transport.write(frame(code.to_bytes(2, "big"), opcode=8))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- sending and waiting ----------------------------------------------------------------

    def send(self, msg: Message | bytes) -> None:
        if self.transport is None:
            raise ConnectionError("not connected")
        self.transport.write(frame(msg if isinstance(msg, bytes) else _encoder.encode(msg)))

    def next(self, where: Callable[[Message], bool]) -> asyncio.Future[Message]:
        """A future for the next message for which ``where`` holds (messages already received
        do not count)."""
        fut: asyncio.Future[Message] = _quiet(asyncio.get_running_loop().create_future())
        if self.transport is None:
            fut.set_exception(ConnectionError("not connected"))
        else:
            self._waiters.append((where, fut))
        return fut

    async def request(self, msg: Message, timeout: float = 10.0) -> Message:
        """Send ``msg`` (which carries an ``id``) and return the reply with the same id."""
        rid = msg["id"]
        fut = self.next(lambda m: m.get("id") == rid)
        self.send(msg)
        return await asyncio.wait_for(fut, timeout)

    # -- receiving ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            assert self._handshake is not None
            if b" 101 " not in status + b" ":
                self._handshake.set_exception(ConnectionError(f"upgrade refused: {status.decode(errors='replace')}"))
                self.abort()
                return
            self._upgraded = True
            self._handshake.set_result(None)
        while len(buf) >= 2:
            b0, n = buf[0], buf[1] & 0x7F
            start = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, start = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + n:
                return
            payload = bytes(buf[start : start + n])
            del buf[: start + n]
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == 8:  # close: answer it, the server closes the TCP connection
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self.transport is not None:
                self.transport.write(frame(payload[:2], opcode=8))
            return
        if opcode == 9:
            if self.transport is not None:
                self.transport.write(frame(payload, opcode=10))
            return
        if opcode in (1, 2, 0):
            self._fragments.append(payload)
            if not fin:
                return
            data, self._fragments = b"".join(self._fragments), []
            self._message(data)

    def _message(self, data: bytes) -> None:
        self.bytes_in += len(data)
        msg = _decoder.decode(data)
        if self.answer_pings and msg.get("type") == "ping" and self.transport is not None:
            self.transport.write(frame(b'{"type":"pong","n":%d}' % msg["n"]))
        if self._waiters:
            still = []
            for where, fut in self._waiters:
                if fut.done():
                    continue
                if where(msg):
                    fut.set_result(msg)
                else:
                    still.append((where, fut))
            self._waiters = still
        if self.on_message is not None:
            self.on_message(self, msg)
