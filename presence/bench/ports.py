"""Free ports on 127.0.0.1 for the processes of ``presence bench`` and of the tests."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Ports:
    """Free ports of one range, never one handed out twice by this process: a server may not have
    bound its port yet when the next one is picked."""

    def __init__(self, span: range) -> None:
        self.span = span
        self._taken: set[int] = set()

    def narrow(self, index: int, count: int) -> None:
        """Keep only the ``index``-th of ``count`` equal parts of the range: processes that start
        servers side by side (parallel test workers) then never pick the same port."""
        size = len(self.span) // count
        start = self.span.start + index * size
        self.span = range(start, start + size)

    def take(self, also: Callable[[int], bool] = lambda port: True) -> int:
        """A free port (for which ``also`` holds too)."""
        for _ in range(500):
            port = random.choice(self.span)
            if port not in self._taken and bindable(port) and also(port):
                self._taken.add(port)
                return port
        raise RuntimeError(f"no free port between {self.span.start} and {self.span.stop - 1}")

    def take_run(self, n: int) -> list[int]:
        """``n`` consecutive free ports."""
        for _ in range(200):
            first = self.take(lambda p: p + n <= self.span.stop)
            run = list(range(first, first + n))
            if all(p not in self._taken and bindable(p) for p in run[1:]):
                self._taken.update(run)
                return run
        raise RuntimeError(f"no {n} consecutive free ports")


# Below the kernel's ephemeral range (32768 and up), so an outgoing connection cannot take a port
# between its pick and the server's bind; below 55000, this machine's rule; apart from the ports of
# the tests' Redis Cluster nodes (17000-27000, their buses 10000 above).
PORTS = Ports(range(10000, 17000))


def free_port() -> int:
    return PORTS.take()


def free_ports(n: int) -> list[int]:
    """``n`` consecutive free ports (a supervisor's workers' own addresses)."""
    return PORTS.take_run(n)
