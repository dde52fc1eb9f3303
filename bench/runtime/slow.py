"""Slow clients: good activations measured while many connections trickle a request's headers
one byte a second (as an attacker holding connections open would), against the same runtime."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from lib.actions import TRIVIAL_VALUE
from lib.load import http_worker, measure
from lib.report import logger
from lib.targets import LocalProcess

log = logger("bench", clock=False)
# What a trickling connection sends first, then one byte of a header value at a time.
# The trickling starts this long before the measurement.
LEAD_S = 2.0
HEAD = b"POST /run HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nX-Slow: "


class Tricklers:
    """`count` connections to `port`, each sent one more byte every `every_s` seconds from one
    thread; a connection the server closed (its header time-out) is opened again."""

    def __init__(self, port: int, count: int, every_s: float) -> None:
        self.port, self.every_s = port, every_s
        self.sockets = [self._open() for _ in range(count)]
        self.bytes_sent = 0
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="tricklers", daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(HEAD)
        return sock

    def _trickle(self) -> None:
        while not self._stop.wait(self.every_s):
            for i, sock in enumerate(self.sockets):
                try:
                    sock.send(b"a")
                    self.bytes_sent += 1
                except OSError:
                    sock.close()
                    with contextlib.suppress(OSError):
                        self.sockets[i] = self._open()
                        self.reopened += 1

    @contextlib.contextmanager
    def running(self) -> Iterator[Tricklers]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            for sock in self.sockets:
                sock.close()


def slow_clients(server: LocalProcess, count: int, requests: int, warmup: int) -> dict[str, Any]:
    """The runtime's latency at c=1 while `count` connections trickle one byte a second."""
    tricklers = Tricklers(server.port, count, every_s=1.0)
    with tricklers.running():
        time.sleep(LEAD_S)
        result = measure(http_worker(server.port, TRIVIAL_VALUE), 1, requests, warmup, server)
        sent, reopened = tricklers.bytes_sent, tricklers.reopened
    log(
        f"slow clients ({count} connections, 1 byte/s): p50 {result['p50_ms']:.3f} ms "
        f"p99 {result['p99_ms']:.3f} ms; {sent} bytes trickled, {reopened} connections reopened"
    )
    return {**result, "connections": count, "bytes_trickled": sent, "reopened": reopened}
