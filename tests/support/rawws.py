"""A raw WebSocket client for the tests of clients that misbehave below the protocol: it writes
frames (pings, text) but reads nothing after the upgrade's response, so whatever the server
answers piles up on the server's side. Blocking: run its functions in a worker thread."""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path

PING = 0x9
TEXT = 0x1


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (payloads under 64 KiB)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes((0x80 | n,)) if n < 126 else bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode,)) + head + mask + masked


def connect(port: int, path: str = "/ws", timeout: float = 5.0) -> socket.socket:
    """An upgraded WebSocket with a small receive window (so what it does not read stays on the
    server), after reading exactly the upgrade's response."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"closed during the upgrade: {response!r}"
        response += byte
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def send_until_dropped(sock: socket.socket, data: bytes, budget: float, every: float = 0.0) -> float | None:
    """Sends ``data`` again and again (every ``every`` seconds; 0: as fast as the server reads)
    until the server drops the connection: seconds until then, or None if it never did within
    ``budget`` seconds."""
    started = time.monotonic()
    while (left := budget - (time.monotonic() - started)) > 0:
        sock.settimeout(left)
        try:
            sock.sendall(data)
        except TimeoutError:
            return None  # the server stopped reading, and kept the connection
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
        if every:
            time.sleep(every)
    return None
