"""The router (routed mode) against the in-memory registry and real HTTP hosts on loopback:
packing, waiting for a slot, registering again, failing over, and every error's reason."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from warmwhisk_protocol.forwarding import ActionSpec, Envelope
from warmwhisk_protocol.memory import InMemoryRegistry
from warmwhisk_protocol.records import HostRecord
from warmwhisk_runtime.router import Router, RoutingError

SPEC = ActionSpec("guest", "echo", "main", False, "def main(a):\n    return a\n")
KEY = SPEC.key("/guest/echo")


class _Host(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.headers["X-Warmwhisk-Action"], body))  # type: ignore[attr-defined]
        payload = Envelope(200, b'{"echo": ' + body + b"}", True, "printed\n", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hosts() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Host) for _ in range(2)]
    for server in servers:
        server.seen = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def record(host_id: str, server: http.server.ThreadingHTTPServer, limit: int = 2) -> HostRecord:
    return HostRecord(host_id, f"127.0.0.1:{server.server_address[1]}", "guest", (KEY,), (), "warm", limit)


def test_a_run_is_forwarded_and_the_slot_released_with_its_duration(hosts) -> None:
    registry = InMemoryRegistry()
    router = Router(registry)
    router.register(KEY, SPEC)
    registry.heartbeat(record("h1", hosts[0]))
    answer = router.forward(KEY, b'{"x": 1}', timeout_s=5)
    assert answer.ok and json.loads(answer.body) == {"echo": {"x": 1}} and answer.stdout == "printed\n"
    assert hosts[0].seen == [(KEY, b'{"x": 1}')]
    stats = registry.pool_stats(KEY)
    assert (stats.acquired, stats.completed, stats.timed) == (1, 1, 1)
    assert registry.hosts()[0].slots_in_use == 0


def test_with_no_free_slot_the_run_waits_says_so_and_is_served_when_a_host_comes(hosts) -> None:
    registry = InMemoryRegistry()
    router = Router(registry)
    router.register(KEY, SPEC)
    seen_waiting = []

    def host_arrives() -> None:
        time.sleep(0.2)
        seen_waiting.append(registry.waiting(KEY))
        registry.heartbeat(record("h1", hosts[0]))

    threading.Thread(target=host_arrives).start()
    answer = router.forward(KEY, b"{}", timeout_s=5)
    assert answer.ok and seen_waiting == [1] and registry.waiting(KEY) == 0


def test_no_host_before_the_deadline_is_a_no_slot_error_at_the_deadline() -> None:
    router = Router(InMemoryRegistry())
    started = time.monotonic()
    with pytest.raises(RoutingError) as caught:
        router.forward(KEY, b"{}", timeout_s=0.3)
    assert caught.value.reason == "no_slot" and 0.25 < time.monotonic() - started < 1.0


def test_a_lost_registration_is_put_back_by_the_next_run(hosts) -> None:
    registry = InMemoryRegistry()
    router = Router(registry)
    router.register(KEY, SPEC)
    registry.heartbeat(record("h1", hosts[0]))
    registry.unregister_action(KEY)  # Redis lost it
    router.forward(KEY, b"{}", timeout_s=5)
    assert registry.action_spec(KEY) == SPEC.to_json()


def test_a_host_that_refuses_connections_is_reported_and_the_run_goes_elsewhere(hosts) -> None:
    registry = InMemoryRegistry()
    router = Router(registry)
    dead = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Host)
    dead.server_close()  # its port now refuses connections
    registry.heartbeat(record("a-dead", dead))  # sorts first: tried first
    registry.heartbeat(record("h1", hosts[0]))
    assert router.forward(KEY, b"{}", timeout_s=5).ok
    assert [h.host_id for h in registry.hosts() if h.unreachable] == ["a-dead"]
    assert registry.acquire(KEY).host_id == "h1"  # type: ignore[union-attr]  # skipped by all


def test_the_registry_down_is_a_registry_error() -> None:
    class Down(InMemoryRegistry):
        def acquire(self, action, avoid=()):  # type: ignore[no-untyped-def]
            raise ConnectionError("Redis is down")

    with pytest.raises(RoutingError) as caught:
        Router(Down()).forward(KEY, b"{}", timeout_s=1)
    assert caught.value.reason == "registry" and "Redis is down" in str(caught.value)
