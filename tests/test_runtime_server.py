"""The action port as a client sees it (`worker.ActionWorker`, `protocol.py`, `app.py`): slow and
half-open clients hold no activation up and are cut off by the configured time-outs (408 in
JSON), a graceful stop does not wait for idle connections, a run that finds no free slot waits
until its deadline at most, and the time-outs are read from the environment."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from runtime_harness import ProcessRuntime
from warmwhisk_runtime.config import load_config

ECHO = "def main(args):\n    return args\n"
CONCURRENT = {"__OW_ALLOW_CONCURRENT": "true"}


def _port(runtime: ProcessRuntime) -> int:
    return int(runtime.url.rsplit(":", 1)[1])


def _read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class _Tricklers:
    """`count` connections that each send a request's first line, then one byte of a header at a
    time every `every_s` seconds, from one thread, until stopped."""

    def __init__(self, port: int, count: int, every_s: float) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(b"POST /run HTTP/1.1\r\nHost: x\r\n")
        self._every_s = every_s
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(self._every_s):
            for sock in self.sockets:
                try:
                    sock.send(b"X")
                    self.sent += 1
                except OSError:
                    pass  # closed by the server's header time-out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def tricklers() -> Iterator[list[_Tricklers]]:
    started: list[_Tricklers] = []
    yield started
    for group in started:
        group.stop()


def test_slow_clients_hold_no_activation_up(start_process_runtime, tricklers):
    runtime = start_process_runtime(env=CONCURRENT)
    assert runtime.init(ECHO)[0] == 200
    tricklers.append(_Tricklers(_port(runtime), count=100, every_s=0.2))
    time.sleep(0.5)
    with requests.Session() as session:
        for i in range(50):
            response = session.post(runtime.url + "/run", json={"value": {"i": i}}, timeout=5)
            assert (response.status_code, response.json()) == (200, {"i": i})
    assert tricklers[0].sent >= 100  # they were trickling the whole time
    assert runtime.alive()


def test_a_client_too_slow_with_its_headers_or_body_gets_408_and_is_closed(start_process_runtime):
    runtime = start_process_runtime(
        env={"WARMWHISK_HEADER_TIMEOUT_S": "1", "WARMWHISK_BODY_TIMEOUT_S": "1.5", **CONCURRENT}
    )
    assert runtime.init(ECHO)[0] == 200
    for partial, why in (
        (b"POST /run HTTP/1.1\r\nHost: x\r\n", "headers took longer than 1 s"),
        (b"POST /run HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}", "body took longer than 1.5 s"),
    ):
        with socket.create_connection(("127.0.0.1", _port(runtime))) as sock:
            sock.sendall(partial)
            answer = _read_until_closed(sock, timeout_s=10)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in head
        assert why in json.loads(body)["error"]
    assert runtime.run({"still": "up"}) == (200, {"still": "up"})


def test_an_idle_connection_is_closed_after_the_keepalive(start_process_runtime):
    runtime = start_process_runtime(env={"WARMWHISK_KEEPALIVE_S": "1"})
    with socket.create_connection(("127.0.0.1", _port(runtime))) as sock:
        started = time.monotonic()
        assert _read_until_closed(sock, timeout_s=10) == b""  # closed without a word
        assert time.monotonic() - started < 8


def test_a_graceful_stop_does_not_wait_for_idle_connections(start_process_runtime):
    runtime = start_process_runtime(env=CONCURRENT)
    assert runtime.init(ECHO)[0] == 200
    with socket.create_connection(("127.0.0.1", _port(runtime))) as idle:
        idle.sendall(b"POST /run HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")  # answered, then kept open
        time.sleep(0.2)
        started = time.monotonic()
        assert isinstance(runtime, ProcessRuntime)
        runtime.process.send_signal(signal.SIGTERM)
        assert runtime.process.wait(timeout=20) == 0
        assert time.monotonic() - started < 10  # not the 30 s graceful time-out


def test_a_run_that_finds_no_free_slot_before_its_deadline_says_so(start_process_runtime):
    runtime = start_process_runtime(env={**CONCURRENT, "WARMWHISK_MAX_CONCURRENT": "1"})
    sleeper = "import time\ndef main(args):\n    time.sleep(args['s'])\n    return args\n"
    assert runtime.init(sleeper)[0] == 200

    def post(body: dict) -> tuple[int, dict]:
        response = requests.post(runtime.url + "/run", json=body, timeout=30)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=2) as pool:
        long = pool.submit(post, {"value": {"s": 2}})
        time.sleep(0.3)
        deadline = str(int(time.time() * 1000) + 500)
        status, body = post({"value": {"s": 0}, "deadline": deadline})
        assert status == 200 and "No activation slot became free before the deadline" in body["error"]
        waiting = pool.submit(post, {"value": {"s": 0}})  # no deadline: waits for the slot
        assert long.result(timeout=30) == (200, {"s": 2})
        assert waiting.result(timeout=30) == (200, {"s": 0})


def test_the_time_outs_and_the_connection_cap_come_from_the_environment():
    config = load_config(
        [],
        {
            "WARMWHISK_HEADER_TIMEOUT_S": "2.5",
            "WARMWHISK_BODY_TIMEOUT_S": "30",
            "WARMWHISK_KEEPALIVE_S": "5",
            "WARMWHISK_MAX_CONNECTIONS": "64",
        },
    )
    assert (config.header_timeout_s, config.body_timeout_s, config.keepalive_s) == (2.5, 30.0, 5)
    assert config.max_connections == 64
    defaults = load_config([], {})
    assert (defaults.header_timeout_s, defaults.body_timeout_s) == (10.0, 60.0)
    assert defaults.max_connections == 1000
    for name, bad in (("WARMWHISK_HEADER_TIMEOUT_S", "0"), ("WARMWHISK_MAX_CONNECTIONS", "lots")):
        with pytest.raises(SystemExit, match=name):
            load_config([], {name: bad})
